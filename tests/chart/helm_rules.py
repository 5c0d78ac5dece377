"""What Helm 3 (3.18 to 3.21) and Helm 4 (4.0 to 4.2) decide, emulated from their sources as pure functions of
the objects' states: when a hook or a waited-for Job has failed, when `--wait` ends and with what error, which
hooks a hook phase deletes, and which notes a revision carries. An emulation, not Helm:

- hooks (pkg/kube/client.go waitForJob in Helm 3; WatchUntilReady with internal/statusreaders in Helm 4): a
  hook Job has ended when it has the Complete or the Failed condition; Failed fails the hook phase;
- `--wait --wait-for-jobs`, Helm 3 and Helm 4's `--wait=legacy` (pkg/kube/wait.go, ready.go): every 2 s the
  resources are checked in the manifest's order (Helm's install order: a Deployment before a Job) and the
  first that is not ready ends that poll; a Job is failed only when `status.failed > backoffLimit`, an error
  that waitForResources retries 30 polls before it returns it; otherwise the wait ends at --timeout with
  `context deadline exceeded` and no word of which resource held it;
- `--wait --wait-for-jobs`, Helm 4's default `--wait=watcher` (pkg/kube/statuswait.go, kstatus): a Job is
  Current when Complete and Failed when it has the Failed condition; Failed resources are left out of the
  aggregate, so the wait ends as soon as every other resource is Current, with an error for each resource
  that is not ("status: Failed, message: Job Failed. failed: N/1"); a Deployment is Current once its rollout
  completed (Failed only after its progressDeadlineSeconds, which no test waits for);
- hook deletion (pkg/action/hooks.go): `before-hook-creation` before a hook is created; when a hook fails,
  the failed one if `hook-failed`, and from 3.19 on (Helm 4 too) the phase's earlier hooks if
  `hook-succeeded`; when the phase succeeds, every hook with `hook-succeeded`. `helm uninstall` and an
  interrupted client delete no hook;
- `helm rollback` stores the target revision's manifest, hooks and notes as a new revision (rollback.go).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.chart.chart_render import delete_policies
from tests.chart.job_status import COMPLETE, FAILED, JobStatus, backoff_limit

HELM3 = "3.21"  # the newest Helm 3 the chart is tested with (3.18 differs only in hook deletion)
HELM4 = "4.2"
HELM3_JOB_ERROR_POLLS = 30  # waitForResources retries a resource's error this many polls, 2 s apart
TIMEOUT = "context deadline exceeded"


# --- Jobs -----------------------------------------------------------------------------------------------

def hook_failed(status: JobStatus) -> bool | None:
    """A hook Job's outcome for both Helm 3 and Helm 4: True (failed), False (succeeded), None (running)."""
    if status.condition == COMPLETE:
        return False
    return True if status.condition == FAILED else None


def helm3_job_failed(spec: dict[str, Any], status: JobStatus) -> bool:
    """ready.go jobReady: a Job is failed only when its counted failures exceed its backoffLimit (as the API
    server stored it: unlimited for an Indexed Job with backoffLimitPerIndex that leaves it out)."""
    return status.failed > backoff_limit(spec)


def helm3_job_ready(spec: dict[str, Any], status: JobStatus) -> bool:
    return not helm3_job_failed(spec, status) and status.succeeded >= int(spec.get("completions", 1))


def helm4_job_status(status: JobStatus) -> str:
    """internal/statusreaders/job_status_reader.go: Current when Complete, Failed with the Failed condition."""
    return {COMPLETE: "Current", FAILED: "Failed"}.get(status.condition, "InProgress")


# --- --wait --wait-for-jobs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourceState:
    """One resource of a release as the waiters see it."""

    kind: str
    name: str
    ready3: bool  # Helm 3's ready.go says ready
    failed3: bool  # Helm 3's ready.go returns an error for it (a Job: failed > backoffLimit)
    kstatus: str  # Current, InProgress or Failed
    message: str = ""


@dataclass(frozen=True)
class WaitOutcome:
    """How a `--wait` ended: the error Helm returns ('' when none), and whether only --timeout ended it."""

    error: str
    at_timeout: bool


def job_state(job: dict[str, Any], status: JobStatus) -> ResourceState:
    spec = job["spec"]
    message = f"Job {status.condition or 'in progress'}. failed: {status.failed}/1"
    return ResourceState("Job", job["metadata"]["name"], helm3_job_ready(spec, status),
                         helm3_job_failed(spec, status), helm4_job_status(status), message)


def helm3_wait(resources: list[ResourceState], namespace: str) -> WaitOutcome:
    """waitForResources: in order, the first resource not ready ends each poll."""
    for resource in resources:
        if resource.failed3:
            return WaitOutcome(f"job is failed: {namespace}/{resource.name}", at_timeout=False)
        if not resource.ready3:
            return WaitOutcome(TIMEOUT, at_timeout=True)
    return WaitOutcome("", at_timeout=False)


def helm4_wait(resources: list[ResourceState], namespace: str) -> WaitOutcome:
    """statusWaiter.wait: done once every resource that has not failed is Current."""
    errors = [f"resource {r.kind}/{namespace}/{r.name} not ready. status: {r.kstatus}, message: {r.message}"
              for r in resources if r.kstatus != "Current"]
    pending = [r for r in resources if r.kstatus not in ("Current", "Failed")]
    if pending:
        return WaitOutcome("\n".join([*errors, TIMEOUT]), at_timeout=True)
    return WaitOutcome("\n".join(errors), at_timeout=False)


def wait(version: str, resources: list[ResourceState], namespace: str) -> WaitOutcome:
    return (helm3_wait if version.startswith("3") else helm4_wait)(resources, namespace)


# --- hook deletion --------------------------------------------------------------------------------------

def deleted_when_phase_fails(hooks: list[dict[str, Any]], failed: int, version: str) -> list[dict[str, Any]]:
    """The hooks Helm deletes when hook FAILED (an index into the phase's HOOKS, in Helm's order) fails."""
    out = [hooks[failed]] if "hook-failed" in delete_policies(hooks[failed]) else []
    if version != "3.18":
        out += [h for h in hooks[:failed] if "hook-succeeded" in delete_policies(h)]
    return out


def deleted_when_phase_succeeds(hooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in hooks if "hook-succeeded" in delete_policies(h)]
