"""The plain `alembic` command uses the version table set in migrator.toml.

README: "The plain `alembic` command keeps working on the same directory with `alembic.ini` (it connects from
DATABASE_URL too, with the same timeouts, but without migrator's lock, logs and retries)", and migrator.toml
takes `version_table` / `version_table_schema`. So after `migrator migrate` with `version_table =
"app_version"`, `alembic upgrade head` finds that table at head and succeeds without creating
`alembic_version`: it runs no migration again from base (which would fail on a table that exists, or apply a
data-only migration twice).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import migrator_env, query, run_migrator


def test_plain_alembic_uses_the_version_table_migrator_uses(project: Path, database_url: str) -> None:
    (project / "migrator.toml").write_text('version_table = "app_version"\nscript_location = "migrations"\n')
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    alembic = Path(sys.executable).with_name("alembic")
    proc = subprocess.run([str(alembic), "upgrade", "head"], cwd=project, capture_output=True, text=True,
                          env=migrator_env(database_url), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]
