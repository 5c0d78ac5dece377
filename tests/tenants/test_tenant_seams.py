"""Where tenants meet the features built beside them: progress lines of a tenant's long statement, ..."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_migrator
from tests.tenants.tenant_projects import write_project

SLOW = "20240101000009"


def test_a_tenants_progress_lines_carry_the_tenant_in_json(tmp_path: Path, database_url: str) -> None:
    project = write_project(tmp_path / "p", 'tenants = ["acme"]\n', revisions=0)
    (project / "migrations" / "versions" / f"{SLOW}_slow.py").write_text(
        f'"""slow"""\nfrom alembic import op\n\nrevision = "{SLOW}"\ndown_revision = None\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    op.execute('SELECT pg_sleep(1.5)')\n\n\n"
        "def downgrade():\n    pass\n")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_FORMAT="json",
                          MIGRATOR_PROGRESS_AFTER="300ms", MIGRATOR_PROGRESS_INTERVAL="500ms",
                          MIGRATOR_DDL_LOCK_TIMEOUT="1s")  # the monitor looks every 0.33 s
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    progress = [e for e in events if e["event"].startswith("... ")]
    assert progress, result.stderr
    assert [e.get("tenant") for e in progress] == ["acme"] * len(progress), progress
