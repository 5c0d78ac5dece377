"""Shared fixtures: real PostgreSQL servers, fresh databases, project copies, and the migrator as a subprocess.

`TEST_DATABASE_URL` (a superuser URL) replaces the embedded server. `MIGRATOR_CI_STRICT=1` turns every skip
into a failure except those marked `cluster` (no Kubernetes cluster can run where CI runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.postgres import SUPERUSER_PASSWORD, DebianServer, EmbeddedServer, Server, debian_bindir

ROOT = Path(__file__).resolve().parent.parent
STRICT = os.environ.get("MIGRATOR_CI_STRICT") == "1"


# --- strict mode: a skip of something this machine can run is a failure in CI -------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if STRICT and report.skipped and item.get_closest_marker("cluster") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI strict mode (MIGRATOR_CI_STRICT=1), which must run it: {reason}"


# --- servers and databases ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The default server: TEST_DATABASE_URL, or an embedded PostgreSQL started for this session."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield Server(admin_url=url)
        return
    server = EmbeddedServer()
    yield server
    server.stop()


def require_debian_postgres() -> None:
    if debian_bindir() is None:
        pytest.skip("Debian's PostgreSQL (with TCP, passwords and SSL) is not installed: apt-get install postgresql")
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway Debian PostgreSQL cluster needs root (runuser -u postgres)")


@pytest.fixture(scope="session")
def tcp_server() -> Iterator[DebianServer]:
    """A Debian PostgreSQL on 127.0.0.1 with scram passwords: for containers, auth and network tests."""
    require_debian_postgres()
    server = DebianServer()
    yield server
    server.destroy()


def fresh_database(server: Server) -> Iterator[str]:
    """A new empty database's URL on `server`, dropped after the test (for fixtures: `yield from`)."""
    name = server.create_database()
    yield server.url_for(name)
    server.drop_database(name)


@pytest.fixture
def database_url(pg_server: Server) -> Iterator[str]:
    """A URL for a new empty database on the default server, dropped after the test."""
    yield from fresh_database(pg_server)


@pytest.fixture
def tcp_database_url(tcp_server: DebianServer) -> Iterator[str]:
    """A URL (with a password) for a new empty database on the TCP server."""
    yield from fresh_database(tcp_server)


# --- the project and the migrator process ---------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example project (migrations/, seeds/, alembic.ini) that a test may change."""
    dest = tmp_path / "project"
    dest.mkdir()
    shutil.copytree(ROOT / "migrations", dest / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "seeds", dest / "seeds", ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "alembic.ini").exists():
        shutil.copy(ROOT / "alembic.ini", dest / "alembic.ini")
    return dest


SECRETS = [SUPERUSER_PASSWORD]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, "a password leaked into the output"


def migrator_env(database_url: str | None, **extra: str) -> dict[str, str]:
    # PYTHONUNBUFFERED is dropped too: a console script outside the image runs buffered, and what it prints
    # must still reach a pipe in full (this machine's environment sets it, and would hide a missing flush).
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONUNBUFFERED"
           and (not k.startswith(("PG", "MIGRATOR_", "DATABASE_")) or k == "MIGRATOR_CI_STRICT")}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.setdefault("MIGRATOR_CONNECT_TIMEOUT", "10")
    env.update(extra)
    return env


def run_migrator(args: list[str], *, cwd: Path, database_url: str | None, timeout: float = 120,
                 env: dict[str, str] | None = None, **more_env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m migrator ARGS` the way a container runs it, and check no secret leaked."""
    proc = subprocess.run([sys.executable, "-m", "migrator", *args], cwd=cwd, capture_output=True, text=True,
                          env=migrator_env(database_url, **(env or {}), **more_env), timeout=timeout, check=False)
    assert_no_secret(proc.stdout, proc.stderr)
    return proc


def start_migrator(args: list[str], *, cwd: Path, database_url: str | None, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "migrator", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=migrator_env(database_url, **env))


def dbname(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(url)["dbname"])


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)  # type: ignore[arg-type,unused-ignore]
        return cur.fetchall() if cur.description is not None else []


HEAD = "20211104101500"
FIRST = "20211103022310"


def add_revision(project: Path, revision: str, down: str | tuple[str, ...] | None, upgrade: str,
                 downgrade: str = "pass", name: str = "change", module: str = "") -> Path:
    """Write a revision file into `project`'s migrations; bodies are Python statements (op, sa imported);
    `module` adds module-level lines (e.g. `rerunnable = True`)."""
    def body(code: str) -> str:
        return "\n".join("    " + line for line in code.strip().splitlines())

    path = project / "migrations" / "versions" / f"{revision}_{name}.py"
    path.write_text(
        f'"""{name}"""\nimport os\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n{module}\n\n"
        f"def upgrade():\n{body(upgrade)}\n\n\ndef downgrade():\n{body(downgrade)}\n")
    return path


def running_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "== Running" in line]
