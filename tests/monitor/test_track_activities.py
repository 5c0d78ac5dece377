"""A statement longer than MIGRATOR_STALL_TIMEOUT runs to its end under `track_activities = off`.

With `track_activities = off` (server-wide, or for the database or role: a tuning some DBAs apply),
pg_stat_activity shows the migration session's state as `disabled`, which does not say that the server
finished the statement. The monitor takes only the idle states for that, so an index build or a backfill is not
shut down with "the server finished the running statement Ns ago but its answer never arrived" (exit 3, which
the Job would retry forever with the same result).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision, dbname, query
from tests.faults.helpers import BASE, Migrator, at_base, versions

REV = "20240101000001"
LONG = """
op.execute("SELECT pg_sleep(6)")
op.execute("INSERT INTO ran_log (what) VALUES ('long done')")
"""


def test_a_long_statement_survives_track_activities_off(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, LONG, name="long")
    at_base(url)
    query(url, f'ALTER DATABASE "{dbname(url)}" SET track_activities = off')
    result = Migrator(["migrate"], cwd=fault_project, url=url, MIGRATOR_STALL_TIMEOUT="2").finish(60)
    assert "answer never arrived" not in result.err, result.err
    assert result.code == 0, result.err
    assert REV in versions(url)
