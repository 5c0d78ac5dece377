"""Every bad input: its exit code, one actionable line first, and a database left as it was."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from migrator.config import PASSWORD_FILE_MAX
from migrator.repos import CONFIG_FILE_MAX
from tests.conftest import FIRST, HEAD, add_revision, query, run_migrator
from tests.postgres import DebianServer

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
    ("postgres://user:pw@localhost/app?colour=blue", "DATABASE_URL has the unknown query parameter 'colour'"),
])
def test_bad_database_urls(project: Path, url: str, message: str) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=url)
    assert result.returncode == 2, result.stderr
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
    # The fast path says once, at info, why it defers; then the error, the same one Alembic's path gives.
    deferred, error = result.stderr.splitlines()
    assert "fast path not taken" in deferred and "20220101000000_broken.py: does not compile" in deferred
    result.stderr = error
    assert "cannot load revision file" in first_error(result.stderr)
    assert "20220101000000_broken.py: SyntaxError" in first_error(result.stderr)
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


# --- hostile or odd input: one line, exit 2, nothing changed, at once -------------------------------------

QUICK = 5.0  # seconds: what must not be retried fails well within this


def refused(project: Path, database_url: str, *, args: list[str] | None = None, url: str | None = None,
            env: dict[str, str] | None = None) -> str:
    """Run the migrator with a bad input; assert exit 2 at once with the database unchanged; the first line."""
    before = state(database_url)
    started = time.monotonic()
    result = run_migrator(args or ["migrate"], cwd=project, database_url=url or database_url, env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert elapsed < QUICK, f"refused after {elapsed:.1f}s"
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert state(database_url) == before
    return first_error(result.stderr)


def with_password(url: str, password: str) -> str:
    """`url` with `password` in its userinfo, verbatim (the embedded server trusts any password)."""
    head, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    assert at, "the test server's URL names a user"
    return f"{head}{sep}{userinfo.split(':')[0]}:{password}@{hosts}"


SECRET = "Hunter2Secret"


@pytest.mark.parametrize(("password", "problem"), [
    (f"{SECRET}%zz", "the password contains '%' not followed by two hex digits"),
    (f"{SECRET}%", "the password contains '%' not followed by two hex digits"),
    (f"{SECRET} x", "the password contains a space"),
    (f"{SECRET}%00", "the password contains %00 (NUL), which libpq refuses"),
    (f"{SECRET}%ff", "the password is not UTF-8 once percent-decoded"),
    (f"{SECRET}@x", "an '@' may only separate the user name and password from the host"),
    (f"{SECRET}/x", "an '@' may only separate the user name and password from the host"),
])
def test_malformed_url_never_prints_the_password(project: Path, database_url: str, tmp_path: Path, password: str,
                                                problem: str) -> None:
    log = tmp_path / "termination-log"
    line = refused(project, database_url, url=with_password(database_url, password),
                   env={"MIGRATOR_TERMINATION_LOG": str(log)})
    assert line.startswith(f"DATABASE_URL is malformed: {problem}; percent-encode special characters (% -> %25, ")
    assert SECRET not in line and SECRET not in log.read_text()
    assert log.read_text().startswith("migrate failed (exit 2): DATABASE_URL is malformed")


@pytest.mark.parametrize("port", ["0", "65536", "x"])
def test_invalid_port_is_refused_not_retried(project: Path, database_url: str, port: str) -> None:
    url = database_url + ("&" if "?" in database_url else "?") + f"port={port}"
    line = refused(project, database_url, url=url, env={"MIGRATOR_CONNECT_TIMEOUT": "60"})
    assert line.startswith("DATABASE_URL has an invalid port: use a number between 1 and 65535")


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("MIGRATOR_DDL_LOCK_TIMEOUT", "0", "1ms to 1h"),
    ("MIGRATOR_DDL_LOCK_TIMEOUT", "0.4ms", "1ms to 1h"),
    ("MIGRATOR_DDL_LOCK_TIMEOUT", "2h", "1ms to 1h"),
    ("MIGRATOR_CONCURRENT_LOCK_TIMEOUT", "0", "1ms to 24h"),
    ("MIGRATOR_STATEMENT_TIMEOUT", "0.5ms", "0 (off) or 1ms to 24h"),
    ("MIGRATOR_STATEMENT_TIMEOUT", "100000000", "0 (off) or 1ms to 24h"),
    ("MIGRATOR_LOCK_TIMEOUT", "0", "100ms to 24h"),
    ("MIGRATOR_IDLE_TIMEOUT", "0", "100ms to 24h"),
    ("MIGRATOR_STALL_TIMEOUT", "0", "1s to 1h"),
    ("MIGRATOR_CONNECT_TIMEOUT", "0", "1s to 24h"),
    ("MIGRATOR_CONNECT_TIMEOUT", "99999999999999999999h", "1s to 24h"),
])
def test_out_of_range_settings(project: Path, database_url: str, variable: str, value: str, allowed: str) -> None:
    line = refused(project, database_url, env={variable: value})
    assert line == f"{variable}={value!r} is out of range: use {allowed}"


def test_absurd_retry_count(project: Path, database_url: str) -> None:
    line = refused(project, database_url, env={"MIGRATOR_DDL_RETRIES": "9" * 5000})
    assert line.startswith("MIGRATOR_DDL_RETRIES='999") and line.endswith("is not a count from 0 to 100: use a "
                                                                          "whole number")
    assert len(line) < 200


def _password_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (path, the problem the first line states)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (PASSWORD_FILE_MAX + 1))
    binary = tmp_path / "binary"
    binary.write_bytes(SECRET.encode() + b"\xff\xfe")
    lines = tmp_path / "lines"
    lines.write_text(f"{SECRET}\nsecond\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    return {"fifo": (str(fifo), "is a FIFO: it must be a regular file"),
            "dev-zero": ("/dev/zero", "is a character device: it must be a regular file"),
            "directory": (str(tmp_path), "is a directory: it must be a regular file"),
            "big": (str(big), f"is larger than {PASSWORD_FILE_MAX} bytes"),
            "binary": (str(binary), "is not UTF-8 text"),
            "lines": (str(lines), "holds more than one line: put only the password in it"),
            "empty": (str(empty), "is empty")}


@pytest.mark.parametrize("name", ["fifo", "dev-zero", "directory", "big", "binary", "lines", "empty"])
def test_bad_password_files(project: Path, database_url: str, tmp_path: Path, name: str) -> None:
    path, problem = _password_files(tmp_path)[name]
    line = refused(project, database_url, env={"DATABASE_PASSWORD_FILE": path})
    assert line == f"DATABASE_PASSWORD_FILE={path} {problem}"
    assert SECRET not in line


def test_a_termination_log_fifo_without_reader_does_not_hang(project: Path, database_url: str,
                                                             tmp_path: Path) -> None:
    fifo = tmp_path / "termination-log"
    os.mkfifo(fifo)
    ok = run_migrator(["migrate"], cwd=project, database_url=database_url, timeout=60,
                      MIGRATOR_TERMINATION_LOG=str(fifo))
    assert ok.returncode == 0, ok.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    refused(project, database_url, env={"MIGRATOR_TERMINATION_LOG": str(fifo), "MIGRATOR_LOCK_TIMEOUT": "soon"})


def _loop(path: Path) -> Path:
    """`path` made a symlink loop: path -> path.loop -> path."""
    partner = path.with_name(path.name + ".loop")
    path.symlink_to(partner.name)
    partner.symlink_to(path.name)
    return path


def test_symlink_loop_as_migrations_directory(project: Path, database_url: str) -> None:
    shutil.rmtree(project / "migrations")
    loop = _loop(project / "migrations")
    assert refused(project, database_url) == f"migrations directory {loop} is a symlink loop (too many levels of " \
                                             "symbolic links)"


def test_symlink_loop_as_seeds_directory(project: Path, database_url: str) -> None:
    shutil.rmtree(project / "seeds")
    loop = _loop(project / "seeds")
    assert refused(project, database_url, args=["seed"]) == f"seeds directory {loop} is a symlink loop (too many " \
                                                            "levels of symbolic links)"


def test_symlink_loop_as_env_py(project: Path, database_url: str) -> None:
    (project / "migrations" / "env.py").unlink()
    _loop(project / "migrations" / "env.py")
    assert refused(project, database_url).endswith("has an env.py that is a symlink loop (too many levels of "
                                                   "symbolic links)")


def test_symlink_loop_as_config_file(project: Path, database_url: str) -> None:
    _loop(project / "migrator.toml")
    assert refused(project, database_url) == f"{project / 'migrator.toml'} cannot be read: a symlink loop (too many " \
                                             "levels of symbolic links)"
    line = refused(project, database_url, env={"MIGRATOR_CONFIG": "migrator.toml"})
    assert line == "MIGRATOR_CONFIG=migrator.toml cannot be read: a symlink loop (too many levels of symbolic links)"


@pytest.mark.parametrize(("kind", "problem"), [
    ("fifo", "is a FIFO: it must be a regular file"),
    ("huge", f"is larger than {CONFIG_FILE_MAX} bytes"),
    ("binary", "is not UTF-8 text"),
    ("nested", "cannot be read as TOML: nested too deeply"),
])
def test_odd_config_files(project: Path, database_url: str, kind: str, problem: str) -> None:
    config = project / "migrator.toml"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "huge":
        config.write_text("# " + "x" * CONFIG_FILE_MAX + "\n")
    elif kind == "binary":
        config.write_bytes(b'script_location = "\xff"\n')
    else:
        config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert refused(project, database_url) == f"{config} {problem}"


# --- masking: the password is masked where it stands, and nothing else changes ----------------------------

@pytest.mark.parametrize(("user", "password"), [
    ("migration", "migration"), ("app_e", "e"), ("app_word", "password"), ("app_rev", FIRST),
])
def test_masking_leaves_every_other_word_intact(project: Path, tcp_server: DebianServer, tmp_path: Path,
                                                user: str, password: str) -> None:
    """Replacing every occurrence of the password turned `[error]` into `[***rror]` (password `e`), the
    user name into `***` (password = user name), and revision ids into `***` (a revision-like password)."""
    admin = tcp_server.admin_url
    dbname = f"masking_{user}"
    query(admin, f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    query(admin, f"CREATE DATABASE {dbname} OWNER {user}")
    try:
        url = f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{tcp_server.port}/{dbname}"
        add_revision(project, "20220101000000", HEAD, "import logging\nlogging.getLogger('alembic').warning("
                     "'connected with %s (password in the URL)', os.environ['DATABASE_URL'])", name="log_the_url")
        migrated = _masked_run(["migrate"], project, url, tmp_path, expect=0)
        assert f"== Running {FIRST}" in migrated and f"== Migrated {HEAD}" in migrated
        assert (f"connected with postgresql://{user}:***@127.0.0.1:{tcp_server.port}/{dbname} (password in the URL)"
                in migrated)
        add_revision(project, "20220102000000", "20220101000000",
                     f"op.execute(\"CREATE ROLE {user}_x LOGIN PASSWORD '{password}' NOSUCHOPTION\")",
                     name="bad_role")
        failed = _masked_run(["migrate"], project, url, tmp_path, expect=1, MIGRATOR_LOG_LEVEL="debug")
        assert "[error] migration 20220102000000" in failed and 'unrecognized role option "nosuchoption"' in failed
        assert f"CREATE ROLE {user}_x LOGIN PASSWORD '***' NOSUCHOPTION" in failed  # SQLAlchemy's debug log
        missing = _masked_run(["status"], project, url.rsplit("/", 1)[0] + "/nope", tmp_path, expect=3)
        assert f'[error] cannot connect to {user}@127.0.0.1:{tcp_server.port}/nope: ' in missing
        assert 'database "nope" does not exist' in missing
    finally:
        query(admin, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        query(admin, f"DROP ROLE IF EXISTS {user}")


def _masked_run(args: list[str], project: Path, url: str, tmp_path: Path, *, expect: int, **env: str) -> str:
    """stderr and the termination message of one run; every `***` in them stands where a password stood."""
    log = tmp_path / "termination-log"
    result = run_migrator(args, cwd=project, database_url=url, env={"MIGRATOR_TERMINATION_LOG": str(log), **env})
    assert result.returncode == expect, result.stderr
    text = result.stderr + log.read_text()
    password = url.split("@", maxsplit=1)[0].rsplit(":", 1)[1]
    for spelling in {password, unquote(password)}:
        for position in (f":{spelling}@", f"PASSWORD '{spelling}'", f"password={spelling}"):
            assert position not in text, f"the password stands unmasked in {text}"
    masks = [text[max(m.start() - 10, 0):m.end() + 1] for m in re.finditer(re.escape("***"), text)]
    assert all(re.search(r"(:|PASSWORD ')\*\*\*", m) for m in masks), f"masked outside a password position: {masks}"
    return text
