"""The plain `alembic` command on an adopted project (issue 18, item 4), as real `alembic` processes.

Where migrator is not installed (pipx puts it in a virtualenv of its own), the env.py's import of migrator fails
with one line that says what to install, not a traceback: checked in a real virtualenv that holds only alembic,
SQLAlchemy and psycopg (built once per session, from the package index pip is configured with). Where it is
installed, Alembic prints what it printed with the original env.py: the project's logging (fileConfig) is kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.alembic_projects import ALEMBIC_INI, write_stock_project
from tests.conftest import migrator_env, run_migrator
from tests.postgres import Server

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def alembic_without_migrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `alembic` of a virtualenv with alembic, SQLAlchemy and psycopg only (the versions of this one)."""
    root = tmp_path_factory.mktemp("alembic-only")
    venv.EnvBuilder(with_pip=False).create(root)
    wanted = [f"alembic=={version('alembic')}", f"sqlalchemy=={version('sqlalchemy')}",
              f"psycopg[binary]=={version('psycopg')}"]
    installed = subprocess.run([str(BIN / "pip"), "--python", str(root / "bin" / "python"), "install", "--quiet",
                                *wanted], capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    yield root / "bin" / "alembic"
    shutil.rmtree(root)


@pytest.fixture
def adopted(tmp_path: Path) -> Path:
    project = write_stock_project(tmp_path / "shop")
    result = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    return project


def alembic(executable: Path, project: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(executable), *args], cwd=project, capture_output=True, text=True, timeout=120,
                          check=False, env=migrator_env(url))


def test_alembic_without_migrator_says_what_to_install(alembic_without_migrator: Path, adopted: Path,
                                                       database_url: str) -> None:
    current = alembic(alembic_without_migrator, adopted, database_url, "current")
    assert current.returncode == 1
    [line] = current.stderr.splitlines()
    assert line == (f"{adopted / 'alembic' / 'env.py'} delegates to migrator, which this Python cannot import: "
                    "install migrator into this environment too (pip install, as in migrator's README), or run "
                    "`migrator`")


def test_alembic_with_migrator_prints_what_it_printed_before(tmp_path: Path, adopted: Path, database_url: str,
                                                              pg_server: Server) -> None:
    original = write_stock_project(tmp_path / "original")
    name = pg_server.create_database()
    try:
        url = pg_server.url_for(name).replace("postgresql://", "postgresql+psycopg://", 1).replace("%", "%%")
        (original / "alembic.ini").write_text(ALEMBIC_INI.replace("driver://user:pass@localhost/dbname", url))
        before = alembic(BIN / "alembic", original, None, "upgrade", "head")
    finally:
        pg_server.drop_database(name)
    assert before.returncode == 0, before.stderr

    after = alembic(BIN / "alembic", adopted, database_url, "upgrade", "head")
    assert after.returncode == 0, after.stderr
    assert [line for line in after.stderr.splitlines() if line.startswith("INFO ")] == \
        [line for line in before.stderr.splitlines() if line.startswith("INFO ")]
    assert "Running upgrade  -> 1a2b3c4d5e6f, create items" in after.stderr
