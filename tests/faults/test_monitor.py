"""The monitor is an extra: told to stop, it never ends the migration session (issue 20, hazard 3).

Its connection alone stalls (the fault proxy stops forwarding on that one link) while a migration runs: the
monitor's query then blocks until its own deadline, MIGRATOR_STALL_TIMEOUT later. The migration finishes first
and the run tells the monitor to stop; the monitor must not then shut down the session that is releasing the
lock and reading the version table, and the run must not wait for the stalled monitor.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    Migrator,
    assert_nothing_left,
    at_base,
    history,
    ran,
    sleeping_backend,
    versions,
)
from tests.faults.proxy import FaultProxy, wait_until

REV = "20240101000001"
SLEEP = 3.0
MIGRATION = f"""
op.execute("SELECT pg_sleep({SLEEP})")
op.execute("INSERT INTO ran_log (what) VALUES ('slept')")
"""
STALL = 4.0  # the monitor's own query deadline: longer than what remains of the migration when it stalls


def monitor_port(url: str, session_pid: int) -> int:
    """The client port of the migrator's other backend (its monitor) once it has answered a look."""
    found: list[int] = []

    def answered() -> bool:
        rows = query(url, "SELECT client_port FROM pg_stat_activity WHERE application_name LIKE 'migrator@%%' "
                          "AND pid <> %s AND state = 'idle' AND query LIKE '%%pg_stat_activity%%'", session_pid)
        found.extend(int(str(row[0])) for row in rows)
        return bool(found)

    wait_until(answered, 10, "the monitor's first look")
    return found[0]


def test_a_stopped_monitor_never_ends_a_finished_run(fault_project: Path, url: str, proxied: str,
                                                      proxy: FaultProxy) -> None:
    add_revision(fault_project, REV, BASE, MIGRATION, name="sleeper")
    at_base(url)
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, MIGRATOR_STALL_TIMEOUT=f"{STALL:g}")
    session = sleeping_backend(url)
    began = time.monotonic()
    proxy.stall(proxy.link_for_server_port(monitor_port(url, session.pid)))
    # The migration ends at most SLEEP s after it was seen running; the stalled monitor would give up STALL s
    # after its next look, past the end of the migration: the run must end then, at once and with exit 0.
    result = run.finish(SLEEP + MARGIN, since=began)
    assert result.code == 0, result.err
    assert result.errors == [], result.err
    # at_base stamps the base as plain Alembic would: its checksum is recorded on first sight (issue 21)
    assert [line.split(" ", 1)[1] for line in result.err.splitlines()[:2]] == [
        f"[info] Recorded the checksums of 1 applied revision(s) on postgres@{proxied.rsplit('@', 1)[1]}",
        f"[info] == Running {REV} sleeper.upgrade forward"]
    assert "no answer from the server" not in result.err
    assert versions(url) == [REV]
    assert ran(url, "slept") == 1
    assert history(url) == [(BASE, "up", "recorded"), (REV, "up", "applied")]
    assert_nothing_left(url)
