"""Through a real PgBouncer: transaction and statement pooling are refused at once (exit 2) and leave nothing
behind on any pooled server connection; session pooling works, also with 16 migrators at once.

With one server connection in the pool, every client of a transaction pool shares that backend: whatever the
migrator left on it (an advisory lock, lock_timeout, statement_timeout) would show in the next client's
session, which is what the leak checks look at, through the pooler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, dbname, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    Migrator,
    assert_nothing_left,
    history,
    ran,
    table_exists,
    versions,
)
from tests.faults.pgbouncer import PgBouncer

DEFAULTS = {"lock_timeout": "0", "statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}


def settings_through(bouncer: PgBouncer, name: str) -> dict[str, str]:
    """What another client of the pool sees in its session."""
    with psycopg.connect(bouncer.url_for(name), autocommit=True) as conn:
        return {setting: str(conn.execute(f"SHOW {setting}").fetchone()[0]) for setting in DEFAULTS}  # type: ignore[index]


@pytest.mark.parametrize(("pool_mode", "auth_type", "pool_size"), [
    ("transaction", "md5", 1),
    ("transaction", "plain", 20),
    ("statement", "md5", 1),
    ("statement", "plain", 20),
])
def test_pooling_that_does_not_keep_the_session_is_refused(
        fault_project: Path, url: str, pgbouncer: Callable[..., PgBouncer], tmp_path: Path,
        pool_mode: str, auth_type: str, pool_size: int) -> None:
    bouncer = pgbouncer(pool_mode, auth_type=auth_type, pool_size=pool_size)
    name = dbname(url)
    run = Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(name), termination=tmp_path / "termination")
    result = run.finish(MARGIN + 8)  # from the process start: interpreter start-up included
    assert result.code == 2, result.err
    line = result.one_clean_error()
    assert "does not keep the session" in line, line
    assert "Connect the migrator directly to PostgreSQL, or through PgBouncer in session mode" in line, line
    assert (tmp_path / "termination").read_text().startswith("migrate failed (exit 2)")

    # Nothing behind: no lock on any server backend, no migration, no setting in another client's session.
    assert_nothing_left(url)
    assert not table_exists(url, "alembic_version")
    assert not table_exists(url, "migrator_history")
    for _ in range(3):  # with a pool of one, each lands on the backend the migrator used
        assert settings_through(bouncer, name) == DEFAULTS


def test_session_pooling_16_migrators_at_once(fault_project: Path, url: str,
                                              pgbouncer: Callable[..., PgBouncer]) -> None:
    second, third = "20240101000001", "20240101000002"
    add_revision(fault_project, second, BASE, """op.execute("INSERT INTO ran_log (what) VALUES ('second')")""",
                 name="second")
    add_revision(fault_project, third, second, """op.execute("INSERT INTO ran_log (what) VALUES ('third')")""",
                 name="third")
    bouncer = pgbouncer("session", auth_type="md5", pool_size=60)
    runs = [Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(dbname(url))) for _ in range(16)]
    results = [run.finish(120) for run in runs]
    assert [r.code for r in results] == [0] * 16, "\n".join(r.err for r in results if r.code)
    assert sum("== Running " in r.err for r in results) == 1, "exactly one process runs the migrations"
    assert any("keeps sessions (session pooling)" in r.err for r in results)
    assert versions(url) == [third]
    assert (ran(url, "second"), ran(url, "third")) == (1, 1)
    assert history(url) == [(BASE, "up", "applied"), (second, "up", "applied"), (third, "up", "applied")]
    assert_nothing_left(url)
    assert settings_through(bouncer, dbname(url)) == DEFAULTS  # DISCARD ALL between session clients


def test_session_pool_without_a_spare_server_connection(fault_project: Path, url: str,
                                                        pgbouncer: Callable[..., PgBouncer]) -> None:
    """A session pool of one: the migrator's second connection (pooler check, monitor) waits in PgBouncer's
    queue. That is not a pooler that shares sessions: no exit 2 (which the chart never retries) for it."""
    bouncer = pgbouncer("session", auth_type="md5", pool_size=1)
    result = Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(dbname(url))).finish(60)
    line = result.one_clean_error() if result.code else ""
    assert result.code != 2, f"a busy session pool was refused as transaction pooling: {line}"
    assert_nothing_left(url, within=5)
    assert query(url, "SELECT 1")
