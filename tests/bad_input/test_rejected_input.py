"""Bad input gets one line and exit 2, before anything changes (issue 19 item 8); what libpq accepts is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HEAD, query, run_migrator


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("args", [["migrate", "--to", ""], ["rollback", ""], ["resolve", "", "--rerun"],
                                  ["sql", "--from", ""], ["sql", "--to", " "], ["lint", "--from", ""]])
def test_an_empty_revision(project: Path, database_url: str, args: list[str]) -> None:
    result = run_migrator(args, cwd=project, database_url=database_url)
    assert result.returncode == 2, result.stderr
    assert "an empty revision: give a revision id (or a unique prefix of it), base or head" in one_line(result.stderr)
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def test_a_history_limit_beyond_reason(project: Path, database_url: str) -> None:
    result = run_migrator(["history", "--limit", "99999999999999999999"], cwd=project, database_url=database_url)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).endswith(
        "[error] argument --limit: '99999999999999999999' is more than 1000000 (see migrator history --help)")


def test_a_version_table_schema_that_does_not_exist(project: Path, database_url: str) -> None:
    (project / "migrator.toml").write_text('script_location = "migrations"\nversion_table_schema = "nowhere"\n')
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "[error] the schema 'nowhere' of the version table does not exist on " in line
    assert line.endswith(": create it (CREATE SCHEMA), or correct version_table_schema in migrator.toml")
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]


def test_a_revision_file_without_upgrade(project: Path, database_url: str) -> None:
    path = project / "migrations" / "versions" / f"{HEAD}_add_users_email_index.py"
    path.write_text(path.read_text().replace("def upgrade()", "def not_upgrade()"))
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).endswith(
        f"[error] revision file {path} has no upgrade() function: every revision defines upgrade() and downgrade() "
        "(`pass` when there is nothing to do)")
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]


def test_a_raw_at_sign_in_a_query_value_is_libpqs(project: Path, database_url: str) -> None:
    url = database_url + ("&" if "?" in database_url else "?") + "application_name=job@pod"
    assert run_migrator(["migrate"], cwd=project, database_url=url).returncode == 0
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
