"""A release's lifecycle in each mode, emulated (lifecycle_emulation.py): Helm's actions with the chart rendered
by Helm's own engine, the Job controller, the Deployment controller and the kubelet running the real images
with Docker against a real PostgreSQL. Not a cluster test: no scheduler, Services, API server or image pulls
(tests/smoke runs the chart on kind).

For each mode (hook, job, initContainer), one release goes through:

1. install v1 (the example's two migrations), then `helm test`;
2. upgrade to v2 (one more migration);
3. an app pod deleted and replaced;
4. `helm rollback` to revision 1: v1's pods start (and restart) against v2's schema with --allow-newer, no
   down-migration runs, `helm test` passes (the history proves v2's schema descends from v1's head);
5. an upgrade to v3 whose migration fails: the hook or Job fails after its retries (or the init container
   crash-loops), the release fails, the v1 pods keep serving, nothing of the migration stays;
6. the fixed v3 upgrade;
7. a values change of the migrate Job: in job mode a new Job (changed spec), an unchanged Job (nothing runs)
   and a `helm rollback` that re-applies that finished Job (nothing runs); in the other modes a switch to job
   mode.

Asserted after each step: the Helm result, every pod ready or failing where it must, the migrator's exit codes,
the schema, and the migration history (`migrator_history`): each migration applied exactly once in the whole
lifecycle, by the pod and image that should have, the failed one recorded as failed. A smaller case shows that
`migrator.allowNewer: false` holds old pods back after a rollback, with the documented exit codes.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chart import kubectl_jsonpath
from tests.chart.chart_render import deep_merge, render, rollback_command, rollback_pod
from tests.chart.helm_rules import HELM3, HELM4, TIMEOUT, WaitOutcome
from tests.chart.job_status import PodOutcome, failure_action
from tests.chart.lifecycle_emulation import (
    ActionResult,
    ContainerRun,
    EmulatedCluster,
    HelmEmulation,
    JobRun,
    PodRun,
    immutable_change,
    surge_and_unavailable,
)
from tests.chart.pod_emulation import DB_SECRET, PodEmulation, existing_secrets, release_values
from tests.conftest import FIRST, HEAD, assert_no_secret, query
from tests.docker import docker, require_docker
from tests.postgres import SUPERUSER_PASSWORD

MODES = ["hook", "job", "initContainer"]
NAMESPACE = "apps"
V2 = "20300101000000"  # v2's migration: users.nickname
V3 = "20300102000000"  # v3's: the audit_log table (v3bad's fails after creating it)
TAGS = {"v1": "migrator-lifecycle:v1", "v2": "migrator-lifecycle:v2", "v3bad": "migrator-lifecycle:v3bad",
        "v3": "migrator-lifecycle:v3"}
AUDIT_LOG = "op.create_table('audit_log', sa.Column('id', sa.BigInteger, primary_key=True), sa.Column('note', sa.Text))"


def revision_file(revision: str, down: str, upgrade: list[str], downgrade: str = "pass") -> str:
    body = "\n".join(f"    {line}" for line in upgrade)
    return ('"""lifecycle emulation"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{body}\n\n\ndef downgrade():\n    {downgrade}\n")


V2_FILE = (f"{V2}_add_users_nickname.py", revision_file(
    V2, HEAD, ["op.add_column('users', sa.Column('nickname', sa.Text))"], "op.drop_column('users', 'nickname')"))
V3_BAD_FILE = (f"{V3}_add_audit_log.py", revision_file(V3, V2, [AUDIT_LOG, "op.execute('SELECT 1/0')"]))
V3_FILE = (f"{V3}_add_audit_log.py", revision_file(V3, V2, [AUDIT_LOG], "op.drop_table('audit_log')"))


def build_release_image(base: str, tag: str, files: list[tuple[str, str]], workdir: Path) -> str:
    """BASE plus FILES in /app/migrations/versions, byte-compiled as image/migrator/Dockerfile does."""
    workdir.mkdir()
    copies = ""
    for name, text in files:
        (workdir / name).write_text(text)
        copies += f"COPY {name} /app/migrations/versions/\n"
    (workdir / "Dockerfile").write_text(
        f"FROM {base}\nUSER 0:0\n{copies}"
        "RUN python -m compileall -q -f --invalidation-mode unchecked-hash /app/migrations\nUSER 10001:10001\n")
    docker("build", "--quiet", "--tag", tag, str(workdir), timeout=600, env={"DOCKER_BUILDKIT": "1"})
    return tag


@pytest.fixture(scope="module")
def images(migrator_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The four migrator images of the lifecycle (v1 is the image under test), removed afterwards."""
    require_docker()
    workdir = tmp_path_factory.mktemp("lifecycle-images")
    docker("tag", migrator_image, TAGS["v1"])
    try:
        build_release_image(migrator_image, TAGS["v2"], [V2_FILE], workdir / "v2")
        build_release_image(migrator_image, TAGS["v3bad"], [V2_FILE, V3_BAD_FILE], workdir / "v3bad")
        build_release_image(migrator_image, TAGS["v3"], [V2_FILE, V3_FILE], workdir / "v3")
        yield dict(TAGS)
    finally:
        docker("image", "rm", *TAGS.values(), check=False)


# --- the release under test -----------------------------------------------------------------------------

def db_secret(password: str) -> dict[str, Any]:
    """The Secret the release reads, made before it (hook mode's Jobs can read no chart-made Secret)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": DB_SECRET, "namespace": NAMESPACE},
            "type": "Opaque", "stringData": {"password": password}}


@dataclass
class Release:
    """One chart release on the emulated cluster, its database, and what each step took."""

    helm: HelmEmulation
    url: str
    app_image: str
    base: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, url: str, app_image: str, workdir: Path, base: dict[str, Any]) -> Release:
        cluster = EmulatedCluster(workdir, NAMESPACE, existing=(db_secret(SUPERUSER_PASSWORD),))
        helm = HelmEmulation(cluster, lambda values, upgrade, revision: render(values, upgrade=upgrade,
                                                                              revision=revision), wait=True)
        return cls(helm, url, app_image, base)

    @property
    def cluster(self) -> EmulatedCluster:
        return self.helm.cluster

    def values(self, image: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return release_values(image, self.app_image, self.url, SUPERUSER_PASSWORD,
                              deep_merge(self.base, extra or {}))

    def step(self, name: str) -> None:
        self.cluster.step = name
        self.timings[name] = time.monotonic()

    def done(self) -> None:
        name = self.cluster.step
        self.timings[name] = time.monotonic() - self.timings[name]

    def install(self, image: str, extra: dict[str, Any] | None = None) -> ActionResult:
        return self.helm.install(self.values(image, extra))

    def upgrade(self, image: str, extra: dict[str, Any] | None = None) -> ActionResult:
        return self.helm.upgrade(self.values(image, extra))

    # what ran in a step

    def pods(self, step: str | None = None) -> list[PodRun]:
        step = step or self.cluster.step
        return [p for p in self.cluster.pods if p.step == step]

    def runs(self, container: str, step: str | None = None) -> list[ContainerRun]:
        return [r for p in self.pods(step) for r in p.runs if r.container == container]

    def codes(self, container: str, step: str | None = None) -> list[int | None]:
        return [r.exit_code for r in self.runs(container, step)]

    def migrators(self, step: str | None = None) -> dict[str, str]:
        """Pod name -> migrator image, for the pods of STEP that ran `migrate`."""
        return {p.name: p.images["migrate"] for p in self.pods(step) if p.exit_codes("migrate")}

    def serving(self) -> Counter[str]:
        """The ready app pods, counted by their release's migrator image (the wait init container's)."""
        return Counter(p.images["wait-for-schema"] for p in self.cluster.ready_pods())

    def report(self) -> str:
        times = ", ".join(f"{name}: {seconds:.1f}s" for name, seconds in self.timings.items())
        runs = sum(len(p.runs) for p in self.cluster.pods)
        return f"step timings: {times}; {len(self.cluster.pods)} pods, {runs} container runs\n{self.cluster.log()}"

    def close(self) -> None:
        self.helm.close()
        for pod in self.cluster.pods:
            for run in pod.runs:
                assert_no_secret(run.output, run.termination_message)


@pytest.fixture
def release_factory(app_image: str, tcp_database_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Release] = []

    def make(base: dict[str, Any]) -> Release:
        made.append(Release.start(tcp_database_url, app_image, tmp_path, base))
        return made[-1]

    yield make
    for release in made:
        print(release.report())  # shown with the test's output when it fails
        release.close()


# --- the database ---------------------------------------------------------------------------------------

def versions(url: str) -> list[str]:
    return [str(row[0]) for row in query(url, "SELECT version_num FROM alembic_version")]


def history(url: str) -> list[dict[str, Any]]:
    rows = query(url, "SELECT revision, direction, outcome, pod, namespace, image FROM migrator_history ORDER BY id")
    keys = ("revision", "direction", "outcome", "pod", "namespace", "image")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def applied(url: str) -> Counter[str]:
    return Counter(r["revision"] for r in history(url) if r["direction"] == "up" and r["outcome"] == "applied")


def table_exists(url: str, table: str) -> bool:
    return query(url, "SELECT to_regclass(%s) IS NOT NULL", table) == [(True,)]


def column_exists(url: str, table: str, column: str) -> bool:
    return bool(query(url, "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                      table, column))


def assert_applied_by(url: str, revisions: list[str], ran: dict[str, str], image: str) -> None:
    """Each of REVISIONS was applied once, by one of the pods in RAN (pod -> image), running IMAGE."""
    for revision in revisions:
        rows = [r for r in history(url) if r["revision"] == revision and r["outcome"] == "applied"]
        assert len(rows) == 1, f"{revision} applied {len(rows)} times: {rows}"
        [row] = rows
        assert row["pod"] in ran and row["image"] == image == ran[row["pod"]], (row, ran)
        assert row["namespace"] == NAMESPACE, row


def assert_waited_then_ready(pods: list[PodRun]) -> None:
    """Each app pod's `wait` init container ended with exit 0, after any number of timeouts (exit 5, then
    restarted by the kubelet: in job mode the pods start with the Job and wait for it)."""
    for pod in pods:
        codes = pod.exit_codes("wait-for-schema")
        if codes:
            assert codes[-1] == 0 and set(codes[:-1]) <= {5}, pod.describe()


def reason_from_notes(notes: str, job: JobRun) -> list[str]:
    """The output of the notes' `kubectl get pods ... -o jsonpath=...` for JOB's pods, as their status
    holds the containers' termination messages (init containers and main containers apart)."""
    [argv] = [shlex.split(line) for line in notes.splitlines() if line.strip().startswith("kubectl get pods")]
    assert argv[argv.index("-l") + 1] == f"batch.kubernetes.io/job-name={job.name}"
    template = argv[argv.index("-o") + 1].removeprefix("jsonpath=")
    init = {c["name"] for c in job.spec["template"]["spec"].get("initContainers", [])}

    def statuses(pod: PodRun, wanted: bool) -> list[dict[str, Any]]:
        return [{"name": r.container, "state": {"terminated": {"exitCode": r.exit_code,
                                                                "message": r.termination_message}}}
                for r in pod.runs if (r.container in init) == wanted]

    pods = [{"metadata": {"name": p.name}, "status": {"phase": p.phase, "initContainerStatuses": statuses(p, True),
                                                       "containerStatuses": statuses(p, False)}} for p in job.pods]
    return kubectl_jsonpath.render(template, {"items": pods}).splitlines()


def one_hook_job(result: ActionResult) -> Any:
    [job] = result.hook_jobs()
    return job


# --- the lifecycle --------------------------------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_release_lifecycle(mode: str, images: dict[str, str], release_factory: Any) -> None:
    # Two replicas where each pod migrates (they race for the lock); one elsewhere, where pods only wait.
    replicas = 2 if mode == "initContainer" else 1
    release: Release = release_factory({"migrator": {"mode": mode, "test": {"enabled": True}},
                                        "app": {"replicaCount": replicas}})
    url = release.url

    # 1. install v1: the migrations run once (one init container migrates, the other finds nothing to do).
    release.step("install v1")
    result = release.install(images["v1"])
    assert result.ok, result.error
    assert release.codes("migrate") == [0] * (replicas if mode == "initContainer" else 1)
    if mode == "hook":
        assert one_hook_job(result).condition == "Complete" and result.jobs == []
    if mode == "job":
        assert [j.condition for j in result.jobs] == ["Complete"] and result.hooks == []
    assert release.serving() == {images["v1"]: replicas}
    assert_waited_then_ready(release.pods())
    assert versions(url) == [HEAD]
    assert_applied_by(url, [FIRST, HEAD], release.migrators(), images["v1"])
    assert len({r["pod"] for r in history(url)}) == 1, "one pod held the lock and applied both"
    [test_pod] = release.helm.test()
    assert test_pod.exit_codes("status") == [0], test_pod.describe()
    release.done()

    # 2. upgrade to v2: its migration runs once, then v2's pods replace v1's.
    release.step("upgrade v2")
    result = release.upgrade(images["v2"])
    assert result.ok, result.error
    assert release.codes("migrate") == [0] * (replicas if mode == "initContainer" else 1)
    assert release.serving() == {images["v2"]: replicas}
    assert result.rollout is not None and result.rollout.complete
    assert versions(url) == [V2] and column_exists(url, "users", "nickname")
    assert_applied_by(url, [V2], release.migrators(), images["v2"])
    release.done()

    # 3. an app pod is deleted: its replacement runs the init containers again, and nothing is migrated.
    release.step("pod restart")
    rows = len(history(url))
    replacement = release.helm.delete_pod(release.cluster.ready_pods()[0])
    assert replacement.ready, replacement.describe()
    assert replacement.exit_codes("wait-for-schema") == [0]
    assert replacement.exit_codes("migrate") == ([0] if mode == "initContainer" else [])
    assert release.serving() == {images["v2"]: replicas}
    assert len(history(url)) == rows
    release.done()

    # 4. helm rollback to revision 1: v1's manifest again, without any pre-upgrade hook and without a
    # down-migration. v1's pods (and in job mode v1's Job, which the upgrade had deleted) meet v2's schema and
    # accept it with --allow-newer: the history proves it descends from v1's head.
    release.step("rollback to v1")
    result = release.helm.rollback(1)
    assert result.ok, result.error
    assert result.hooks == [], "helm rollback runs pre-rollback hooks only, and the chart has none"
    if mode == "job":
        assert [j.condition for j in result.jobs] == ["Complete"], [j.describe() for j in result.jobs]
    expected = {"hook": 0, "job": 1, "initContainer": replicas}[mode]
    assert release.codes("migrate") == [0] * expected
    for run in release.runs("migrate"):
        assert "Accepted a newer database (--allow-newer)" in run.output, run.output[-2000:]
        assert "accepted newer revision" in run.termination_message
    assert release.serving() == {images["v1"]: replicas}
    assert versions(url) == [V2] and column_exists(url, "users", "nickname")
    assert len(history(url)) == rows
    [test_pod] = release.helm.test()  # status --check --allow-newer: v2's schema descends from v1's head
    assert test_pod.exit_codes("status") == [0], test_pod.describe()
    # The notes are revision 1's again (v1's image): they send the reader to the notes of the revision
    # rolled back from, whose command names v2's image (test_pod_emulation runs it against the database).
    notes = release.helm.notes(result.revision.number)
    assert notes == release.helm.notes(1) and f"--image={images['v1']}" in notes
    assert f"helm get notes rel --namespace {NAMESPACE} --revision FROM" in notes
    assert f"--image={images['v2']}" in release.helm.notes(2)
    restarted = release.helm.delete_pod(release.cluster.ready_pods()[0])
    assert restarted.ready and restarted.exit_codes("wait-for-schema") == [0], restarted.describe()
    assert release.serving() == {images["v1"]: replicas}
    release.done()

    # 5. an upgrade whose migration fails: nothing of it stays, it is recorded as failed, v1 keeps serving.
    release.step("failed upgrade v3bad")
    result = release.upgrade(images["v3bad"])
    assert not result.ok
    failing = release.runs("migrate")
    # Exit 1 (a failed migration) is FailJob: one pod, no retry, in both Job modes.
    if mode == "hook":
        job = one_hook_job(result)
        assert (job.condition, job.reason) == ("Failed", "PodFailurePolicy")
        assert [p.exit_codes("migrate") for p in job.pods] == [[1]]
        assert result.error.startswith("pre-upgrade hooks failed") and result.rollout is None
        # helm.sh/hook-output-log-policy: hook-failed: `helm upgrade` prints the failed pod's migrator log.
        assert len(result.printed) == 1 and "division by zero" in result.printed[0]
        assert ("Job", job.name) in release.cluster.objects, "the failed hook Job stays for kubectl logs"
    elif mode == "job":
        [job] = result.jobs
        assert (job.condition, job.reason, job.status.failed) == ("Failed", "PodFailurePolicy", 1)
        assert [p.exit_codes("migrate") for p in job.pods] == [[1]]
        [new_pod] = result.rollout.created if result.rollout else []
        assert not new_pod.ready and new_pod.exit_codes("wait-for-schema") == [5, 5, 5], new_pod.describe()
        # --wait ends only at --timeout: Helm 3 checks the Deployment first and stops there (a bare timeout);
        # Helm 4 names the failed Job, but waits for the Deployment, whose new pod waits for the schema.
        assert result.waits[HELM3] == WaitOutcome(TIMEOUT, at_timeout=True)
        assert result.waits[HELM4].at_timeout and f"Job/{NAMESPACE}/{job.name} not ready. status: Failed" \
            in result.waits[HELM4].error
        # What the notes print instead: the Job's name, and the command that reads the migrator's reason.
        reason = job.pods[0].last("migrate").termination_message.strip()  # one line, and its newline
        assert reason_from_notes(result.revision.rendered.notes, job) == [f"{job.pods[0].name} Failed: {reason}", ""]
        assert "division by zero" in job.pods[0].last("migrate").termination_message
    else:
        [new_pod] = result.rollout.created if result.rollout else []
        assert not new_pod.ready and new_pod.reason == "Init:CrashLoopBackOff", new_pod.describe()
        assert new_pod.exit_codes("migrate") == [1, 1, 1]
    assert all(run.exit_code == 1 for run in failing)
    assert f"{V3}" in failing[0].termination_message and "division by zero" in failing[0].termination_message
    assert release.serving() == {images["v1"]: replicas}
    assert versions(url) == [V2] and not table_exists(url, "audit_log")
    failed = [r for r in history(url) if r["outcome"] == "failed"]
    assert [(r["revision"], r["image"]) for r in failed] == [(V3, images["v3bad"])] * len(failing)
    assert {r["pod"] for r in failed} == set(release.migrators())
    assert applied(url)[V3] == 0
    release.done()

    # 6. the fixed upgrade: its migration runs once; the crash-looping pod of the failed one goes away.
    release.step("fixed upgrade v3")
    result = release.upgrade(images["v3"])
    assert result.ok, result.error
    assert release.codes("migrate") == [0] * (replicas if mode == "initContainer" else 1)
    assert release.serving() == {images["v3"]: replicas}
    assert all(p.ready for p in release.cluster.live_pods())
    assert versions(url) == [V3] and table_exists(url, "audit_log")
    assert_applied_by(url, [V3], release.migrators(), images["v3"])
    if mode == "job":
        # Helm deletes what the last *deployed* release's manifest (the rollback's) has and this one has not;
        # the failed Job came with the failed release, so it stays until someone deletes it.
        assert any(j.condition == "Failed" for j in release.cluster.jobs.values())
    release.done()

    # 7. a values change of the migrate Job.
    release.step("values change")
    rows = len(history(url))
    if mode == "job":
        before = set(release.cluster.jobs)
        result = release.upgrade(images["v3"], {"migrator": {"config": {"logLevel": "debug"}}})
        assert result.ok, result.error
        [job] = result.jobs
        assert job.name not in before and job.condition == "Complete"  # a changed spec: a new Job, which runs
        assert "Migrations already up" in job.pods[0].runs[-1].output
        result = release.upgrade(images["v3"], {"migrator": {"config": {"logLevel": "debug"}},
                                                "app": {"replicaCount": replicas + 1}})
        assert result.ok, result.error
        assert result.jobs == [] and job.name in release.cluster.jobs  # unchanged: patched, nothing runs
        assert release.serving() == {images["v3"]: replicas + 1}
        # helm rollback to the previous revision: the same Job, finished: patched, and nothing runs again.
        result = release.helm.rollback(result.revision.number - 1)
        assert result.ok, result.error
        assert result.jobs == [] and [j.name for j in release.cluster.jobs.values() if j.condition == "Complete"] \
            == [job.name]
        assert release.serving() == {images["v3"]: replicas}
    else:
        result = release.upgrade(images["v3"], {"migrator": {"mode": "job"}})
        assert result.ok, result.error
        assert result.hooks == []
        [job] = result.jobs
        assert job.condition == "Complete" and "Migrations already up" in job.pods[0].runs[-1].output
        assert release.serving() == {images["v3"]: replicas}
    assert len(history(url)) == rows
    release.done()

    # The whole lifecycle: every migration applied exactly once, none reverted, none left open.
    assert applied(url) == {FIRST: 1, HEAD: 1, V2: 1, V3: 1}
    assert Counter(r["outcome"] for r in history(url)) == {"applied": 4, "failed": len(failing)}
    assert {r["namespace"] for r in history(url)} == {NAMESPACE}


# --- the strict setting ---------------------------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_rollback_with_allow_newer_false_holds_old_pods_back(mode: str, images: dict[str, str],
                                                             release_factory: Any) -> None:
    """`migrator.allowNewer: false`: after `helm rollback`, v1's pods do not start on v2's schema: `wait`
    exits 5 (not at its head) and is restarted, `migrate` exits 2 (a newer database), which the plain Job's
    podFailurePolicy turns into an immediate failure; `helm test` fails (exit 5). The v2 pod keeps serving;
    nothing changes."""
    release: Release = release_factory({"migrator": {"mode": mode, "allowNewer": False, "wait": {"timeout": 2},
                                                     "test": {"enabled": True}},
                                        "app": {"replicaCount": 1}})
    url = release.url
    release.step("install v1")
    assert release.install(images["v1"]).ok
    release.done()
    release.step("upgrade v2")
    assert release.upgrade(images["v2"]).ok
    assert versions(url) == [V2]
    release.done()
    rows = history(url)

    release.step("rollback to v1")
    result = release.helm.rollback(1)
    assert not result.ok and result.rollout is not None and not result.rollout.complete
    [new_pod] = result.rollout.created
    assert not new_pod.ready and new_pod.reason == "Init:CrashLoopBackOff", new_pod.describe()
    if mode == "initContainer":
        assert new_pod.exit_codes("migrate") == [2, 2, 2] and new_pod.exit_codes("wait-for-schema") == []
        refused = new_pod.last("migrate")
    else:
        assert new_pod.exit_codes("wait-for-schema") == [5, 5, 5]
        assert "--allow-newer accepts a proven descendant" in new_pod.last("wait-for-schema").output
    if mode == "job":
        [job] = result.jobs
        assert (job.condition, job.reason) == ("Failed", "PodFailurePolicy")  # exit 2: no retry
        assert [p.exit_codes("migrate") for p in job.pods] == [[2]]
        refused = job.pods[0].last("migrate")
    if mode != "hook":
        assert "pass --allow-newer if your migrations are expand/contract" in refused.termination_message
    assert release.serving() == {images["v2"]: 1}
    assert versions(url) == [V2] and history(url) == rows
    [test_pod] = release.helm.test()  # the failed rollback's test pod: v1's head, strictly
    assert test_pod.exit_codes("status") == [5], test_pod.describe()
    release.done()


# --- the emulation itself (offline) ---------------------------------------------------------------------

def rendered_job(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    values = deep_merge({"migrator": {"mode": "job"}, "database": {"password": "pw"}}, extra or {})
    [job] = render(values).jobs()
    return job


def failed_pod(**codes: int) -> PodOutcome:
    return PodOutcome(exit_codes=codes)


def test_emulated_job_controller_applies_the_rendered_pod_failure_policy() -> None:
    policy = rendered_job()["spec"]["podFailurePolicy"]
    for code in (1, 2, 6):  # decided at once, whatever backoffLimit
        assert failure_action(policy, failed_pod(migrate=code)) == "FailJob"
    for code in (3, 4, 137, 143):  # counted against backoffLimit (0 by default)
        assert failure_action(policy, failed_pod(migrate=code)) is None
    seeded = rendered_job({"migrator": {"seed": {"enabled": True}}})["spec"]["podFailurePolicy"]
    assert failure_action(seeded, failed_pod(migrate=2)) == "FailJob"  # an init container's exit code counts
    scoped = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "seed", "operator": "NotIn",
                                                               "values": [1]}}]}
    assert failure_action(scoped, failed_pod(migrate=0, seed=1)) is None
    assert failure_action(scoped, failed_pod(migrate=0, seed=3)) == "FailJob"


def test_emulated_api_server_refuses_a_changed_job_under_its_old_name() -> None:
    """What the chart's hashed Job name prevents: were a changed Job applied under the old name, the emulated
    API server refuses it as the real one does, and the release fails."""
    job = rendered_job()
    changed = rendered_job({"migrator": {"config": {"logLevel": "debug"}}})
    assert changed["metadata"]["name"] != job["metadata"]["name"]
    assert immutable_change(job, job) == ""
    changed["metadata"]["name"] = job["metadata"]["name"]
    assert "spec.template: field is immutable" in immutable_change(job, changed)
    policy = rendered_job({"migrator": {"job": {"nonRetryableExitCodes": [2]}}})
    policy["spec"]["template"] = job["spec"]["template"]
    assert "spec.podFailurePolicy: field is immutable" in immutable_change(job, policy)


@pytest.mark.parametrize(("replicas", "expected"), [(1, (1, 0)), (2, (1, 0)), (4, (1, 1)), (10, (3, 2))])
def test_emulated_rolling_update_bounds(replicas: int, expected: tuple[int, int]) -> None:
    """The Deployment's default RollingUpdate (25%/25%): maxSurge rounds up, maxUnavailable down."""
    deployment = render({"app": {"replicaCount": replicas}}).deployment()
    assert "strategy" not in deployment["spec"]  # the chart keeps Kubernetes' default
    assert surge_and_unavailable(deployment, replicas) == expected


# --- the schema rolled back after `helm rollback` (issue 17, item 4) ------------------------------------

@pytest.mark.docker
@pytest.mark.slow
def test_after_helm_rollback_the_notes_lead_to_a_rollback_that_works(images: dict[str, str], app_image: str,
                                                                     tcp_database_url: str, tmp_path: Path) -> None:
    """Revision 1 installs v1, revision 2 upgrades to v2 (the database at V2), revision 3 is `helm rollback 1`,
    which stores revision 1's notes (rollback.go; the lifecycle above checks it). Those notes' own command runs
    v1's image, which refuses the newer database; they name the command that works, in the notes of the
    revision rolled back from, and that command rolls the real database back with v2's image."""
    def rendered(image: str, revision: int) -> Any:
        values = release_values(image, app_image, tcp_database_url, SUPERUSER_PASSWORD)
        return render(values, upgrade=revision > 1, revision=revision)

    secrets = existing_secrets(SUPERUSER_PASSWORD)
    first, second = rendered(images["v1"], 1), rendered(images["v2"], 2)
    migrate = PodEmulation(second, tmp_path, secrets).run(second.jobs()[0], "migrate")
    assert migrate.returncode == 0, migrate.output[-2000:]
    assert versions(tcp_database_url) == [V2]
    notes = {1: first.notes, 2: second.notes, 3: first.notes}
    after_rollback = notes[3]

    own = rollback_pod(rollback_command(after_rollback), HEAD)
    refused = PodEmulation(first, tmp_path, secrets).run(own, own["spec"]["containers"][0]["name"])
    assert refused.returncode == 2 and "which these migrations do not have" in refused.output, refused.output[-2000:]
    assert versions(tcp_database_url) == [V2]

    [pointer] = [shlex.split(line) for line in after_rollback.splitlines() if line.strip().startswith("helm get notes")]
    assert pointer == ["helm", "get", "notes", "rel", "--namespace", NAMESPACE, "--revision", "FROM"]
    rolled_back_from = 2  # `helm history`: the revision before the rollback's
    newer = rollback_pod(rollback_command(notes[rolled_back_from]), HEAD)
    assert newer["spec"]["containers"][0]["image"] == images["v2"]
    done = PodEmulation(second, tmp_path, secrets).run(newer, newer["spec"]["containers"][0]["name"])
    assert done.returncode == 0, done.output[-2000:]
    assert_no_secret(done.output, done.termination_message, refused.output)
    assert versions(tcp_database_url) == [HEAD] and not column_exists(tcp_database_url, "users", "nickname")
    assert [(r["revision"], r["direction"], r["image"]) for r in history(tcp_database_url)][-1] == (
        V2, "down", images["v2"])


# --- the database made by the same release (issue 17, item 11) ------------------------------------------

OPERATOR_SECRET = "myapp-db-app"  # what CloudNativePG makes for the Cluster of chart/README.md's recipe


def database_operator(url: str, delay: float) -> Any:
    """A database operator: DELAY seconds after a Cluster is created, the Secret with the app's URI."""
    def react(cluster: EmulatedCluster, obj: dict[str, Any]) -> None:
        if obj["kind"] == "Cluster":
            secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": OPERATOR_SECRET},
                      "stringData": {"uri": url}}
            cluster.create_later(secret, delay)
    return react


def install_with_its_database(mode: str, image: str, release_factory: Any) -> tuple[Release, ActionResult]:
    """chart/README.md's recipe in MODE: the release's extraDeploy makes a Cluster, whose operator makes the
    Secret the migrator reads 3 s later."""
    values = {"migrator": {"mode": mode, "job": {"activeDeadlineSeconds": 120}},
              "database": {"url": "", "existingSecret": {"name": OPERATOR_SECRET, "urlKey": "uri", "passwordKey": ""}},
              "extraDeploy": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                               "metadata": {"name": "myapp-db"}, "spec": {"instances": 1}}],
              "app": {"replicaCount": 1}}
    release: Release = release_factory(values)
    release.cluster.reactions.append(database_operator(release.url, delay=3))
    release.step("install")
    result = release.install(image)
    release.done()
    return release, result


@pytest.mark.docker
@pytest.mark.slow
def test_job_mode_migrates_a_database_made_by_the_same_release(images: dict[str, str],
                                                               release_factory: Any) -> None:
    """The Job and the app pod wait for the operator's Secret (the kubelet retries it), then migrate and serve."""
    release, result = install_with_its_database("job", images["v1"], release_factory)
    assert result.ok, result.error
    [job] = result.jobs
    assert job.condition == "Complete" and versions(release.url) == [HEAD]
    assert release.serving() == {images["v1"]: 1}


@pytest.mark.docker
@pytest.mark.slow
def test_hook_mode_cannot_migrate_a_database_made_by_the_same_release(images: dict[str, str],
                                                                      release_factory: Any) -> None:
    """The pre-install Job runs before the Cluster exists, so its Secret never comes during the hook phase:
    the Job's pod never starts, its deadline fails it, and the install fails, as chart/README.md says."""
    release, result = install_with_its_database("hook", images["v1"], release_factory)
    [job] = result.hook_jobs()
    assert (job.condition, job.reason) == ("Failed", "DeadlineExceeded")
    assert job.pods[0].reason == f"cannot start: Secret/{OPERATOR_SECRET} not found"
    assert result.error.startswith("pre-install hooks failed") and not table_exists(release.url, "alembic_version")
