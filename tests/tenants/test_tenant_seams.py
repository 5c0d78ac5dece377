"""Where tenants meet the features built beside them: progress lines of a tenant's long statement, ..."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from migrator import file_sums, manifest, tenants
from migrator.config import database_config
from migrator.repos import Repo, load_repos
from migrator.targets import Target
from tests.conftest import query, run_migrator
from tests.faults.helpers import MARGIN, SIGNAL_BOUND, Migrator
from tests.faults.proxy import wait_until
from tests.tenants.tenant_projects import REVISIONS, write_project

SLOW = "20240101000009"


def write_slow(project: Path, upgrade: str) -> None:
    """The project's one migration, SLOW, running `upgrade`."""
    (project / "migrations" / "versions" / f"{SLOW}_slow.py").write_text(
        f'"""slow"""\nfrom alembic import op\n\nrevision = "{SLOW}"\ndown_revision = None\nbranch_labels = None\n'
        f"depends_on = None\n\n\ndef upgrade():\n    {upgrade}\n\n\ndef downgrade():\n    pass\n")


def test_a_tenants_progress_lines_carry_the_tenant_in_json(tmp_path: Path, database_url: str) -> None:
    project = write_project(tmp_path / "p", 'tenants = ["acme"]\n', revisions=0)
    write_slow(project, "op.execute('SELECT pg_sleep(1.5)')")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_FORMAT="json",
                          MIGRATOR_PROGRESS_AFTER="300ms", MIGRATOR_PROGRESS_INTERVAL="500ms",
                          MIGRATOR_DDL_LOCK_TIMEOUT="1s")  # the monitor looks every 0.33 s
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    progress = [e for e in events if e["event"].startswith("... ")]
    assert progress, result.stderr
    assert [e.get("tenant") for e in progress] == ["acme"] * len(progress), progress


def test_sigterm_in_a_tenant_names_it_and_what_the_run_did_in_the_termination_message(tmp_path: Path,
                                                                                      database_url: str) -> None:
    project = write_project(tmp_path / "p", 'tenants = ["a1", "b2", "c3"]\n', revisions=0)
    write_slow(project, "op.execute('CREATE TABLE marker (id int)')\n    op.execute('SELECT pg_sleep(30)')")
    query(database_url, "CREATE SCHEMA a1")
    query(database_url, "CREATE TABLE a1.marker (id int)")  # a1 fails before its sleep; b2 sleeps
    log = tmp_path / "termination"
    run = Migrator(["migrate"], cwd=project, url=database_url, termination=log)
    wait_until(lambda: query(database_url, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                           "'SELECT pg_sleep(30)%%' AND state = 'active'") == [(1,)],
               30, "b2's migration running")
    result = run.finish(SIGNAL_BOUND + MARGIN, since=run.signal(signal.SIGTERM))
    assert result.code == 143, result.err
    assert log.read_text() == (
        f"migrate failed (exit 143): tenant b2: interrupted by SIGTERM during {SLOW} (slow): its running statement "
        "was cancelled and its transaction rolled back (confirmed by the server); run it again to resume; before it "
        "0 done, 1 failed: a1 (exit 1); 1 not reached\n")
    assert result.last.split("] ", 1)[1] == log.read_text().split(": ", 1)[1].rstrip()


def test_a_repos_tenants_share_the_files_checksums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tenant is a Repo of its own (its schema): the checksums of the files, the same for all, are read once,
    not kept once per tenant (a 1,000-revision manifest cost 1.3 MB per tenant, 400 MB over 300 tenants, within
    the chart's 256Mi limit)."""
    project = write_project(tmp_path / "p", 'tenants = ["a1", "b2"]\n')
    [repo] = load_repos(project)
    manifest.write(repo)
    reads: list[Path] = []
    real_read = manifest.read

    def read(read_repo: Repo) -> manifest.Manifest | None:
        reads.append(read_repo.script_location)
        return real_read(read_repo)

    monkeypatch.setattr(manifest, "read", read)
    target = Target(repo, database_config({"DATABASE_URL": "postgresql://u@h/db"}))
    path = next((project / "migrations" / "versions").glob(f"{REVISIONS[0]}_*.py"))
    sums = [file_sums.sums_for(tenants.target_for(target, name).repo).of(path) for name in ("a1", "b2")]
    assert sums[0] == sums[1] == file_sums.Sums(repo).of(path)
    assert reads == [repo.script_location] * 2, "once for the tenants, once for the Sums made here"
