"""A migration's history row commits in the same transaction as the migration, or neither does."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAD, add_revision, query, run_migrator

NEXT = "20211105000000"


def test_a_history_row_that_cannot_be_written_rolls_its_migration_back(project: Path, database_url: str) -> None:
    """A trigger makes the history's `applied` row of a transactional migration fail: the migration is not
    applied either (its table does not exist, its version is not stamped), and the line says it was rolled
    back."""
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    add_revision(project, NEXT, HEAD, 'op.create_table("extra", sa.Column("id", sa.Integer))', name="extra")
    query(database_url, """
        CREATE FUNCTION no_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no history for %', NEW.revision; END $$""")
    query(database_url, f"""
        CREATE TRIGGER no_history BEFORE INSERT ON migrator_history FOR EACH ROW
        WHEN (NEW.revision = '{NEXT}' AND NEW.outcome = 'applied') EXECUTE FUNCTION no_history()""")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"[error] migration {NEXT} (extra) failed and was rolled back: RaiseException: no history for {NEXT}; "
        "nothing was applied"), result.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert query(database_url, "SELECT to_regclass('extra')") == [(None,)]
    assert query(database_url, "SELECT outcome FROM migrator_history WHERE revision = %s", NEXT) == [("failed",)]
