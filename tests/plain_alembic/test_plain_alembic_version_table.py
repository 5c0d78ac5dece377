"""Review finding: a version table set in migrator.toml is not seen by the plain `alembic` command.

README: "The plain `alembic` command keeps working on the same directory with `alembic.ini` (it connects from
DATABASE_URL too, with the same timeouts, but without migrator's lock, logs and retries)", and migrator.toml
takes `version_table` / `version_table_schema`. migrator.alembic_env reads them from alembic.ini only, so
after `migrator migrate` with `version_table = "app_version"`, `alembic upgrade head` finds no version
table, creates `alembic_version` and runs every migration again from base (here the first one fails on
"relation users already exists"; a data-only migration would be applied twice). It also takes another lock
(the key includes the table name), so it does not wait for a running migrator either.
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
