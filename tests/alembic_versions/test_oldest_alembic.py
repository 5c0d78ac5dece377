"""migrator on the oldest Alembic and SQLAlchemy that pyproject.toml allows, not only on the image's pins.

The contract tests of alembic_internals (tests/unit/test_alembic_contract.py) and one real `migrate` run in a
throwaway install of the oldest releases, made once per test session from the package index pip is set up to
use, and put first on the path; everything else is the test environment's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HEAD, ROOT, migrator_env, query

OLDEST = {"alembic": "1.13.0", "SQLAlchemy": "2.0.30"}  # pyproject.toml: alembic>=1.13,<2; SQLAlchemy>=2.0.30


@pytest.fixture(scope="module")
def oldest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("oldest-alembic")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), *(f"{name}=={version}" for name, version in OLDEST.items())],
                   check=True, timeout=600, capture_output=True)
    return target


def on_path(target: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}


def test_the_oldest_releases_are_the_ones_imported(oldest: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import alembic, sqlalchemy; print(alembic.__version__, "
                            "sqlalchemy.__version__)"], env={**os.environ, **on_path(oldest)}, capture_output=True,
                           text=True, check=True, timeout=60)
    assert probe.stdout.split() == [OLDEST["alembic"], OLDEST["SQLAlchemy"]]


def test_the_alembic_contract_holds_on_the_oldest_alembic(oldest: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/unit/test_alembic_contract.py", "-q",
                             "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist"], cwd=ROOT,
                            env={**os.environ, **on_path(oldest)}, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout[-3000:]


def test_migrate_on_the_oldest_alembic(oldest: Path, project: Path, database_url: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "migrator", "migrate"], cwd=project, capture_output=True, text=True,
                          env=migrator_env(database_url, **on_path(oldest)), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
