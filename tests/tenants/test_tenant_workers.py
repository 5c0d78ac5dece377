"""Several processes over the same tenants, as an Indexed Job's pods and their retries run them: two given the
same share never run a migration twice, and the retry of a process killed mid-run finishes its tenants without
running anything again (each tenant's lock and version table, proven by its history)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import run_migrator, start_migrator
from tests.tenants.tenant_projects import (
    HEAD,
    QUERY_CONFIG,
    REVISIONS,
    applied,
    make_tenants_table,
    tenant_versions,
    write_project,
)

NAMES = [f"tenant_{i:02d}" for i in range(8)]


def test_two_workers_with_the_same_share_never_run_a_migration_twice(tmp_path: Path, database_url: str) -> None:
    make_tenants_table(database_url, NAMES)
    project = write_project(tmp_path / "p", QUERY_CONFIG)
    env = {"MIGRATOR_TENANT_SHARDS": "1", "MIGRATOR_LOCK_TIMEOUT": "60"}
    workers = [start_migrator(["migrate"], cwd=project, database_url=database_url, **env) for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    for name in NAMES:
        assert tenant_versions(database_url, name) == [HEAD]
        assert applied(database_url, name) == REVISIONS, f"{name}: each revision applied exactly once"
    # Each tenant was migrated by one worker and found done by the other.
    migrated = [{line.rsplit(" schema ", 1)[1].split()[0] for line in err.splitlines() if "] Migrated " in line}
                for _, err in outputs]
    assert not migrated[0] & migrated[1] and migrated[0] | migrated[1] == set(NAMES)


def test_a_killed_worker_leaves_its_tenants_to_the_retry_and_nothing_runs_twice(tmp_path: Path,
                                                                               database_url: str) -> None:
    make_tenants_table(database_url, NAMES)
    project = write_project(tmp_path / "p", QUERY_CONFIG)
    # In the killed run each tenant's last migration sleeps: the kill lands inside the second tenant's, its
    # transaction in flight.
    last = next((project / "migrations" / "versions").glob(f"{HEAD}_*.py"))
    sleep = "    if os.environ.get('SLOW'):\n        op.execute('SELECT pg_sleep(2)')\n"
    last.write_text("import os\n" + last.read_text().replace("def upgrade():\n", "def upgrade():\n" + sleep))
    worker = start_migrator(["migrate"], cwd=project, database_url=database_url, SLOW="1")
    assert worker.stderr is not None
    deadline = time.monotonic() + 60
    running_last = 0
    while running_last < 2 and time.monotonic() < deadline:  # bounded also if the worker dies silently
        line = worker.stderr.readline()
        running_last += f"== Running {HEAD}" in line
    assert running_last == 2, "the worker did not reach the second tenant's last migration"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert [tenant_versions(database_url, name) for name in NAMES[:2]] == [[HEAD], [REVISIONS[-2]]]

    retry = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert retry.returncode == 0, retry.stderr
    for name in NAMES:
        assert tenant_versions(database_url, name) == [HEAD]
        assert applied(database_url, name) == REVISIONS, f"{name}: each revision applied exactly once"
    assert "7 migrated, 1 already up" in retry.stderr.splitlines()[-1]
