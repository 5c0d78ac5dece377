"""Review finding: `op.get_bind().rollback()` in a migration silently discards part of it, and (in the first
step of a run) the rest of the migration runs without migrator's lock_timeout / statement_timeout /
idle_in_transaction_session_timeout.

A ROLLBACK statement is refused before it is sent (test_a_rollback_statement_is_refused), and a commit through
SQLAlchemy is a boundary; a rollback through SQLAlchemy is neither: on main the migration below exits 0,
logs `create table a_before`, stamps its version, and a_before does not exist.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision, dbname, query
from tests.faults.helpers import BASE, Migrator, at_base, table_exists, versions

REV = "20240101000001"
MIGRATION = """
op.execute("CREATE TABLE a_before (id int)")
op.get_bind().rollback()
op.execute("CREATE TABLE b_after (id int)")
op.execute("INSERT INTO ran_log (what) SELECT 'lock_timeout=' || current_setting('lock_timeout')")
"""


def test_a_rollback_through_sqlalchemy_is_not_a_silent_half_migration(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, MIGRATION, name="bind_rollback")
    at_base(url)  # the rolling-back migration is the first step of the run
    query(url, f'ALTER DATABASE "{dbname(url)}" SET lock_timeout = 0')  # the server's default: no limit
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    applied = REV in versions(url)
    if applied:
        # Exit 0 and the version stamped: then everything the log says it ran must be there.
        assert table_exists(url, "a_before"), f"logged and stamped, but a_before is missing:\n{result.err}"
    else:
        assert result.code != 0
    # Whatever ran after the rollback ran under migrator's settings, not the server's defaults.
    logged = [row[0] for row in query(url, "SELECT what FROM ran_log")]
    assert logged in ([], ["lock_timeout=5s"]), logged
