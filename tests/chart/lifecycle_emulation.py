"""A release lifecycle, emulated: Helm's actions on the chart, and what the Job controller, the Deployment
controller and the kubelet would run for each release, with the real images in Docker against a real
PostgreSQL. An emulation of those three, not a cluster test (tests/smoke runs the chart on kind).

What is emulated, from the manifests that Helm's own engine renders (chart_render, pod_emulation):

- Helm (pkg/action install.go, upgrade.go, rollback.go, hooks.go): install runs the pre-install hooks, applies
  the manifest, runs the post-install hooks; upgrade the same with pre-/post-upgrade, applying the difference
  between the last deployed release's manifest and the new one (create, patch, delete); rollback re-applies
  an earlier revision's stored manifest after its pre-rollback hooks (it runs no pre-upgrade hook). Hooks run
  in Helm's order (weight, kind, name), with the `before-hook-creation`, `hook-succeeded` and `hook-failed`
  delete policies and the output log policy (which hook logs Helm prints) of Helm 3.18's hooks.go; a failed
  hook fails the release before anything is applied. With `wait` (`--wait --wait-for-jobs`) a rollout that
  does not complete, or a failed Job, fails the release (its objects stay applied). `helm test` runs the
  `test` hooks of the last release (release_testing.go).
- The API server: a pod whose Secret or ServiceAccount does not exist does not start; a patch that changes an
  existing Job's pod template or podFailurePolicy is refused (`field is immutable`), which fails the release.
- The Job controller: one pod at a time, `restartPolicy: Never`, a new pod after each failure until
  `backoffLimit` failures are exceeded (BackoffLimitExceeded), `podFailurePolicy` rules in order (FailJob on
  exit codes fails the Job at once), `activeDeadlineSeconds` (the running container is stopped with SIGTERM
  and the Job fails with DeadlineExceeded). Its back-off delays between pods are not waited. An Indexed Job
  (`completionMode: Indexed` with `backoffLimitPerIndex`; job_status.indexed_job_status) runs up to
  `parallelism` pods at once, each for the lowest index not running, completed or failed, named
  JOB-INDEX-XXXXX, with the index as a label and an annotation, JOB_COMPLETION_INDEX in every container (from
  the label, as with PodIndexLabel, on by default since 1.28) and its index's failure count; a failed pod's
  index gets a new pod (only once the old one ended: podReplacementPolicy Failed, the only value a
  podFailurePolicy allows) until the index fails; when the Job fails, its running pods are deleted (SIGTERM).
- The Deployment controller: a ReplicaSet per pod template, pods named DEPLOYMENT-HASH-XXXXX, a rolling update
  with maxSurge/maxUnavailable (25%/25% by default): new pods up to the surge, unhealthy old pods removed
  first, ready old pods removed only while enough pods stay ready; a rollout whose new pods never become
  ready stops there and the old pods keep serving. A deleted pod is replaced by its ReplicaSet.
- The kubelet (pod_emulation.PodEmulation): init containers in order, each to exit 0 before the next; in a
  pod with `restartPolicy: Always` a failed init container (or an app container that exits) is restarted, at
  most INIT_ATTEMPTS runs in all, then the pod counts as crash-looping and never becomes ready (the back-off
  delays are not waited); with `Never` the pod fails. Containers run with the rendered securityContext, env
  (fieldRefs: the emulated pod's name and namespace), volumes, memory limit and termination log. An app
  container is ready when its readinessProbe's httpGet answers 200 (polled every PROBE_INTERVAL, not every
  periodSeconds). Pods of a ReplicaSet and a Job's pod run concurrently, as on a cluster.

Not emulated: the scheduler and nodes, Services and Endpoints (nothing routes traffic), the pod network (pods
share the host's network, so each app pod gets its own port: PORT and the containerPort are replaced, the
only change made to a rendered spec), a real API server (admission, RBAC, NetworkPolicy, quotas, owner
references, garbage collection timing), image pulls (pullPolicy Never: the images are local), CPU limits,
liveness probes, evictions (no DisruptionTarget condition ever arises), and real time: back-off delays and
Helm's --timeout are not waited; a crash loop is cut after INIT_ATTEMPTS runs.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chart.chart_render import (
    INSTALL_ORDER,
    Rendered,
    delete_policies,
    hook_events,
    hook_order,
    pod_spec,
    referenced,
)
from tests.chart.helm_rules import (
    HELM3,
    HELM4,
    ResourceState,
    WaitOutcome,
    deleted_when_phase_fails,
    deleted_when_phase_succeeds,
    hook_failed,
    job_state,
    wait,
)
from tests.chart.job_status import FAILED, JobStatus, PodOutcome, failure_action, indexed_job_status, job_status
from tests.chart.pod_emulation import TERMINATION_LOG, PodEmulation
from tests.docker import Container, RunOptions, client_env, docker, require_docker, start_container
from tests.postgres import free_port

INIT_ATTEMPTS = 3  # runs of a failing container in a restartPolicy Always pod before it counts as crash-looping
READY_TIMEOUT = 30.0  # seconds for a started app container's readiness probe to pass
PROBE_INTERVAL = 0.3
RUN_BOUND = 180.0  # seconds any container without a deadline may run (a hang is a finding, not a wait)
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod spec sets none
SAFE = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes
ALWAYS = "Always"
NEVER = "Never"


# --- what happened --------------------------------------------------------------------------------------

@dataclass
class ContainerRun:
    """One run of one container: its exit code (None while an app container runs), log and termination log."""

    container: str
    image: str
    exit_code: int | None
    output: str = ""
    termination_message: str = ""
    stopped: str = ""  # why the emulation stopped it (DeadlineExceeded, the run bound)


@dataclass
class PodRun:
    """One emulated pod: what ran in it and how it ended (or stands)."""

    name: str
    owner: str  # Job/NAME, ReplicaSet/NAME or Pod/NAME
    step: str  # the lifecycle step that created it
    runs: list[ContainerRun] = field(default_factory=list)
    phase: str = "Pending"  # Pending, Running, Succeeded, Failed
    ready: bool = False
    reason: str = ""  # CrashLoopBackOff, DeadlineExceeded, a missing Secret, ...
    app: Container | None = None
    port: int | None = None
    images: dict[str, str] = field(default_factory=dict)  # container -> image

    def exit_codes(self, container: str) -> list[int | None]:
        return [r.exit_code for r in self.runs if r.container == container]

    def last(self, container: str) -> ContainerRun:
        return [r for r in self.runs if r.container == container][-1]

    def describe(self) -> str:
        runs = ", ".join(f"{r.container}={r.exit_code}" + (f"({r.stopped})" if r.stopped else "") for r in self.runs)
        state = "ready" if self.ready else self.phase + (f"/{self.reason}" if self.reason else "")
        return f"{self.name} [{state}] {runs}"


@dataclass
class JobRun:
    """One Job as the Job controller ran it."""

    name: str
    spec: dict[str, Any]
    hook: bool
    step: str
    pods: list[PodRun] = field(default_factory=list)
    status: JobStatus = field(default_factory=JobStatus)

    @property
    def condition(self) -> str:  # Complete or Failed
        return self.status.condition

    @property
    def reason(self) -> str:  # BackoffLimitExceeded, PodFailurePolicy, DeadlineExceeded
        return self.status.reason

    def describe(self) -> str:
        pods = "; ".join(p.describe() for p in self.pods)
        return f"Job/{self.name} {self.condition or 'Running'} {self.reason} failed={self.status.failed} <{pods}>"


@dataclass
class ReplicaSet:
    name: str
    template: dict[str, Any]
    pods: list[PodRun] = field(default_factory=list)


@dataclass
class Rollout:
    """What the Deployment controller did for one applied Deployment."""

    complete: bool
    created: list[PodRun] = field(default_factory=list)
    removed: list[PodRun] = field(default_factory=list)


@dataclass
class Revision:
    """One release revision as Helm stores it."""

    number: int
    action: str  # install, upgrade, rollback
    rendered: Rendered = field(repr=False)
    status: str = "pending"  # deployed, failed, superseded
    description: str = ""


@dataclass
class ActionResult:
    """What one Helm action did."""

    revision: Revision
    hooks: list[JobRun | PodRun] = field(default_factory=list)
    jobs: list[JobRun] = field(default_factory=list)  # ordinary Jobs the action created
    rollout: Rollout | None = None
    error: str = ""
    printed: list[str] = field(default_factory=list)  # hook logs Helm prints (helm.sh/hook-output-log-policy)
    waits: dict[str, WaitOutcome] = field(default_factory=dict)  # Helm version -> how its --wait ended

    @property
    def ok(self) -> bool:
        return not self.error

    def hook_jobs(self) -> list[JobRun]:
        return [h for h in self.hooks if isinstance(h, JobRun)]


# --- the cluster's state --------------------------------------------------------------------------------

def kind_rank(obj: dict[str, Any]) -> int:
    return INSTALL_ORDER.index(obj["kind"]) if obj["kind"] in INSTALL_ORDER else len(INSTALL_ORDER)


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def template_hash(template: dict[str, Any]) -> str:
    """A 10-character hash of a pod template in Kubernetes' safe alphabet (not the controller's own FNV hash)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(SAFE[b % len(SAFE)] for b in digest[:10])


class EmulatedCluster:
    """The objects that exist, the Jobs and ReplicaSets with their pods, and a log of events."""

    def __init__(self, workdir: Path, namespace: str, seed: int = 0,
                 existing: tuple[dict[str, Any], ...] = ()) -> None:
        self.workdir = workdir
        self.namespace = namespace
        # Every namespace has the `default` ServiceAccount; EXISTING were made before the release.
        default = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {key_of(o): o for o in (default, *existing)}
        self.coming: set[tuple[str, str]] = set()  # objects an operator will create (see create_later)
        self.reactions: list[Callable[[EmulatedCluster, dict[str, Any]], None]] = []
        self.jobs: dict[str, JobRun] = {}
        self.replica_sets: dict[str, ReplicaSet] = {}
        self.pods: list[PodRun] = []  # every pod ever made, in order
        self.events: list[str] = []
        self.step = ""
        self._rng = random.Random(seed)
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def event(self, text: str) -> None:
        with self._lock:
            self.events.append(f"{time.monotonic() - self._started:6.1f}s [{self.step}] {text}")

    def suffix(self) -> str:
        with self._lock:
            return "".join(self._rng.choice(SAFE) for _ in range(5))

    def add_pod(self, pod: PodRun) -> None:
        with self._lock:
            self.pods.append(pod)

    def create(self, obj: dict[str, Any]) -> None:
        self.objects[key_of(obj)] = obj
        self.coming.discard(key_of(obj))
        self.event(f"created {obj['kind']}/{obj['metadata']['name']}")
        for react in self.reactions:  # an operator acting on what was created (a database's Secret)
            react(self, obj)

    def create_later(self, obj: dict[str, Any], delay: float) -> None:
        """An operator creates OBJ DELAY seconds from now, in the background."""
        self.coming.add(key_of(obj))
        timer = threading.Timer(delay, self.create, args=(obj,))
        timer.daemon = True
        timer.start()

    def delete(self, key: tuple[str, str]) -> None:
        if self.objects.pop(key, None) is not None:
            self.event(f"deleted {key[0]}/{key[1]}")
        if key[0] == "Job":
            self.jobs.pop(key[1], None)  # its pods ended already; they go with it

    def secret_data(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for (kind, name), obj in self.objects.items():
            if kind == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
                out[name] = {**data, **(obj.get("stringData") or {})}
        return out

    def missing(self, spec: dict[str, Any]) -> list[str]:
        """What a pod spec references that does not exist (the pod cannot start)."""
        return sorted(f"{kind}/{name}" for kind, name in referenced(spec) if (kind, name) not in self.objects)

    def live_pods(self) -> list[PodRun]:
        return [p for rs in self.replica_sets.values() for p in rs.pods]

    def ready_pods(self) -> list[PodRun]:
        return [p for p in self.live_pods() if p.ready]

    def log(self) -> str:
        return "\n".join(self.events)


# --- the kubelet ----------------------------------------------------------------------------------------

def memory_flags(container: dict[str, Any]) -> list[str]:
    """The container's memory limit, as the kubelet sets it (CPU limits are not emulated)."""
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if not limit:
        return []
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if str(limit).endswith(suffix):
            return ["--memory", str(limit)[: -len(suffix)] + unit]
    return ["--memory", str(limit)]


def probe_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


class Kubelet:
    """Runs one pod's containers with Docker as the kubelet would (see the module's docstring)."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self.cluster = cluster
        self._terminating: list[threading.Thread] = []

    def run_pod(self, pod: dict[str, Any], owner: str, deadline: float | None = None) -> PodRun:
        spec = pod["spec"]
        record = PodRun(name=pod["metadata"]["name"], owner=owner, step=self.cluster.step,
                        images={c["name"]: c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]})
        self.cluster.add_pod(record)
        missing = self.wait_for_references(spec, deadline)
        if missing:  # the API server refuses the pod (a ServiceAccount) or the kubelet cannot start it (a Secret)
            record.reason = f"cannot start: {', '.join(missing)} not found"
            self.cluster.event(f"pod {record.name}: {record.reason}")
            return record
        emulation = PodEmulation(Rendered(files={}, values={}), self.cluster.workdir, self.cluster.secret_data())
        restart = spec.get("restartPolicy", ALWAYS)
        for container in spec.get("initContainers", []):
            if not self._init_container(emulation, pod, container, restart, deadline, record):
                return record
        if restart == NEVER:
            return self._run_main_to_completion(emulation, pod, deadline, record)
        self._start_app(emulation, pod, record)
        return record

    def wait_for_references(self, spec: dict[str, Any], deadline: float | None) -> list[str]:
        """What the pod spec references and does not exist, once the objects an operator is about to create
        (the cluster's `coming`) exist or DEADLINE passed: the kubelet retries a missing Secret, so such a pod
        starts late. Objects nothing will create are reported at once (waiting for them would only wait out
        the deadline)."""
        bound = time.monotonic() + RUN_BOUND if deadline is None else deadline
        while True:
            missing = self.cluster.missing(spec)
            coming = {f"{kind}/{name}" for kind, name in self.cluster.coming}
            if not missing or not set(missing) <= coming or time.monotonic() >= bound:
                return missing
            time.sleep(PROBE_INTERVAL)

    def _init_container(self, emulation: PodEmulation, pod: dict[str, Any], container: dict[str, Any],
                        restart: str, deadline: float | None, record: PodRun) -> bool:
        attempts = 1 if restart == NEVER else INIT_ATTEMPTS
        for _ in range(attempts):
            run = self.run_to_completion(emulation, pod, container, deadline)
            record.runs.append(run)
            if run.exit_code == 0:
                return True
            if run.stopped:
                break
        record.phase = "Failed" if restart == NEVER else "Pending"
        record.reason = record.runs[-1].stopped or ("Init:Error" if restart == NEVER else "Init:CrashLoopBackOff")
        self.cluster.event(f"pod {record.describe()}")
        return False

    def _run_main_to_completion(self, emulation: PodEmulation, pod: dict[str, Any], deadline: float | None,
                                record: PodRun) -> PodRun:
        for container in pod["spec"]["containers"]:
            run = self.run_to_completion(emulation, pod, container, deadline)
            record.runs.append(run)
        failed = [r for r in record.runs if r.exit_code != 0]
        record.phase = "Failed" if failed else "Succeeded"
        record.reason = next((r.stopped for r in failed if r.stopped), "Error" if failed else "Completed")
        self.cluster.event(f"pod {record.describe()}")
        return record

    def run_to_completion(self, emulation: PodEmulation, pod: dict[str, Any], container: dict[str, Any],
                          deadline: float | None) -> ContainerRun:
        """Run CONTAINER of POD until it exits, or stop it (SIGTERM, then the grace period) at DEADLINE."""
        assert "command" not in container, "the chart relies on the images' ENTRYPOINT"
        options = emulation.docker_options(pod, container)
        log = emulation.termination_log(pod, container)
        options["volumes"] = [*options["volumes"], f"{log}:{TERMINATION_LOG}"]
        options["extra"] = [*options["extra"], *memory_flags(container)]
        name = f"lifecycle-{pod['metadata']['name']}-{container['name']}-{uuid.uuid4().hex[:6]}"
        opts = RunOptions(**options, name=name)
        # One attached `docker run --rm`: its exit code is the container's, its output the container's log.
        proc = subprocess.Popen([require_docker(), "run", "--rm", *opts.flags(), container["image"],
                                 *container.get("args", [])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=client_env(opts.env))
        stopped = ""
        bound = RUN_BOUND if deadline is None else max(deadline - time.monotonic(), 0.5)
        try:
            output, _ = proc.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            stopped = "DeadlineExceeded" if deadline is not None else f"still running after {RUN_BOUND:g}s"
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE))
            docker("stop", "--time", str(grace), name, check=False, timeout=grace + 30)
            output, _ = proc.communicate(timeout=60)
        return ContainerRun(container["name"], container["image"], proc.returncode, output, log.read_text(),
                            stopped)

    def _start_app(self, emulation: PodEmulation, pod: dict[str, Any], record: PodRun) -> None:
        """Start the app container (the pod's only one) and wait for its readiness probe; restart it when it
        exits, at most INIT_ATTEMPTS runs."""
        [container] = pod["spec"]["containers"]
        probe = container["readinessProbe"]["httpGet"]
        url = f"http://127.0.0.1:{probe_port(container, probe['port'])}{probe['path']}"
        options = emulation.docker_options(pod, container)
        options["extra"] = [*options["extra"], *memory_flags(container)]
        for _ in range(INIT_ATTEMPTS):
            name = f"lifecycle-{record.name}-{container['name']}-{uuid.uuid4().hex[:6]}"
            app = start_container(container["image"], container.get("args", []), name=name, **options)
            record.app, record.phase = app, "Running"
            started = time.monotonic()
            while time.monotonic() - started < READY_TIMEOUT and app.running():
                if answers(url):
                    record.ready = True
                    record.runs.append(ContainerRun(container["name"], container["image"], None))
                    self.cluster.event(f"pod {record.describe()}")
                    return
                time.sleep(PROBE_INTERVAL)
            if app.running():  # a failing readiness probe keeps the pod out of service, it restarts nothing
                record.runs.append(ContainerRun(container["name"], container["image"], None, app.logs()))
                record.reason = "NotReady"
                self.cluster.event(f"pod {record.describe()}")
                return
            record.runs.append(ContainerRun(container["name"], container["image"], app.exit_code(), app.logs()))
            app.remove()
            record.app = None
        record.reason = "CrashLoopBackOff"
        self.cluster.event(f"pod {record.describe()}")

    def delete_job_pod(self, name: str, grace: int = DEFAULT_GRACE) -> None:
        """The Job controller deletes a running Job pod (the Job failed): its running container gets SIGTERM,
        and the kill after the grace period; its run then ends as any container's."""
        self.cluster.event(f"deleted pod {name}")
        listed = docker("ps", "--quiet", "--filter", f"name=^lifecycle-{name}-", check=False, timeout=30)
        for container in listed.stdout.split():
            docker("stop", "--time", str(grace), container, check=False, timeout=grace + 30)

    def stop(self, record: PodRun, grace: int = DEFAULT_GRACE) -> None:
        """Delete a pod: it leaves service at once; its app container gets SIGTERM and the grace period in the
        background, as a terminating pod does (the controllers do not wait for it)."""
        app, record.app = record.app, None
        record.ready, record.phase = False, "Terminating"
        self.cluster.event(f"deleted pod {record.name}")
        if app is not None:
            def terminate() -> None:
                app.stop(grace=grace, timeout=grace + 30)
                app.remove()

            thread = threading.Thread(target=terminate, name=f"terminate-{record.name}")
            thread.start()
            self._terminating.append(thread)

    def close(self) -> None:
        """Wait for terminating pods, and remove every app container still running."""
        for thread in self._terminating:
            thread.join(timeout=DEFAULT_GRACE + 60)
        for pod in self.cluster.pods:
            if pod.app is not None:
                pod.app.remove()
                pod.app = None


def pod_from_template(cluster: EmulatedCluster, owner: dict[str, Any], name: str,
                      labels: dict[str, str]) -> dict[str, Any]:
    """The Pod a controller makes from OWNER's template: NAME, the template's labels plus LABELS."""
    template = owner["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": owner["metadata"].get("namespace", cluster.namespace),
                         "labels": {**template["metadata"].get("labels", {}), **labels}},
            "spec": copy.deepcopy(template["spec"])}


def own_port(pod: dict[str, Any]) -> int:
    """Give the pod's app container a port of its own (no pod network): PORT and containerPort."""
    port = free_port()
    for container in pod["spec"]["containers"]:
        for declared in container.get("ports", []):
            declared["containerPort"] = port
        for var in container.get("env", []):
            if var["name"] == "PORT":
                var["value"] = str(port)
    return port


# --- the Job controller ---------------------------------------------------------------------------------

def pod_outcome(run: PodRun, deleted: bool = False) -> PodOutcome:
    """What the Job controller sees of an ended pod: its containers' last exit codes, or that the deadline
    found it running, or pending (a pod that never started waits for its Secret until the deadline); DELETED:
    the controller deleted it because the Job had failed."""
    codes = {r.container: r.exit_code for r in run.runs if r.exit_code is not None}
    deadline = run.phase == "Pending" or any(r.stopped == "DeadlineExceeded" for r in run.runs)
    return PodOutcome(exit_codes=codes, deadline=deadline, deleted=deleted)


INDEX_KEY = "batch.kubernetes.io/job-completion-index"  # the label and annotation of an Indexed Job's pod
FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"


def indexed_pod(cluster: EmulatedCluster, job: dict[str, Any], index: int, failures: int) -> dict[str, Any]:
    """The pod the Job controller makes for INDEX of an Indexed Job (indexed_job_utils.go): JOB-INDEX-XXXXX, the
    index as label and annotation, JOB_COMPLETION_INDEX in every container from that label, and how many
    counted failures the index had before it."""
    name = job["metadata"]["name"]
    pod = pod_from_template(cluster, job, f"{name}-{index}-{cluster.suffix()}",
                            {"batch.kubernetes.io/job-name": name, "job-name": name, INDEX_KEY: str(index)})
    pod["metadata"]["annotations"] = {**job["spec"]["template"]["metadata"].get("annotations", {}),
                                      INDEX_KEY: str(index), FAILURE_COUNT_KEY: str(failures)}
    spec = pod["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        env = container.setdefault("env", [])
        if not any(var["name"] == "JOB_COMPLETION_INDEX" for var in env):
            env.append({"name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{INDEX_KEY}']"}}})
    return pod


class JobController:
    """Runs a Job's pods one at a time under its restart and failure policy (see the module's docstring)."""

    def __init__(self, cluster: EmulatedCluster, kubelet: Kubelet) -> None:
        self.cluster = cluster
        self.kubelet = kubelet

    def run(self, job: dict[str, Any], hook: bool) -> JobRun:
        name, spec = job["metadata"]["name"], job["spec"]
        record = JobRun(name=name, spec=spec, hook=hook, step=self.cluster.step)
        self.cluster.jobs[name] = record
        assert pod_spec(job).get("restartPolicy") == NEVER, "the chart's Jobs do not restart containers in place"
        deadline = time.monotonic() + spec["activeDeadlineSeconds"] if "activeDeadlineSeconds" in spec else None
        if spec.get("completionMode") == "Indexed":
            self._run_indexed(job, record, deadline)
            self.cluster.event(record.describe())
            return record
        outcomes: list[PodOutcome] = []
        while not record.condition:
            pod = pod_from_template(self.cluster, job, f"{name}-{self.cluster.suffix()}",
                                    {"batch.kubernetes.io/job-name": name, "job-name": name})
            run = self.kubelet.run_pod(pod, f"Job/{name}", deadline)
            record.pods.append(run)
            outcomes.append(pod_outcome(run))
            expired = deadline is not None and time.monotonic() >= deadline
            record.status = job_status(spec, outcomes, deadline_after=expired)
        self.cluster.event(record.describe())
        return record


    def _run_indexed(self, job: dict[str, Any], record: JobRun, deadline: float | None) -> None:
        """An Indexed Job: up to `parallelism` pods at once, the lowest pending index first, a failed index
        retried until it fails (see the module's docstring)."""
        spec, name = job["spec"], job["metadata"]["name"]
        pending = list(range(int(spec["completions"])))
        counted: dict[int, int] = {}  # counted failures of each index: the next pod's failure-count annotation
        outcomes: list[tuple[int, PodOutcome]] = []
        running: dict[Future[PodRun], tuple[int, str]] = {}
        deleted: set[str] = set()
        parallelism = int(spec.get("parallelism", 1))
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            while True:
                while pending and len(running) < parallelism and not record.condition:
                    index = pending.pop(0)
                    pod = indexed_pod(self.cluster, job, index, counted.get(index, 0))
                    future = pool.submit(self.kubelet.run_pod, pod, f"Job/{name}", deadline)
                    running[future] = (index, pod["metadata"]["name"])
                if not running:
                    break
                done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    index, pod_name = running.pop(future)
                    run = future.result()
                    record.pods.append(run)
                    outcome = pod_outcome(run, deleted=pod_name in deleted)
                    outcomes.append((index, outcome))
                    expired = deadline is not None and time.monotonic() >= deadline and not running
                    record.status = indexed_job_status(spec, outcomes, deadline_after=expired)
                    ended = record.status.completed_indexes | record.status.failed_indexes
                    if not record.condition and index not in ended:
                        if failure_action(spec.get("podFailurePolicy"), outcome) != "Ignore":
                            counted[index] = counted.get(index, 0) + 1
                        pending = sorted({*pending, index})
                if record.condition == FAILED:
                    for _, pod_name in running.values():
                        deleted.add(pod_name)
                        self.kubelet.delete_job_pod(pod_name)


# --- the Deployment controller --------------------------------------------------------------------------

def surge_and_unavailable(deployment: dict[str, Any], replicas: int) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down) of a RollingUpdate strategy."""
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})

    def value(raw: int | str, rounding: Callable[[float], int]) -> int:
        if isinstance(raw, str) and raw.endswith("%"):
            return rounding(replicas * int(raw[:-1]) / 100)
        return int(raw)

    surge = value(rolling.get("maxSurge", "25%"), math.ceil)
    unavailable = value(rolling.get("maxUnavailable", "25%"), math.floor)
    return surge, (1 if surge == 0 and unavailable == 0 else unavailable)


class DeploymentController:
    """Keeps one Deployment's ReplicaSets: rolling updates, scaling, replacing deleted pods."""

    def __init__(self, cluster: EmulatedCluster, kubelet: Kubelet) -> None:
        self.cluster = cluster
        self.kubelet = kubelet
        self.deployment: dict[str, Any] | None = None
        self.current = ""  # the ReplicaSet of the Deployment's template

    def apply(self, deployment: dict[str, Any]) -> Rollout:
        self.deployment = deployment
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        rs_name = f"{name}-{template_hash(template)}"
        if rs_name not in self.cluster.replica_sets:
            self.cluster.replica_sets[rs_name] = ReplicaSet(rs_name, template)
            self.cluster.event(f"created ReplicaSet/{rs_name}")
        self.current = rs_name
        return self._rollout()

    def _new_pods(self, count: int) -> list[PodRun]:
        assert self.deployment is not None
        rs = self.cluster.replica_sets[self.current]
        hash_ = rs.name.rsplit("-", 1)[1]
        pods = []
        for _ in range(count):
            pod = pod_from_template(self.cluster, self.deployment, f"{rs.name}-{self.cluster.suffix()}",
                                    {"pod-template-hash": hash_})
            pods.append(pod)
        ports = [own_port(pod) for pod in pods]
        with ThreadPoolExecutor(max_workers=max(count, 1)) as pool:
            runs = list(pool.map(lambda pod: self.kubelet.run_pod(pod, f"ReplicaSet/{rs.name}"), pods))
        for run, port in zip(runs, ports, strict=True):
            run.port = port
        rs.pods.extend(runs)
        return runs

    def _remove(self, pod: PodRun) -> None:
        for rs in self.cluster.replica_sets.values():
            if pod in rs.pods:
                rs.pods.remove(pod)
        self.kubelet.stop(pod)

    def _rollout(self) -> Rollout:
        assert self.deployment is not None
        replicas = int(self.deployment["spec"].get("replicas", 1))
        surge, unavailable = surge_and_unavailable(self.deployment, replicas)
        new = self.cluster.replica_sets[self.current]
        result = Rollout(complete=False)
        while True:
            old = [p for rs in self.cluster.replica_sets.values() if rs is not new for p in rs.pods]
            changed = False
            for pod in [p for p in old if not p.ready]:  # unhealthy old pods go first
                self._remove(pod)
                result.removed.append(pod)
                changed = True
            old = [p for p in old if p.ready]
            for pod in new.pods[replicas:]:  # scaled down
                self._remove(pod)
                result.removed.append(pod)
                changed = True
            room = replicas + surge - len(new.pods) - len(old)
            create = min(room, replicas - len(new.pods))
            if create > 0:
                result.created += self._new_pods(create)
                changed = True
            available = len([p for p in new.pods if p.ready]) + len(old)
            for pod in old[: max(available - (replicas - unavailable), 0)]:
                self._remove(pod)
                result.removed.append(pod)
                changed = True
            old = [p for rs in self.cluster.replica_sets.values() if rs is not new for p in rs.pods]
            if not old and len(new.pods) == replicas and all(p.ready for p in new.pods):
                result.complete = True
                return result
            if not changed:  # new pods that never become ready: the rollout stays here
                self.cluster.event(f"rollout of ReplicaSet/{new.name} stuck: "
                                   f"{'; '.join(p.describe() for p in new.pods)}")
                return result

    def delete_pod(self, pod: PodRun) -> PodRun:
        """Delete POD; its ReplicaSet makes a replacement, which is returned."""
        owner = next(rs for rs in self.cluster.replica_sets.values() if pod in rs.pods)
        self._remove(pod)
        current, self.current = self.current, owner.name
        try:
            [replacement] = self._new_pods(1)
        finally:
            self.current = current
        return replacement

# --- Helm -----------------------------------------------------------------------------------------------

def immutable_change(existing: dict[str, Any], new: dict[str, Any]) -> str:
    """The API server's refusal of a Job patch that changes an immutable field, or ''."""
    for path in ("template", "podFailurePolicy"):
        if existing["spec"].get(path) != new["spec"].get(path):
            return f'Job.batch "{new["metadata"]["name"]}" is invalid: spec.{path}: field is immutable'
    return ""


def manifest(rendered: Rendered) -> list[dict[str, Any]]:
    """The release's own objects (not hooks), in Helm's install order."""
    return sorted((o for o in rendered.objects if not hook_events(o)), key=kind_rank)


class HelmEmulation:
    """Helm's install, upgrade, rollback and test (see the module's docstring). RENDER(values, upgrade,
    revision) renders the chart with Helm's engine; `wait` is --wait --wait-for-jobs; VERSION the Helm whose
    hook deletion and --wait decide (both waits are recorded in ActionResult.waits)."""

    def __init__(self, cluster: EmulatedCluster, render: Callable[[dict[str, Any], bool, int], Rendered],
                 wait: bool = True, version: str = HELM4) -> None:
        self.cluster = cluster
        self.render = render
        self.wait = wait
        self.version = version
        self.kubelet = Kubelet(cluster)
        self.jobs = JobController(cluster, self.kubelet)
        self.deployments = DeploymentController(cluster, self.kubelet)
        self.history: list[Revision] = []

    # the actions

    def install(self, values: dict[str, Any]) -> ActionResult:
        assert not self.history, "install: the release exists (use upgrade)"
        return self._release("install", self.render(values, False, 1), None, "pre-install", "post-install")

    def upgrade(self, values: dict[str, Any]) -> ActionResult:
        current = self.deployed()
        rendered = self.render(values, True, len(self.history) + 1)
        return self._release("upgrade", rendered, current.rendered, "pre-upgrade", "post-upgrade")

    def rollback(self, number: int) -> ActionResult:
        """`helm rollback RELEASE NUMBER`: the stored manifest and hooks of revision NUMBER, applied over the
        last revision's manifest (deployed or failed)."""
        target = self.history[number - 1]
        return self._release("rollback", target.rendered, self.history[-1].rendered, "pre-rollback",
                             "post-rollback")

    def test(self) -> list[PodRun]:
        """`helm test`: the test hooks of the last revision (deployed or failed), run as hooks are."""
        result = ActionResult(self.history[-1])
        error = self._hooks(self.history[-1].rendered, "test", result)
        self.cluster.event(f"helm test: {error or 'passed'}")
        return [h for h in result.hooks if isinstance(h, PodRun)]

    def deployed(self) -> Revision:
        return next(r for r in reversed(self.history) if r.status == "deployed")

    def notes(self, number: int) -> str:
        """`helm get notes RELEASE --revision NUMBER`: the notes stored with that revision (a rollback stores
        those of the revision it rolled back to)."""
        return self.history[number - 1].rendered.notes

    # how they run

    def _release(self, action: str, rendered: Rendered, current: Rendered | None, pre: str,
                 post: str) -> ActionResult:
        revision = Revision(len(self.history) + 1, action, rendered)
        self.history.append(revision)
        result = ActionResult(revision)
        self.cluster.event(f"helm {action}: revision {revision.number}")
        result.error = self._hooks(rendered, pre, result)
        if not result.error:
            result.error = self._apply(current, rendered, result)
        if not result.error:
            result.error = self._hooks(rendered, post, result)
        if result.error:
            revision.status, revision.description = "failed", result.error
        else:
            for earlier in self.history[:-1]:
                if earlier.status == "deployed":
                    earlier.status = "superseded"
            revision.status, revision.description = "deployed", f"{action} complete"
        self.cluster.event(f"helm {action}: revision {revision.number} {revision.status} {result.error}")
        return result

    def _hooks(self, rendered: Rendered, event: str, result: ActionResult) -> str:
        """Helm's execHook: each hook created and waited for in order; '' or why the phase failed. Deletes
        hooks as this Helm version does (helm_rules)."""
        hooks = hook_order(rendered.objects, event)
        ran: list[tuple[dict[str, Any], list[PodRun]]] = []
        for i, hook in enumerate(hooks):
            key, policies = key_of(hook), delete_policies(hook)
            if "before-hook-creation" in policies:
                self.cluster.delete(key)
            elif key in self.cluster.objects:
                return f"{key[0]} {key[1]} already exists"
            self.cluster.create(hook)
            error, pods = self._run_hook(hook, result)
            if error:
                self._print_logs(hook, pods, "hook-failed", result)
                for deleted in deleted_when_phase_fails(hooks, i, self.version):
                    self.cluster.delete(key_of(deleted))
                return f"{event} hooks failed: {error}"
            ran.append((hook, pods))
        for hook, pods in reversed(ran):
            self._print_logs(hook, pods, "hook-succeeded", result)
        for hook in deleted_when_phase_succeeds(hooks):
            self.cluster.delete(key_of(hook))
        return ""

    @staticmethod
    def _print_logs(hook: dict[str, Any], pods: list[PodRun], when: str, result: ActionResult) -> None:
        """Helm 3.18+'s outputLogsByPolicy: the main containers' logs of the hook's pods, when the hook's output
        log policy names WHEN."""
        policy = hook["metadata"].get("annotations", {}).get("helm.sh/hook-output-log-policy", "")
        if when in [p.strip() for p in policy.split(",")]:
            names = {c["name"] for c in pod_spec(hook)["containers"]}
            result.printed += [r.output for pod in pods for r in pod.runs if r.container in names]

    def _run_hook(self, hook: dict[str, Any], result: ActionResult) -> tuple[str, list[PodRun]]:
        """Run a Job or Pod hook to its end: (why it failed or '', its pods)."""
        if hook["kind"] == "Job":
            job = self.jobs.run(hook, hook=True)
            result.hooks.append(job)
            return (f"job {job.name} failed: {job.reason}" if hook_failed(job.status) else ""), job.pods
        if hook["kind"] == "Pod":
            pod = self.kubelet.run_pod(hook, f"Pod/{hook['metadata']['name']}")
            result.hooks.append(pod)
            return (f"pod {pod.name} {pod.phase}" if pod.phase != "Succeeded" else ""), [pod]
        return "", []  # a Secret or ServiceAccount is ready once created

    def _apply(self, current: Rendered | None, target: Rendered, result: ActionResult) -> str:
        """Helm's KubeClient.Update: create or patch every object of TARGET, delete what only CURRENT has; the
        controllers then act on what changed, concurrently. With --wait, the rollout must complete and the
        Jobs succeed."""
        new_jobs: list[dict[str, Any]] = []
        deployment = None
        for obj in manifest(target):
            key = key_of(obj)
            existing = self.cluster.objects.get(key)
            if existing is not None and obj["kind"] == "Job":
                refused = immutable_change(existing, obj)
                if refused:
                    return f"cannot patch {key[0]} {key[1]}: {refused}"
                self.cluster.event(f"patched Job/{key[1]} (unchanged spec: nothing runs)")
            if existing is None:
                self.cluster.create(obj)
                if obj["kind"] == "Job":
                    new_jobs.append(obj)
            else:
                self.cluster.objects[key] = obj
            if obj["kind"] == "Deployment":
                deployment = obj
        keep = {key_of(o) for o in manifest(target)}
        for obj in manifest(current) if current is not None else []:
            if key_of(obj) not in keep:
                self.cluster.delete(key_of(obj))
        with ThreadPoolExecutor(max_workers=len(new_jobs) + 1) as pool:
            job_runs = [pool.submit(self.jobs.run, job, False) for job in new_jobs]
            rollout = pool.submit(self.deployments.apply, deployment) if deployment is not None else None
            result.jobs = [j.result() for j in job_runs]
            result.rollout = rollout.result() if rollout is not None else None
        result.waits = {version: wait(version, self._states(target, result), self.cluster.namespace)
                        for version in (HELM3, HELM4)}
        return result.waits[HELM3 if self.version.startswith("3") else HELM4].error if self.wait else ""

    def _states(self, target: Rendered, result: ActionResult) -> list[ResourceState]:
        """The release's resources in the manifest's order, as the waiters see them once the controllers
        settled: the Deployment's new pods ready or not, each Job's status."""
        states = []
        for obj in manifest(target):
            name = obj["metadata"]["name"]
            if obj["kind"] == "Deployment":
                states.append(self._deployment_state(obj, result.rollout))
            elif obj["kind"] == "Job":
                states.append(job_state(obj, self.cluster.jobs[name].status))
            else:
                states.append(ResourceState(obj["kind"], name, ready3=True, failed3=False, kstatus="Current"))
        return states

    def _deployment_state(self, deployment: dict[str, Any], rollout: Rollout | None) -> ResourceState:
        """ready.go deploymentReady (the new ReplicaSet's ready pods against replicas - maxUnavailable) and
        kstatus (Current once the rollout completed)."""
        replicas = int(deployment["spec"].get("replicas", 1))
        _, unavailable = surge_and_unavailable(deployment, replicas)
        current = self.cluster.replica_sets[self.deployments.current]
        ready = len([p for p in current.pods if p.ready])
        complete = rollout is not None and rollout.complete
        return ResourceState("Deployment", deployment["metadata"]["name"], ready3=ready >= replicas - unavailable,
                             failed3=False, kstatus="Current" if complete else "InProgress",
                             message=f"{ready} of {replicas} new pods ready")

    # pods

    def delete_pod(self, pod: PodRun) -> PodRun:
        """`kubectl delete pod`: the ReplicaSet replaces it; the replacement is returned once it settled."""
        return self.deployments.delete_pod(pod)

    def close(self) -> None:
        """Remove every container the emulation left running."""
        self.kubelet.close()
