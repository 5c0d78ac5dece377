"""Every bad input: its exit code, one actionable line first, and a database left as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import FIRST, HEAD, query, run_migrator

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \[error\] (?P<message>.+)$")


def first_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert lines, "no output"
    match = LINE.match(lines[0])
    assert match, f"the first line is not the error: {lines[0]!r}"
    return match["message"]


def state(url: str) -> list[tuple[object, ...]]:
    """Everything a failed command could have changed: tables, the version row, seed ledger."""
    tables = query(url, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                        "WHERE schemaname = 'public'")
    version = query(url, "SELECT version_num FROM alembic_version") if "alembic_version" in str(tables) else []
    return [*tables, *version]


@pytest.fixture
def at_first(project: Path, database_url: str) -> str:
    assert run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url).returncode == 0
    return database_url


@pytest.mark.parametrize(("args", "message"), [
    (["rollback", "19990101000000"], "unknown revision '19990101000000': it is not in "),
    (["rollback", "2021110"], "revision '2021110' is ambiguous: '20211103022310', '20211104101500'"),
    (["rollback", HEAD], f"rollback target {HEAD} is not below the current revision {FIRST}"),
    (["rollback", "--steps", "2"], "cannot roll back 2 migration(s): only 1 applied"),
    (["rollback"], "one of the arguments REV --steps is required"),
    (["rollback", "--steps", "0"], "'0' is not a whole number >= 1"),
    (["migrate", "--to", "nope"], "unknown revision 'nope'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_revisions_and_arguments(project: Path, at_first: str, args: list[str], message: str) -> None:
    before = state(at_first)
    result = run_migrator(args, cwd=project, database_url=at_first)
    assert result.returncode == 2, result.stderr
    assert message in first_error(result.stderr)
    assert state(at_first) == before


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://root:pw@localhost/app", "DATABASE_URL has the unsupported scheme 'mysql'"),
    ("postgres://user:pw@localhost:notaport/app", "DATABASE_URL has an invalid port"),
    ("localhost:5432/app", "DATABASE_URL is not a URL"),
    ("postgres://user:pw@localhost/app?sslmode=sometimes", "invalid sslmode value"),
    ("postgres://user:pw@localhost/app?colour=blue", "DATABASE_URL is malformed: invalid URI query parameter"),
])
def test_bad_database_urls(project: Path, url: str, message: str) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=url)
    assert result.returncode == 2 if "sslmode" not in message else result.returncode in (2, 3)
    assert message in first_error(result.stderr)
    assert ":pw@" not in result.stderr


def test_no_database_configured(project: Path) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=None)
    assert result.returncode == 2
    assert first_error(result.stderr) == "no database configured: set DATABASE_URL (or libpq's PGHOST, PGDATABASE, ...)"


def test_missing_migrations_directory(tmp_path: Path, database_url: str) -> None:
    result = run_migrator(["migrate"], cwd=tmp_path, database_url=database_url)
    assert result.returncode == 2
    assert f"migrations directory {tmp_path.resolve() / 'migrations'} not found" in first_error(result.stderr)
    assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_missing_password_file(project: Path, database_url: str, tmp_path: Path) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=database_url,
                          DATABASE_PASSWORD_FILE=str(tmp_path / "absent"))
    assert result.returncode == 2
    assert "DATABASE_PASSWORD_FILE=" in first_error(result.stderr) and "cannot be read" in first_error(result.stderr)


@pytest.mark.parametrize(("variable", "value"), [
    ("MIGRATOR_LOCK_TIMEOUT", "soon"), ("MIGRATOR_DDL_RETRIES", "-1"), ("MIGRATOR_LOG_FORMAT", "xml"),
    ("MIGRATOR_CONNECT_TIMEOUT", "-5"),
])
def test_bad_settings(project: Path, database_url: str, variable: str, value: str) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, env={variable: value})
    assert result.returncode == 2
    assert first_error(result.stderr).startswith(f"{variable}={value!r}")
    assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_broken_revision_file(project: Path, database_url: str) -> None:
    (project / "migrations" / "versions" / "20220101000000_broken.py").write_text(
        "revision = '20220101000000'\ndown_revision = '20211104101500'\ndef upgrade(:\n")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2
    assert "cannot load the revision files" in first_error(result.stderr)
    assert "SyntaxError" in first_error(result.stderr)
    assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_seed_that_raises_changes_nothing(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    (project / "seeds" / "02_broken.py").write_text(
        "import sqlalchemy as sa\n\n"
        "def run(session):\n"
        "    session.execute(sa.text(\"INSERT INTO users (name, email) VALUES ('Ghost', 'ghost@x')\"))\n"
        "    raise ValueError('no pets for ghosts')\n")
    (project / "seeds" / "01_users.py").unlink()
    result = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        "seed 02_broken.py failed and was rolled back: ValueError: no pets for ghosts")
    assert query(database_url, "SELECT count(*) FROM users") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM migrator_seeds") == [(0,)]


def test_seed_without_run_function(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    (project / "seeds" / "00_nothing.py").write_text("x = 1\n")
    result = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert result.returncode == 2
    assert "seed 00_nothing.py has no run(session) function" in result.stderr


def test_seed_refused_before_migrate(project: Path, database_url: str) -> None:
    result = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert result.returncode == 5
    assert "seed refused" in first_error(result.stderr) and "run migrate first" in first_error(result.stderr)


def test_database_ahead_of_the_scripts(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    query(database_url, "UPDATE alembic_version SET version_num = '20990101000000'")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2
    assert "is at revision 20990101000000, which these migrations do not have" in first_error(result.stderr)
    status = run_migrator(["status", "--check"], cwd=project, database_url=database_url)
    assert status.returncode == 5 and "unknown: 20990101000000" in status.stdout
