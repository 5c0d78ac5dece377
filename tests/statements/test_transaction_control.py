"""Statements that end the transaction a migration runs in are recognised wherever they stand in the text a
migration sends: a COMMIT between other statements is the boundary where the migration becomes
non-transactional (as an `op.execute("COMMIT")` of its own is), a ROLLBACK is refused before it is sent."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAD, add_revision, query, run_migrator

NEXT = "20211105000000"


def test_a_commit_between_statements_is_a_boundary(project: Path, database_url: str) -> None:
    add_revision(project, NEXT, HEAD, "op.execute(\"CREATE TYPE mood AS ENUM ('sad'); COMMIT; "
                                      "ALTER TYPE mood ADD VALUE 'happy'\")", name="mood")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT unnest(enum_range(NULL::mood))::text") == [("sad",), ("happy",)]
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(NEXT,)]
    assert query(database_url, "SELECT outcome, detail FROM migrator_history WHERE revision = %s", NEXT) == [
        ("applied", "completed")]


def test_a_rollback_between_statements_is_refused_by_name(project: Path, database_url: str) -> None:
    add_revision(project, NEXT, HEAD, 'op.execute("CREATE TABLE kept (id int); ROLLBACK")', name="undo")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"[error] migration {NEXT} (undo) failed and was rolled back: {NEXT} (undo) executes ROLLBACK, which would "
        "end the transaction migrator runs it in (it was not sent). Use op.get_context().autocommit_block() for "
        "statements that cannot run in a transaction; earlier migrations stay applied"), result.stderr
    assert query(database_url, "SELECT to_regclass('kept')") == [(None,)]
