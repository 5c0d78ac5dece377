"""migrator quotes the names of its tables and of the version table as PostgreSQL identifiers wherever it
writes them: a schema whose name holds a double quote works like any other (migrator.toml refuses such a name,
but search_path reaches it: the version table and migrator's tables go where Alembic finds the version table)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIRST, HEAD, dbname, query, run_migrator


def test_a_version_table_schema_with_a_double_quote(project: Path, database_url: str) -> None:
    query(database_url, 'CREATE SCHEMA "we""ird"')
    query(database_url, f'ALTER DATABASE "{dbname(database_url)}" SET search_path TO "we""ird"')
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    assert query(database_url, 'SELECT version_num FROM "we""ird".alembic_version') == [(HEAD,)]
    result = run_migrator(["history", "--json"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert [(row["revision"], row["outcome"]) for row in map(json.loads, result.stdout.splitlines())] == [
        (FIRST, "applied"), (HEAD, "applied")]
