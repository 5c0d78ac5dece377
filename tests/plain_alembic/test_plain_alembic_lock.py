"""The plain `alembic` command takes migrator's lock, as the README says: it waits for a running migrator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import ROOT, dbname, migrator_env, query
from tests.faults.helpers import lock_key_of


def test_plain_alembic_waits_for_migrators_lock(project: Path, database_url: str) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key_of(database_url),))
        proc = subprocess.run([str(alembic), "upgrade", "head"], cwd=project, capture_output=True, text=True,
                              env=migrator_env(database_url, MIGRATOR_LOCK_TIMEOUT="1"), timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr  # env.py ends the alembic command with the line and exit status 1
    assert "migration lock on postgres@" in proc.stderr and f"/{dbname(database_url)} not acquired after 1s" in \
        proc.stderr, proc.stderr
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]


def test_the_readme_says_so() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "without migrator's lock" not in readme
    assert "takes migrator's lock and applies the same session settings" in readme
