"""Smoke tests on a real kind cluster: the chart installed, upgraded and rolled back with Helm, in each of its
three modes, with the migrator and app images built from this tree.

- hook mode (release `smoke`): install with seeds, `helm test --logs`, an upgrade with one more migration,
  `helm rollback` (old pods start on the newer schema), an upgrade that keeps the old image (its pre-upgrade
  hook accepts the newer database), the NOTES rollback command, and a failing hook (Helm prints its log)
  followed by a fixed upgrade;
- job mode (release `smoke-job`): a new Job per change of its spec, `helm rollback` re-creating the previous
  Job, a retry with `migrator.job.runId`;
- initContainer mode (release `smoke-init`): 5 replicas apply each migration once; `helm rollback`.

The scenario (the smoke images' revisions, each step's values and what it leaves behind) is
tests/smoke/smoke_scenario.py, shared with test_smoke_scenario_emulated.py, which runs the same steps with the
same images and asserts the same expectations in `make test`: what is left to this file is what only a cluster
proves (ONLY_A_CLUSTER, also each test's skip reason).

Assertions read what cannot be lost: the database's state, and the logs of pods that have ended (a Job's,
or a pod run to completion); never the attached output of `kubectl run -i`, which kubectl before 1.36 can
lose before it attaches. After each `--wait`, the tests poll until only the new ReplicaSet's pods are left
(Helm 3's --wait returns while old pods may still run).

They need kind, helm, kubectl and docker, and a kind cluster (MIGRATOR_KIND_CLUSTER, default `migrator`);
.github/workflows/kind-smoke.yml creates one and runs them. Where there is none they skip and say why: no
cluster is ever faked. The tests run in file order and build on each other.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.smoke.kind_load import load_images
from tests.smoke.kube_state import (
    detached_argv,
    init_container_restarts,
    job_outcome,
    notes_rollback_argv,
    rollout_problem,
)
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

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = str(ROOT / "chart")
CLUSTER = os.environ.get("MIGRATOR_KIND_CLUSTER", "migrator")
CONTEXT = f"kind-{CLUSTER}"
MIGRATOR_IMAGE = os.environ.get("MIGRATOR_IMAGE", "migrator:dev")
APP_IMAGE = os.environ.get("APP_IMAGE", "migrator-app:dev")
CLUSTER_URL = "postgresql://app@postgres:5432/{}"  # tests/smoke/postgres.yaml's Service and user
HELM_TIMEOUT = "5m"  # Helm's default, which the chart's Job deadline (240 s) fits in with 60 s to spare
APP_PODS = "app.kubernetes.io/instance={release},app.kubernetes.io/component=app"
MIGRATE_JOBS = "app.kubernetes.io/instance={release},app.kubernetes.io/component=migrate"

# What each test proves that test_smoke_scenario_emulated.py cannot: said in its skip reason where no cluster runs.
ONLY_A_CLUSTER = {
    "test_install_runs_the_hook_jobs_and_seeds":
        "Helm's pre-install hooks on a real API server (the hook Jobs reading a Secret made before the release), "
        "the Job controller, kubelet and downward API, a Service routing to the app",
    "test_helm_test_logs_reads_the_passed_test_pod": "that `helm test --logs` finds the test pod's log",
    "test_upgrade_with_one_more_migration": "Helm's pre-upgrade hook and --wait with a real Deployment rollout",
    "test_helm_rollback_starts_the_old_pods_on_the_newer_schema":
        "`helm rollback` (no hooks) and the kubelet's init container restarts (none)",
    "test_an_upgrade_that_keeps_the_old_image_passes_its_hook": "Helm re-creating hooks (before-hook-creation)",
    "test_rollback_with_the_command_from_notes":
        "`kubectl run` with NOTES' --overrides merged by the API server, its exit code and --rm",
    "test_a_failed_hook_shows_its_log_and_a_fixed_upgrade_recovers":
        "Helm printing the failed hook's log, the release marked FAILED, the app left on the previous release",
    "test_job_mode_lifecycle":
        "Helm with --wait-for-jobs, the API server refusing an immutable Job change, `helm rollback` re-creating a "
        "Job, --reuse-values",
    "test_init_container_mode_applies_each_migration_once":
        "a real Deployment controller starting 5 pods whose init containers race for the lock",
    "test_init_container_mode_helm_rollback": "the kubelet's init container restarts (none) after `helm rollback`",
}

pytestmark = pytest.mark.cluster


def cluster_problem() -> str | None:
    """Why no kind cluster can be used here, or None."""
    for binary in ("kind", "helm", "kubectl", "docker"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed, so no kind cluster runs here (the kind-smoke workflow runs these)"
    if importlib.util.find_spec("kubernetes") is None:
        return "the kubernetes Python client is not installed: pip install kubernetes"
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=False, timeout=60)
    if CLUSTER not in clusters.stdout.split():
        return f"no kind cluster named {CLUSTER} (kind create cluster --name {CLUSTER}, or set MIGRATOR_KIND_CLUSTER)"
    return None


def run(*argv: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[0]} {argv[1]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run("kubectl", "--context", CONTEXT, "--namespace", NAMESPACE, *args, **kw)


def helm(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run("helm", "--kube-context", CONTEXT, "--namespace", NAMESPACE, *args, **kw)


def wait_until(problem: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll PROBLEM (why it is not done yet, or None) every 2 s, for at most TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while (why := problem()) is not None:
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s: {why}"
        time.sleep(2)


def psql(database: str, sql: str) -> str:
    """SQL in the PostgreSQL pod over its Unix socket (trusted there): no password on any command line."""
    return kubectl("exec", "deploy/postgres", "--", "psql", "--username", "app", "--dbname", database,
                   "--no-align", "--tuples-only", "--command", sql).stdout.strip()


def version(database: str = "app") -> str:
    return psql(database, "SELECT version_num FROM alembic_version")


def table_exists(name: str, database: str = "app") -> bool:
    return psql(database, f"SELECT to_regclass('{name}') IS NOT NULL") == "t"


def check(expect: Expect, migrate_logs: list[str], database: str = "app") -> None:
    """The scenario's expectation of a step, read from the cluster (the emulation reads the same)."""
    expect.check(migrate_logs, version(database), lambda table: table_exists(table, database))


@dataclass
class Cluster:
    core: Any
    batch: Any
    apps: Any
    api: Any
    values_dir: Path
    images: dict[str, str]  # smoke image role -> tag (smoke_scenario.IMAGE_FILES)

    def json(self, obj: Any) -> Any:
        """An API object as the API server's JSON (camelCase), for tests.smoke.kube_state."""
        return self.api.sanitize_for_serialization(obj)

    def pod_logs(self, pod: str, container: str) -> str:
        return str(self.core.read_namespaced_pod_log(pod, NAMESPACE, container=container))

    def pods(self, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)

    def jobs(self, selector: str) -> list[Any]:
        return list(self.batch.list_namespaced_job(NAMESPACE, label_selector=selector).items)

    def job_logs(self, job: str, container: str) -> str:
        """The logs of the Job's own pods (its selector carries its uid, so a deleted predecessor's pods, still
        being garbage-collected, are not read), oldest first."""
        selector = self.batch.read_namespaced_job(job, NAMESPACE).spec.selector.match_labels
        pods = sorted(self.pods(",".join(f"{k}={v}" for k, v in selector.items())),
                      key=lambda p: p.metadata.creation_timestamp)
        assert pods, f"no pod of Job {job} is left"
        return "\n".join(self.pod_logs(p.metadata.name, container) for p in pods)

    def job_outcome(self, job: str) -> str | None:
        return job_outcome(self.json(self.batch.read_namespaced_job(job, NAMESPACE)))

    def rollout_problem(self, release: str) -> str | None:
        deployment = self.apps.read_namespaced_deployment(f"{release}-migrator", NAMESPACE)
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        replica_sets = self.apps.list_namespaced_replica_set(NAMESPACE, label_selector=selector).items
        return rollout_problem(self.json(deployment), [self.json(rs) for rs in replica_sets],
                               [self.json(p) for p in self.pods(selector)])

    def wait_for_rollout(self, release: str) -> list[Any]:
        """Poll until only the newest ReplicaSet's pods are left, all ready; returns them."""
        wait_until(lambda: self.rollout_problem(release), 300, f"the rollout of {release}")
        return self.pods(APP_PODS.format(release=release))

    def users_page(self, release: str) -> str:
        return str(self.core.connect_get_namespaced_service_proxy_with_path(
            f"{release}-migrator:http", NAMESPACE, "users"))

    def values_file(self, name: str, values: Mapping[str, Any]) -> Path:
        path = self.values_dir / f"{name}.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(dict(values)))
        return path

    def finished_pod_output(self, notes: str, name: str, args: list[str]) -> str:
        """Run the migrator with the release's settings (the NOTES command, detached, renamed NAME, running
        ARGS), wait until the pod ended, and return its log, which cannot be lost once it ended."""
        argv = detached_argv(notes_rollback_argv(notes, CONTEXT, "REV"), name, args)
        run(*argv, timeout=120)

        def ended() -> str | None:
            phase = self.core.read_namespaced_pod(name, NAMESPACE).status.phase
            return None if phase in ("Succeeded", "Failed") else f"phase {phase}"

        try:
            wait_until(ended, 180, f"pod {name}")
            pod = self.core.read_namespaced_pod(name, NAMESPACE)
            output = self.pod_logs(name, name)
            assert pod.status.phase == "Succeeded", f"{name} failed:\n{output[-3000:]}"
            return output
        finally:
            kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true")


def ensure_local_image(image: str, target: str) -> None:
    if run("docker", "image", "inspect", image, check=False).returncode != 0:
        env_var = {"migrator": "MIGRATOR_IMAGE", "app": "APP_IMAGE"}[target]
        subprocess.run(["bash", str(ROOT / "image" / "build.sh"), target], check=True, timeout=1800,
                       env={**os.environ, env_var: image})


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster | str:
    """The kind cluster with the images loaded and PostgreSQL running, or why there is none."""
    problem = cluster_problem()
    if problem:
        return problem
    from kubernetes import client, config

    config.load_kube_config(context=CONTEXT)
    ensure_local_image(MIGRATOR_IMAGE, "migrator")
    ensure_local_image(APP_IMAGE, "app")
    images = build_smoke_images(MIGRATOR_IMAGE, tmp_path_factory.mktemp("images"))
    load_images([*images.values(), APP_IMAGE], CLUSTER)
    run("kubectl", "--context", CONTEXT, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    run(str(ROOT / "tests" / "smoke" / "postgres-up.sh"), "--context", CONTEXT, "--namespace", NAMESPACE)
    values_dir = tmp_path_factory.mktemp("values")
    values_dir.chmod(0o700)
    return Cluster(core=client.CoreV1Api(), batch=client.BatchV1Api(), apps=client.AppsV1Api(),
                   api=client.ApiClient(), values_dir=values_dir, images=images)


@pytest.fixture
def cluster(kind_cluster: Cluster | str, request: pytest.FixtureRequest) -> Cluster:
    if isinstance(kind_cluster, str):
        pytest.skip(f"no Kubernetes cluster: {kind_cluster}. Only a real cluster proves "
                    f"{ONLY_A_CLUSTER[request.node.name]}; test_smoke_scenario_emulated.py runs this step's "
                    "migrator containers here")
    return kind_cluster


def postgres_password(cluster: Cluster) -> str:
    secret = cluster.core.read_namespaced_secret("postgres", NAMESPACE)
    return base64.b64decode(secret.data["password"]).decode()


def secrets(cluster: Cluster) -> set[str]:
    """The namespace's Secrets, except Helm's release records."""
    return {s.metadata.name for s in cluster.core.list_namespaced_secret(NAMESPACE).items
            if s.type != "helm.sh/release.v1"}


def assert_no_password(cluster: Cluster, *texts: str) -> None:
    password = postgres_password(cluster)
    for text in texts:
        assert password not in text


# --- hook mode: release `smoke` -------------------------------------------------------------------------

HOOK = hook_steps(base_revisions())


def hook_upgrade(cluster: Cluster, role: str, check: bool = True,
                 migrator: Mapping[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    values = hook_values(cluster.images[role], APP_IMAGE, secret_database(CLUSTER_URL.format("app")), migrator)
    proc = helm("upgrade", "--install", HOOK_RELEASE, CHART, "--values", str(cluster.values_file("smoke", values)),
                "--wait", "--timeout", HELM_TIMEOUT, check=check)
    if proc.returncode == 0:
        cluster.wait_for_rollout(HOOK_RELEASE)
    return proc


def migrate_log(cluster: Cluster) -> str:
    return cluster.job_logs("smoke-migrator-migrate", "migrate")


def test_install_runs_the_hook_jobs_and_seeds(cluster: Cluster) -> None:
    hook_upgrade(cluster, "base")
    assert cluster.job_outcome("smoke-migrator-migrate") == "Complete"
    assert cluster.job_outcome("smoke-migrator-seed") == "Complete"
    assert "== Migrated" in migrate_log(cluster)
    check(HOOK["install"], [migrate_log(cluster)])
    assert "== Seeded" in cluster.job_logs("smoke-migrator-seed", "seed")
    assert secrets(cluster) == {"postgres"}  # no copy of the password
    assert "User1" in cluster.users_page(HOOK_RELEASE)
    # The history table says who ran the migrations: the Job's pod, its namespace and the image.
    notes = helm("get", "notes", HOOK_RELEASE).stdout
    history = cluster.finished_pod_output(notes, "smoke-history", ["history", "--json", "--limit", "50"])
    assert "smoke-migrator-migrate-" in history and NAMESPACE in history and MIGRATOR_IMAGE in history, history
    assert_no_password(cluster, migrate_log(cluster), history)


def test_helm_test_logs_reads_the_passed_test_pod(cluster: Cluster) -> None:
    """The test pod has no hook-succeeded delete policy: Helm 3 would delete it before reading its log."""
    for _ in range(2):  # the second run replaces the first run's pod (before-hook-creation)
        proc = helm("test", HOOK_RELEASE, "--logs", "--timeout", HELM_TIMEOUT)
        assert "POD LOGS: smoke-migrator-test-schema" in proc.stdout, proc.stdout
    pod = cluster.core.read_namespaced_pod("smoke-migrator-test-schema", NAMESPACE)
    assert pod.status.phase == "Succeeded"


def test_upgrade_with_one_more_migration(cluster: Cluster) -> None:
    hook_upgrade(cluster, "extra")
    check(HOOK["upgrade-extra"], [migrate_log(cluster)])
    pods = cluster.wait_for_rollout(HOOK_RELEASE)
    assert len(pods) == 2
    assert {p.spec.init_containers[0].image for p in pods} == {cluster.images["extra"]}
    assert "User1" in cluster.users_page(HOOK_RELEASE)


def test_helm_rollback_starts_the_old_pods_on_the_newer_schema(cluster: Cluster) -> None:
    """`helm rollback` runs no migration: the database stays at the newer revision, and the old image's
    `wait --allow-newer` lets the old pods start instead of crash-looping."""
    helm("rollback", HOOK_RELEASE, "1", "--wait", "--timeout", HELM_TIMEOUT)
    pods = cluster.wait_for_rollout(HOOK_RELEASE)
    assert {p.spec.init_containers[0].image for p in pods} == {MIGRATOR_IMAGE}
    for pod in pods:
        assert init_container_restarts(cluster.json(pod)) == {"wait-for-schema": (0, 0)}
    check(HOOK["helm-rollback"], [])
    assert "User1" in cluster.users_page(HOOK_RELEASE)


def test_an_upgrade_that_keeps_the_old_image_passes_its_hook(cluster: Cluster) -> None:
    """After an app-only rollback, the next upgrade with the old image runs its pre-upgrade hook against the
    newer database: `migrate --allow-newer` and `seed --allow-newer` accept it and change nothing."""
    hook_upgrade(cluster, "base")
    assert cluster.job_outcome("smoke-migrator-migrate") == "Complete"
    assert cluster.job_outcome("smoke-migrator-seed") == "Complete"
    check(HOOK["upgrade-old-image"], [migrate_log(cluster)])


def test_rollback_with_the_command_from_notes(cluster: Cluster) -> None:
    hook_upgrade(cluster, "extra")  # a release whose image knows the revision to undo
    check(HOOK["upgrade-extra-again"], [migrate_log(cluster)])
    notes = helm("get", "notes", HOOK_RELEASE).stdout
    head = base_revisions()[-1]
    argv = notes_rollback_argv(notes, CONTEXT, head)
    assert f"--image={cluster.images['extra']}" in argv
    proc = run(*argv, timeout=600)  # the exit code is the container's; its attached output may be cut short
    assert_no_password(cluster, proc.stdout, proc.stderr)
    check(HOOK["notes-rollback"], [])
    wait_until(lambda: "left" if cluster.pods("run=smoke-migrator-rollback") else None, 60,
               "kubectl run --rm removing its pod")
    # The history table, read from a pod that has ended, records the rollback and who ran it.
    history = cluster.finished_pod_output(notes, "smoke-history", ["history", "--json", "--limit", "5"])
    assert "smoke-migrator-rollback" in history and EXTRA_REVISION in history, history


def test_a_failed_hook_shows_its_log_and_a_fixed_upgrade_recovers(cluster: Cluster) -> None:
    failed = hook_upgrade(cluster, "broken", check=False, migrator=HOOK_BROKEN_MIGRATOR)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    # helm.sh/hook-output-log-policy: hook-failed (Helm 3.18+): Helm printed the migrator's own error.
    assert "division by zero" in output, output[-3000:]
    assert_no_password(cluster, output)
    assert cluster.job_outcome("smoke-migrator-migrate") == "Failed"
    # One transaction per migration: the first one stays applied, the failed one left nothing.
    check(HOOK["upgrade-broken"], [migrate_log(cluster)])
    assert secrets(cluster) == {"postgres"}  # a failed hook phase left no copy of the password behind
    assert cluster.rollout_problem(HOOK_RELEASE) is None  # the app kept running the previous release
    assert "FAILED" in helm("status", HOOK_RELEASE).stdout.upper()

    hook_upgrade(cluster, "fixed")
    assert cluster.job_outcome("smoke-migrator-migrate") == "Complete"
    check(HOOK["upgrade-fixed"], [migrate_log(cluster)])
    pods = cluster.wait_for_rollout(HOOK_RELEASE)
    assert {p.spec.init_containers[0].image for p in pods} == {cluster.images["fixed"]}


# --- job mode: release `smoke-job` ----------------------------------------------------------------------

JOB = job_steps(base_revisions())


def job_release(cluster: Cluster, role: str, job: Mapping[str, Any] | None = None) -> None:
    values = job_values(cluster.images[role], APP_IMAGE, secret_database(CLUSTER_URL.format("smoke_job")), job)
    helm("upgrade", "--install", JOB_RELEASE, CHART, "--values", str(cluster.values_file("smoke-job", values)),
         "--wait", "--wait-for-jobs", "--timeout", HELM_TIMEOUT)


def the_job(cluster: Cluster, step: str) -> str:
    """The name of the release's one migrate Job, once the Job of an earlier spec is gone and it ran; checks
    the scenario's expectation of STEP."""
    def problem() -> str | None:
        jobs = cluster.jobs(MIGRATE_JOBS.format(release=JOB_RELEASE))
        live = [j for j in jobs if j.metadata.deletion_timestamp is None]
        if len(jobs) != 1 or len(live) != 1:
            return f"jobs: {[j.metadata.name for j in jobs]}"
        return None if job_outcome(cluster.json(live[0])) else "not finished"

    wait_until(problem, 120, "the release's migrate Job")
    [job] = cluster.jobs(MIGRATE_JOBS.format(release=JOB_RELEASE))
    assert job_outcome(cluster.json(job)) == "Complete"
    name = str(job.metadata.name)
    check(JOB[step], [cluster.job_logs(name, "migrate")], "smoke_job")
    return name


def test_job_mode_lifecycle(cluster: Cluster) -> None:
    psql("app", "CREATE DATABASE smoke_job")
    job_release(cluster, "base")
    first = the_job(cluster, "first")
    cluster.wait_for_rollout(JOB_RELEASE)

    job_release(cluster, "extra")
    second = the_job(cluster, "extra")
    assert second != first

    # podFailurePolicy is immutable: a changed one must come as a new Job, or the API server rejects the patch.
    job_release(cluster, "extra", JOB_POLICY)
    third = the_job(cluster, "policy")
    assert third not in (first, second)

    # helm rollback re-creates revision 1's Job: the old image meets the newer database and accepts it.
    helm("rollback", JOB_RELEASE, "1", "--wait", "--wait-for-jobs", "--timeout", HELM_TIMEOUT)
    assert the_job(cluster, "helm-rollback") == first
    pods = cluster.wait_for_rollout(JOB_RELEASE)
    assert {p.spec.init_containers[0].image for p in pods} == {MIGRATOR_IMAGE}

    # A new run id runs the Job again with otherwise unchanged values (how NOTES says to retry a failed Job).
    helm("upgrade", JOB_RELEASE, CHART, "--reuse-values", "--set-string", f"migrator.job.runId={JOB_RUN_ID}",
         "--wait", "--wait-for-jobs", "--timeout", HELM_TIMEOUT)
    assert the_job(cluster, "run-id") not in (first, second, third)


# --- initContainer mode: release `smoke-init` -----------------------------------------------------------

INIT = init_steps(base_revisions())


def init_release(cluster: Cluster, role: str) -> list[Any]:
    values = init_values(cluster.images[role], APP_IMAGE, secret_database(CLUSTER_URL.format("smoke_init")))
    helm("upgrade", "--install", INIT_RELEASE, CHART, "--values", str(cluster.values_file("smoke-init", values)),
         "--wait", "--timeout", HELM_TIMEOUT)
    return cluster.wait_for_rollout(INIT_RELEASE)


def migrate_logs(cluster: Cluster, pods: list[Any]) -> list[str]:
    return [cluster.pod_logs(p.metadata.name, "migrate") for p in pods]


def test_init_container_mode_applies_each_migration_once(cluster: Cluster) -> None:
    psql("app", "CREATE DATABASE smoke_init")
    pods = init_release(cluster, "base")
    assert len(pods) == 5
    for pod in pods:
        assert [c.name for c in pod.spec.init_containers] == ["migrate", "wait-for-schema"]
    check(INIT["first"], migrate_logs(cluster, pods), "smoke_init")  # every revision once across the 5 pods


def test_init_container_mode_helm_rollback(cluster: Cluster) -> None:
    """After `helm rollback`, the old pods' `migrate --allow-newer` init containers accept the newer database:
    each pod starts once, no init container restarts."""
    pods = init_release(cluster, "extra")
    check(INIT["extra"], migrate_logs(cluster, pods), "smoke_init")
    helm("rollback", INIT_RELEASE, "1", "--wait", "--timeout", HELM_TIMEOUT)
    pods = cluster.wait_for_rollout(INIT_RELEASE)
    assert len(pods) == 5
    for pod in pods:
        assert pod.spec.init_containers[0].image == MIGRATOR_IMAGE
        assert init_container_restarts(cluster.json(pod)) == {"migrate": (0, 0), "wait-for-schema": (0, 0)}
    check(INIT["helm-rollback"], migrate_logs(cluster, pods), "smoke_init")
