"""After SIGTERM: the running statement gets a grace of 3 s to be cancelled and rolled back the normal way, then
every connection is shut down and the line says so; with several databases, the line names the one that was
interrupted."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from tests.conftest import add_revision
from tests.faults.helpers import (
    BASE,
    MARGIN,
    SIGNAL_BOUND,
    Migrator,
    at_base,
    sleeping_backend,
    versions,
)
from tests.faults.proxy import FaultProxy

SLOW = "20240101000001"
SLOW_MIGRATION = 'op.execute("SELECT pg_sleep(60)")'
GRACE = 3.0  # documented: SIGTERM/SIGINT give the running statement 3 s, then every connection is shut down
# The monitor and the server's idle timeout stay out of it: the grace must end the wait.
NO_STALL_LIMIT = {"MIGRATOR_STALL_TIMEOUT": "60", "MIGRATOR_IDLE_TIMEOUT": "60"}


def test_the_grace_ends_a_wait_the_server_does_not_answer(fault_project: Path, url: str, proxied: str,
                                                          proxy: FaultProxy, tmp_path: Path) -> None:
    """The migration session's own link stalls (its other connections pass): the cancel request reaches the
    server, but its answer never comes back. 3 s after SIGTERM the grace shuts every connection down, well
    before the 10 s last resort, and the line says so instead of claiming a rollback."""
    add_revision(fault_project, SLOW, BASE, SLOW_MIGRATION, name="slow")
    at_base(url)
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, termination=tmp_path / "termination",
                   env=NO_STALL_LIMIT)
    session = sleeping_backend(url)
    assert session.client_port is not None
    proxy.stall(proxy.link_for_server_port(session.client_port))
    time.sleep(0.3)
    sent = run.signal(signal.SIGTERM)
    result = run.finish(GRACE + MARGIN, since=sent)
    assert result.code == 143, result.err
    assert result.one_clean_error().endswith(
        f"[error] interrupted by SIGTERM during {SLOW} (slow): the server did not confirm the rollback within 3s of "
        "SIGTERM, so every connection was shut down; it ends the transaction when it notices the closed connection "
        "(within MIGRATOR_IDLE_TIMEOUT=60s of the last statement, or about 60s of TCP keepalives if the network is "
        "down); run it again to resume"), result.err
    proxy.reset()
    assert versions(url) == [BASE]


def test_with_several_databases_the_sigterm_line_names_the_one_interrupted(
        fault_project: Path, url: str, tmp_path: Path) -> None:
    """Issue 19 item 7: `migrate` visits every database of migrator.toml in turn; the line says which one it
    was migrating when the signal came."""
    first = fault_project / "first"  # a repo with nothing to migrate, visited first
    (first / "versions").mkdir(parents=True)
    shutil.copy(fault_project / "migrations" / "env.py", first / "env.py")
    add_revision(fault_project, SLOW, BASE, SLOW_MIGRATION, name="slow")
    (fault_project / "migrator.toml").write_text(
        '[[repos]]\nname = "first"\nscript_location = "first"\nversion_table = "first_version"\n\n'
        '[[repos]]\nname = "second"\nscript_location = "migrations"\n')
    at_base(url)
    run = Migrator(["migrate"], cwd=fault_project, url=url, termination=tmp_path / "termination")
    run.wait_for_line(f"== Running {SLOW}")
    sleeping_backend(url)
    sent = run.signal(signal.SIGTERM)
    result = run.finish(SIGNAL_BOUND + MARGIN, since=sent)
    assert result.code == 143, result.err
    database = url.split("@", 1)[1].split("?", 1)[0]
    assert result.one_clean_error().endswith(
        f"[error] second (postgres@{database}): interrupted by SIGTERM during {SLOW} (slow): its running statement "
        "was cancelled and its transaction rolled back (confirmed by the server); run it again to resume")
