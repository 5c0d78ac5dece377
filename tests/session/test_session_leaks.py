"""A session-level SET in one migration does not reach the next migrations of the same run.

Before every step the session goes back to its defaults and migrator's settings are applied again, search_path,
role and session_replication_role included. So the schema a migration produces does not depend on whether it
ran in the same `migrate` as an earlier one: one at a time (staging, release by release) or in one batch (a
fresh environment, or prod after skipped releases), the table below lands in public, and the next migration's
writes run with session_replication_role = origin (foreign keys and triggers fire).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import BASE, Migrator, at_base

SETS = "20240101000001"
SETS_MIGRATION = """
op.execute("CREATE SCHEMA reporting")
op.execute("SET search_path = reporting, public")
op.execute("SET session_replication_role = replica")
op.execute("CREATE TABLE report (id int)")
"""
NEXT = "20240101000002"
NEXT_MIGRATION = """
op.execute("CREATE TABLE plain_next (id int)")
op.execute("INSERT INTO ran_log (what) SELECT 'srr=' || current_setting('session_replication_role')")
"""


def _where(url: str) -> list[tuple[object, ...]]:
    return query(url, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'plain_next'")


def test_settings_of_one_migration_do_not_leak_into_the_next(fault_project: Path, url: str) -> None:
    add_revision(fault_project, SETS, BASE, SETS_MIGRATION, name="sets_search_path")
    add_revision(fault_project, NEXT, SETS, NEXT_MIGRATION, name="plain_next")
    at_base(url)
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert result.code == 0, result.err
    # Run one at a time, plain_next lands in public with origin replication role: one batch must agree.
    assert _where(url) == [("public",)], _where(url)
    assert [row[0] for row in query(url, "SELECT what FROM ran_log")] == ["srr=origin"]
