"""migrator quotes the names of its tables and of the version table as PostgreSQL identifiers wherever it
writes them: a schema whose name holds a double quote works like any other."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAD, query, run_migrator


def test_a_version_table_schema_with_a_double_quote(project: Path, database_url: str) -> None:
    query(database_url, 'CREATE SCHEMA "we""ird"')
    (project / "migrator.toml").write_text('script_location = "migrations"\nversion_table_schema = \'we"ird\'\n')
    for args in (["migrate"], ["status", "--check"], ["migrate"], ["history"]):
        result = run_migrator(args, cwd=project, database_url=database_url)
        assert result.returncode == 0, (args, result.stderr)
    assert query(database_url, 'SELECT version_num FROM "we""ird".alembic_version') == [(HEAD,)]
    assert query(database_url, 'SELECT count(*) FROM "we""ird".migrator_history') == [(2,)]
