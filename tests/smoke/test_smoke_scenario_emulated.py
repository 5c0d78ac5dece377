"""The kind smoke suite's scenario (smoke_scenario.py), emulated: each release of test_kind_smoke.py, step by
step, with the chart rendered by Helm's engine from the same values, Helm's actions and the Job, Deployment and
kubelet behaviour emulated by tests/chart/lifecycle_emulation.py, the same images (the image under test and the
smoke images built on it) in Docker against a real PostgreSQL, and the same expectations (`Expect.check`) plus
what each cluster test reads that needs no cluster: Job names and outcomes, the hook logs Helm prints, the
NOTES commands, the history a finished pod prints, the users page of a ready app pod.

An emulation of kind, not a cluster: no API server, scheduler, Services or image pulls, and Helm's and the
controllers' timing is not real (see lifecycle_emulation.py). The only value that differs from the kind suite is
the database URL (a test server instead of tests/smoke/postgres.yaml's Service).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.chart_render import render, rollback_pod
from tests.chart.lifecycle_emulation import ActionResult, EmulatedCluster, HelmEmulation, PodRun
from tests.chart.pod_emulation import without_password
from tests.conftest import assert_no_secret, query
from tests.docker import docker
from tests.postgres import SUPERUSER_PASSWORD, DebianServer
from tests.smoke.kube_state import detached_argv, notes_rollback_argv
from tests.smoke.smoke_images import build_smoke_images
from tests.smoke.smoke_scenario import (
    EXTRA_REVISION,
    HOOK_BROKEN_MIGRATOR,
    HOOK_RELEASE,
    INIT_RELEASE,
    JOB_POLICY,
    JOB_RELEASE,
    JOB_RUN_ID,
    NAMESPACE,
    SECRET,
    Expect,
    base_revisions,
    hook_steps,
    hook_values,
    init_steps,
    init_values,
    job_steps,
    job_values,
    secret_database,
)

CONTEXT = "kind-migrator"  # any context: the emulation reads the NOTES command, kubectl never runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def images(migrator_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The smoke images built on the image under test (role -> tag), removed afterwards."""
    built = build_smoke_images(migrator_image, tmp_path_factory.mktemp("smoke-images"))
    yield built
    docker("image", "rm", *(tag for role, tag in built.items() if role != "base"), check=False)


class Release:
    """One release of the scenario on an emulated cluster, with a database of its own."""

    def __init__(self, name: str, server: DebianServer, workdir: Path) -> None:
        self.database = server.create_database()
        self.url = server.url_for(self.database)
        cluster = EmulatedCluster(workdir / name, NAMESPACE)
        cluster.workdir.mkdir()
        # The Secret tests/smoke/postgres-up.sh makes before any release (the job and init releases read it).
        cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET["name"]},
                        "stringData": {SECRET["passwordKey"]: SUPERUSER_PASSWORD}})
        self.helm = HelmEmulation(cluster, lambda values, upgrade, revision: render(
            values, upgrade=upgrade, name=name, namespace=NAMESPACE, revision=revision), wait=True)

    @property
    def cluster(self) -> EmulatedCluster:
        return self.helm.cluster

    def step(self, name: str) -> None:
        self.cluster.step = name

    def pods(self) -> list[PodRun]:
        return [p for p in self.cluster.pods if p.step == self.cluster.step]

    def logs(self, container: str) -> list[str]:
        return [r.output for p in self.pods() for r in p.runs if r.container == container]

    def check(self, expect: Expect) -> None:
        version = [str(row[0]) for row in query(self.url, "SELECT version_num FROM alembic_version")]
        assert len(version) == 1, version
        expect.check(self.logs("migrate"), version[0], self.table_exists)

    def table_exists(self, table: str) -> bool:
        return bool(query(self.url, "SELECT to_regclass(%s) IS NOT NULL", table)[0][0])

    def serving(self) -> list[PodRun]:
        """The ready app pods, once the rollout is over (only the current ReplicaSet's)."""
        return self.cluster.ready_pods()

    def users_page(self) -> str:
        pod = self.serving()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{pod.port}/users", timeout=10) as response:
            return str(response.read().decode())

    def run_pod(self, pod: dict[str, Any]) -> PodRun:
        """A pod `kubectl run` makes, run to its end by the emulated kubelet."""
        return self.helm.kubelet.run_pod(pod, f"Pod/{pod['metadata']['name']}")

    def finished_pod_output(self, notes: str, name: str, args: list[str]) -> str:
        """test_kind_smoke's Cluster.finished_pod_output: the NOTES command, detached, renamed, running ARGS."""
        argv = detached_argv(notes_rollback_argv(notes, CONTEXT, "REV"), name, args)
        run = self.run_pod(rollback_pod(argv, "REV"))
        assert run.phase == "Succeeded", run.describe()
        return run.runs[-1].output

    def close(self) -> None:
        self.helm.close()
        assert_no_secret(*(text for pod in self.cluster.pods for run in pod.runs
                           for text in (run.output, run.termination_message)))


@pytest.fixture
def releases(tcp_server: DebianServer, tmp_path: Path) -> Iterator[dict[str, Release]]:
    made: dict[str, Release] = {}

    class Factory(dict[str, Release]):
        def __missing__(self, name: str) -> Release:
            made[name] = Release(name, tcp_server, tmp_path)
            return made[name]

    yield Factory()
    for release in made.values():
        print(release.cluster.log())  # shown with the test's output when it fails
        release.close()


def jobs_of(result: ActionResult) -> dict[str, str]:
    return {j.name: j.condition for j in [*result.hook_jobs(), *result.jobs]}


def secrets(release: Release) -> set[str]:
    return {name for kind, name in release.cluster.objects if kind == "Secret"}


# --- hook mode: release `smoke` -------------------------------------------------------------------------

def test_hook_release_emulated(images: dict[str, str], app_image: str, releases: dict[str, Release]) -> None:
    base = base_revisions()
    steps = hook_steps(base)
    smoke = releases[HOOK_RELEASE]

    def upgrade(role: str, migrator: dict[str, Any] | None = None) -> ActionResult:
        values = hook_values(images[role], app_image, secret_database(without_password(smoke.url)), migrator)
        return smoke.helm.upgrade(values) if smoke.helm.history else smoke.helm.install(values)

    smoke.step("install")  # test_install_runs_the_hook_jobs_and_seeds
    result = upgrade("base")
    assert result.ok, result.error
    assert jobs_of(result) == {"smoke-migrator-migrate": "Complete", "smoke-migrator-seed": "Complete"}
    assert "== Migrated" in smoke.logs("migrate")[0]
    assert "== Seeded" in smoke.logs("seed")[0]
    assert secrets(smoke) == {"postgres"}  # no copy of the password
    smoke.check(steps["install"])
    assert "User1" in smoke.users_page()
    history = smoke.finished_pod_output(result.revision.rendered.notes, "smoke-history",
                                        ["history", "--json", "--limit", "50"])
    assert "smoke-migrator-migrate-" in history and NAMESPACE in history and images["base"] in history, history

    smoke.step("helm-test")  # test_helm_test_logs_reads_the_passed_test_pod
    for _ in range(2):
        [test_pod] = smoke.helm.test()
        assert test_pod.name == "smoke-migrator-test-schema" and test_pod.phase == "Succeeded", test_pod.describe()

    smoke.step("upgrade-extra")  # test_upgrade_with_one_more_migration
    result = upgrade("extra")
    assert result.ok, result.error
    smoke.check(steps["upgrade-extra"])
    assert len(smoke.serving()) == 2
    assert {p.images["wait-for-schema"] for p in smoke.serving()} == {images["extra"]}
    assert "User1" in smoke.users_page()

    smoke.step("helm-rollback")  # test_helm_rollback_starts_the_old_pods_on_the_newer_schema
    result = smoke.helm.rollback(1)
    assert result.ok, result.error
    assert {p.images["wait-for-schema"] for p in smoke.serving()} == {images["base"]}
    assert all(p.exit_codes("wait-for-schema") == [0] for p in smoke.pods()), [p.describe() for p in smoke.pods()]
    smoke.check(steps["helm-rollback"])
    assert "User1" in smoke.users_page()

    smoke.step("upgrade-old-image")  # test_an_upgrade_that_keeps_the_old_image_passes_its_hook
    result = upgrade("base")
    assert result.ok, result.error
    assert jobs_of(result) == {"smoke-migrator-migrate": "Complete", "smoke-migrator-seed": "Complete"}
    smoke.check(steps["upgrade-old-image"])

    smoke.step("upgrade-extra-again")  # test_rollback_with_the_command_from_notes
    result = upgrade("extra")
    assert result.ok, result.error
    smoke.check(steps["upgrade-extra-again"])
    notes = result.revision.rendered.notes
    head = base[-1]
    argv = notes_rollback_argv(notes, CONTEXT, head)
    assert f"--image={images['extra']}" in argv
    smoke.step("notes-rollback")
    rollback = smoke.run_pod(rollback_pod(argv, head))
    assert rollback.phase == "Succeeded", rollback.describe()
    smoke.check(steps["notes-rollback"])
    history = smoke.finished_pod_output(notes, "smoke-history", ["history", "--json", "--limit", "5"])
    assert "smoke-migrator-rollback" in history and EXTRA_REVISION in history, history

    smoke.step("upgrade-broken")  # test_a_failed_hook_shows_its_log_and_a_fixed_upgrade_recovers
    result = upgrade("broken", HOOK_BROKEN_MIGRATOR)
    assert not result.ok
    assert any("division by zero" in text for text in result.printed), result.printed
    assert jobs_of(result) == {"smoke-migrator-migrate": "Failed"}
    assert secrets(smoke) == {"postgres"}  # a failed hook phase left no copy of the password behind
    smoke.check(steps["upgrade-broken"])
    assert len(smoke.serving()) == 2  # the app kept running the previous release
    smoke.step("upgrade-fixed")
    result = upgrade("fixed")
    assert result.ok, result.error
    assert jobs_of(result)["smoke-migrator-migrate"] == "Complete"
    smoke.check(steps["upgrade-fixed"])
    assert {p.images["wait-for-schema"] for p in smoke.serving()} == {images["fixed"]}


# --- job mode: release `smoke-job` ----------------------------------------------------------------------

def test_job_release_emulated(images: dict[str, str], app_image: str, releases: dict[str, Release]) -> None:
    """test_job_mode_lifecycle: a new Job per change of its spec, helm rollback, a run id."""
    steps = job_steps(base_revisions())
    release = releases[JOB_RELEASE]
    database = secret_database(without_password(release.url))
    made: list[str] = []

    def apply(name: str, role: str, job: dict[str, Any] | None = None, rollback: bool = False) -> str:
        release.step(name)
        values = job_values(images[role], app_image, database, job)
        if rollback:
            result = release.helm.rollback(1)
        else:
            result = release.helm.upgrade(values) if release.helm.history else release.helm.install(values)
        assert result.ok, result.error
        [(job_name, condition)] = jobs_of(result).items()
        assert condition == "Complete"
        assert {n for kind, n in release.cluster.objects if kind == "Job"} == {job_name}  # the_job(): one left
        release.check(steps[name])
        assert {p.images["wait-for-schema"] for p in release.serving()} == {images[role]}
        return job_name

    made.append(apply("first", "base"))
    made.append(apply("extra", "extra"))
    assert made[1] != made[0]
    made.append(apply("policy", "extra", JOB_POLICY))
    assert made[2] not in made[:2]
    assert apply("helm-rollback", "base", rollback=True) == made[0]
    # `helm upgrade --reuse-values --set-string migrator.job.runId=retry-1` after the rollback to revision 1
    assert apply("run-id", "base", {"runId": JOB_RUN_ID}) not in made


# --- initContainer mode: release `smoke-init` -----------------------------------------------------------

def test_init_release_emulated(images: dict[str, str], app_image: str, releases: dict[str, Release]) -> None:
    """test_init_container_mode_applies_each_migration_once and test_init_container_mode_helm_rollback."""
    steps = init_steps(base_revisions())
    release = releases[INIT_RELEASE]
    database = secret_database(without_password(release.url))

    release.step("first")
    result = release.helm.install(init_values(images["base"], app_image, database))
    assert result.ok, result.error
    assert len(release.serving()) == 5
    for pod in release.serving():
        assert list(pod.images)[:2] == ["migrate", "wait-for-schema"]
    release.check(steps["first"])

    release.step("extra")
    result = release.helm.upgrade(init_values(images["extra"], app_image, database))
    assert result.ok, result.error
    release.check(steps["extra"])

    release.step("helm-rollback")
    result = release.helm.rollback(1)
    assert result.ok, result.error
    assert len(release.serving()) == 5
    for pod in release.pods():
        assert pod.images["migrate"] == images["base"]
        assert pod.exit_codes("migrate") == [0] and pod.exit_codes("wait-for-schema") == [0], pod.describe()
    release.check(steps["helm-rollback"])
