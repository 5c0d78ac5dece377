"""The kind smoke suite's scenario as data: the revisions its images add, the values of each release step, and
what each step must leave behind in the database and the migrator's logs.

Two suites apply it and assert the same expectations with the same code (`Expect.check`):

- tests/smoke/test_kind_smoke.py on a real kind cluster with Helm (marked `cluster`);
- tests/smoke/test_smoke_scenario_emulated.py here, in `make test`: the same chart rendered by Helm's engine with
  the same values, its Helm actions, Jobs and pods emulated by tests/chart/lifecycle_emulation.py with the same
  images in Docker against a real PostgreSQL.

So a scenario that contradicts itself (a revision whose downgrade does not undo its upgrade, a step expecting a
table that an earlier step dropped, values the chart refuses) fails in `make test`, not first on a cluster.
Only the connection differs: the cluster's database is tests/smoke/postgres.yaml's, the emulation's a test server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
NAMESPACE = "migrator-smoke"
HOOK_RELEASE, JOB_RELEASE, INIT_RELEASE = "smoke", "smoke-job", "smoke-init"
EXTRA_REVISION = "29990101000000"  # one more migration: the table smoke_extra
MORE_REVISION = "29990102000000"  # one after it: broken (division by zero), then fixed (the table smoke_more)
RUNNING = re.compile(r"== Running (\d{14}) ")
SECRET = {"name": "postgres", "passwordKey": "password"}  # the Secret tests/smoke/postgres-up.sh makes


def base_revisions() -> list[str]:
    """The revisions the migrator image carries (it copies migrations/ from this tree), oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(ROOT / "migrations"))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


# --- the revisions the smoke images add -----------------------------------------------------------------

@dataclass(frozen=True)
class SmokeRevision:
    """One migration file that a smoke image adds to the migrator image's migrations/versions."""

    revision: str
    down: str
    name: str
    upgrade: str
    downgrade: str  # must undo upgrade: the NOTES rollback step runs it, and a later step applies upgrade again

    @property
    def filename(self) -> str:
        return f"{self.revision}_{self.name}.py"

    def text(self) -> str:
        return ('"""smoke"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
                f"revision = {self.revision!r}\ndown_revision = {self.down!r}\nbranch_labels = None\n"
                f"depends_on = None\n\n\ndef upgrade():\n    {self.upgrade}\n\n\n"
                f"def downgrade():\n    {self.downgrade}\n")


def smoke_revisions(head: str) -> dict[str, SmokeRevision]:
    """The three files, by role: extra (after the image's HEAD), broken and fixed (both after extra)."""
    table = "op.create_table({!r}, sa.Column('id', sa.Integer, primary_key=True))"
    return {
        "extra": SmokeRevision(EXTRA_REVISION, head, "smoke_extra", table.format("smoke_extra"),
                               "op.drop_table('smoke_extra')"),
        # Fails before it changes anything, so there is nothing to undo.
        "broken": SmokeRevision(MORE_REVISION, EXTRA_REVISION, "smoke_more", "op.execute('SELECT 1/0')", "pass"),
        "fixed": SmokeRevision(MORE_REVISION, EXTRA_REVISION, "smoke_more", table.format("smoke_more"),
                               "op.drop_table('smoke_more')"),
    }


# The files each smoke image adds to the image under test ("base" adds none).
IMAGE_FILES: dict[str, tuple[str, ...]] = {
    "base": (), "extra": ("extra",), "broken": ("extra", "broken"), "fixed": ("extra", "fixed")}


def smoke_tag(base: str, role: str) -> str:
    """The tag of the smoke image ROLE built on BASE (REPO:TAG -> REPO:TAG-smoke-ROLE), so that two base images
    (two checkouts, two helpers on one Docker engine) never share a derived tag."""
    if role == "base":
        return base
    repository, tag = base.rsplit(":", 1)
    return f"{repository}:{tag}-smoke-{role}"


# --- values ---------------------------------------------------------------------------------------------

def merge(*dicts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            mergeable = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
            out[key] = merge(out[key], value) if mergeable else value
    return out


def image_values(migrator_image: str, app_image: str) -> dict[str, Any]:
    """Local images, never pulled (kind loads them; the emulation runs them from the local engine)."""
    repo, tag = migrator_image.rsplit(":", 1)
    app_repo, app_tag = app_image.rsplit(":", 1)
    return {"migrator": {"image": {"repository": repo, "tag": tag, "pullPolicy": "Never"}},
            "app": {"image": {"repository": app_repo, "tag": app_tag, "pullPolicy": "Never"}}}


def hook_values(migrator_image: str, app_image: str, database: Mapping[str, Any],
                migrator: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hook mode, the password in a Secret made before the release (secret_database): the pre-install hook Jobs
    read it, and the chart makes no copy of it."""
    return merge(image_values(migrator_image, app_image), {
        "database": database,
        # Keep succeeded Jobs (not their hook copies) so that their logs can be read.
        "migrator": merge({"seed": {"enabled": True}, "hook": {"deletePolicy": "before-hook-creation"}},
                          migrator or {}),
        "app": {"replicaCount": 2},
    })


def job_values(migrator_image: str, app_image: str, database: Mapping[str, Any],
               job: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return merge(image_values(migrator_image, app_image), {
        "database": database, "migrator": {"mode": "job", "job": dict(job or {})}, "app": {"replicaCount": 1}})


def init_values(migrator_image: str, app_image: str, database: Mapping[str, Any]) -> dict[str, Any]:
    return merge(image_values(migrator_image, app_image), {
        "database": database, "migrator": {"mode": "initContainer"}, "app": {"replicaCount": 5}})


def secret_database(url: str) -> dict[str, Any]:
    """The database block of every release: URL, the password from the Secret `postgres`."""
    return {"url": url, "existingSecret": dict(SECRET)}


# --- what each step leaves behind -----------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What one release step leaves behind, as both suites observe it."""

    ran: tuple[str, ...] | None  # revisions the step's migrate containers ran, all pods together (None: no migrate)
    version: str  # alembic_version after the step
    tables: Mapping[str, bool] = field(default_factory=dict)  # table -> exists after the step
    failed_with: str | None = None  # the migration failed, and its log says this

    def check(self, migrate_logs: list[str], version: str, table_exists: Callable[[str], bool]) -> None:
        """Assert the step's outcome from the logs of its migrate containers, the database's version and
        tables."""
        if self.ran is not None:
            ran = sorted(RUNNING.findall("\n".join(migrate_logs)))
            assert ran == sorted(self.ran), f"ran {ran}, expected {sorted(self.ran)}:\n{migrate_logs}"
        if self.failed_with is not None:
            assert any(self.failed_with in log for log in migrate_logs), migrate_logs
        assert version == self.version, f"the database is at {version}, expected {self.version}"
        for table, exists in self.tables.items():
            assert table_exists(table) is exists, f"table {table} {'missing' if exists else 'left behind'}"


def hook_steps(base: list[str]) -> dict[str, Expect]:
    """Release `smoke` (hook mode, database `app`), in order: what each of test_kind_smoke's hook tests does."""
    head = base[-1]
    return {
        # install with the image under test: every revision, then the seed
        "install": Expect(tuple(base), head),
        # upgrade to the extra image: one more migration
        "upgrade-extra": Expect((EXTRA_REVISION,), EXTRA_REVISION, {"smoke_extra": True}),
        # helm rollback 1: no hook runs, the old image's pods wait with --allow-newer
        "helm-rollback": Expect(None, EXTRA_REVISION, {"smoke_extra": True}),
        # an upgrade that keeps the old image: its hooks accept the newer database and change nothing
        "upgrade-old-image": Expect((), EXTRA_REVISION),
        # back to the extra image (nothing to run), then NOTES' rollback command to the base head
        "upgrade-extra-again": Expect((), EXTRA_REVISION),
        "notes-rollback": Expect(None, head, {"smoke_extra": False}),
        # the broken image (backoffLimit 0): extra applies again, the next one fails and leaves nothing
        "upgrade-broken": Expect((EXTRA_REVISION, MORE_REVISION), EXTRA_REVISION,
                                 {"smoke_extra": True, "smoke_more": False}, failed_with="division by zero"),
        "upgrade-fixed": Expect((MORE_REVISION,), MORE_REVISION, {"smoke_more": True}),
    }


def job_steps(base: list[str]) -> dict[str, Expect]:
    """Release `smoke-job` (job mode, database `smoke_job`), in order."""
    return {
        "first": Expect(tuple(base), base[-1]),
        "extra": Expect((EXTRA_REVISION,), EXTRA_REVISION),
        # a changed podFailurePolicy (immutable in a Job): a new Job, nothing to run
        "policy": Expect((), EXTRA_REVISION),
        # helm rollback 1 re-creates revision 1's Job: the old image accepts the newer database
        "helm-rollback": Expect((), EXTRA_REVISION),
        # a new run id: the Job runs again with otherwise unchanged values
        "run-id": Expect((), EXTRA_REVISION),
    }


def init_steps(base: list[str]) -> dict[str, Expect]:
    """Release `smoke-init` (initContainer mode, 5 replicas, database `smoke_init`), in order."""
    return {
        "first": Expect(tuple(base), base[-1]),  # each revision once, across the 5 pods
        "extra": Expect((EXTRA_REVISION,), EXTRA_REVISION),
        "helm-rollback": Expect((), EXTRA_REVISION),
    }


HOOK_BROKEN_MIGRATOR = {"job": {"backoffLimit": 0}}  # the broken upgrade's one pod: its log is the failure's
JOB_POLICY = {"nonRetryableExitCodes": [2, 5, 6]}
JOB_RUN_ID = "retry-1"
