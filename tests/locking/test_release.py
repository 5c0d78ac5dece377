"""The lock is released at the end of the run and the release is checked: the session must still hold the lock
as migrator took it (twice over, so that each step's proof can take one count back and add it again)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision
from tests.faults.helpers import BASE, Migrator, advisory_locks, at_base, lock_key_of, versions

REV = "20240101000001"


def test_a_migration_that_releases_one_count_of_the_lock_is_reported(fault_project: Path, url: str) -> None:
    """The last migration gives back one of the two counts: the lock was no longer held as taken, and another
    migrator may have run meanwhile; the run says so (exit 4) instead of ending as if nothing happened."""
    add_revision(fault_project, REV, BASE, f'op.execute("SELECT pg_advisory_unlock({lock_key_of(url)})")',
                 name="unlock")
    at_base(url)
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert result.code == 4, result.err
    assert result.one_clean_error().endswith(
        "was no longer held by this session when the run ended (a statement such as pg_advisory_unlock_all() or "
        "DISCARD ALL released it): another migrator may have run meanwhile; check `migrator history`")
    assert versions(url) == [REV]
    assert advisory_locks(url) == []
