"""A signal while a migration's COMMIT is in flight is reported from the version table, never as a rollback.

Reproduced deterministically with synchronous replication whose standby does not answer (a standby that is
down or lagging; here `synchronous_standby_names` names one that does not exist): the COMMIT waits in SyncRep.
On SIGTERM psycopg cancels it; PostgreSQL answers "canceling wait for synchronous replication ... The
transaction has already committed locally" and the COMMIT succeeds. The run exits 143 with a line that says
the migration committed (the version table shows it), and the history holds one row for it: `applied`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, query
from tests.faults.helpers import BASE, SIGNAL_BOUND, Migrator, at_base, history, versions
from tests.faults.proxy import wait_until
from tests.postgres import DebianServer

REV = "20240101000001"
SYNC_COMMIT = """
op.execute("SET LOCAL synchronous_commit = on")
op.execute("CREATE TABLE synced (id int)")
"""


@pytest.fixture
def sync_url(own_server: DebianServer) -> Iterator[str]:
    """A database on a server whose synchronous standby never answers; only SET LOCAL synchronous_commit = on
    transactions wait for it."""
    with psycopg.connect(own_server.admin_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'ghost'")
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'local'")
        conn.execute("SELECT pg_reload_conf()")
    name = own_server.create_database()
    try:
        yield own_server.url_for(name)
    finally:
        with psycopg.connect(own_server.admin_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            conn.execute("ALTER SYSTEM RESET synchronous_commit")
            conn.execute("SELECT pg_reload_conf()")
        own_server.drop_database(name)


def test_sigterm_during_commit_is_not_reported_as_a_rollback(fault_project: Path, sync_url: str) -> None:
    add_revision(fault_project, REV, BASE, SYNC_COMMIT, name="sync_commit")
    at_base(sync_url)
    run = Migrator(["migrate"], cwd=fault_project, url=sync_url)
    # Waiting for the standby: the commit (with the history row, and the reset after it) is in flight.
    # (A COMMIT that a reset before it had freed of the migration's SET LOCAL would never wait there.)
    wait_until(lambda: query(sync_url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' "
                                       "AND query LIKE '%; COMMIT; RESET ALL;%'") == [(1,)],
               30, "the step's COMMIT to wait for the synchronous standby")
    time.sleep(0.5)
    struck = run.signal(signal.SIGTERM)
    result = run.finish(SIGNAL_BOUND, since=struck)
    # Cancelling a wait for the synchronous standby leaves the COMMIT done locally: the migration is applied,
    # and the line says so (from the version table), not that it rolled back.
    assert result.code == 143, result.err
    assert result.one_clean_error().endswith(
        f"[error] interrupted by SIGTERM while {REV} (sync_commit) was committing: it committed (the version table "
        "shows it)")
    assert versions(sync_url) == [REV]
    assert [row[2] for row in history(sync_url) if row[0] == REV] == ["applied"]
    assert query(sync_url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") == [(0,)]
