"""A migration may not roll its own transaction back part-way (`op.get_bind().rollback()`): what it ran before
would be gone while the rest commits, unlogged and outside migrator's settings. It is refused when the step ends,
and nothing of the step commits. (A ROLLBACK statement is refused before it is sent; a commit through SQLAlchemy is
a boundary, after which the migration is non-transactional.)
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
    # Refused when the step ends: nothing of it commits, neither what ran before the rollback nor after it.
    assert result.code == 1, result.err
    assert f"migration {REV} (bind_rollback) failed and was rolled back: {REV} (bind_rollback) rolled back its own " \
           "transaction part-way" in result.one_clean_error()
    assert versions(url) == [BASE]
    assert not table_exists(url, "a_before")
    assert not table_exists(url, "b_after")
    assert query(url, "SELECT what FROM ran_log") == []
