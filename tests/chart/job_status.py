"""The Kubernetes Job controller's verdict on a Job, emulated from what happened to its pods: which failures
count against `backoffLimit` (`status.failed`), when the Job fails and with which condition reason. An
emulation of pkg/controller/job (Kubernetes 1.29 to 1.35), not the controller:

- a failed pod is matched against `podFailurePolicy`'s rules in order (pod_failure_policy.go): `FailJob` fails
  the Job at once and the pod counts as failed; `Ignore` neither counts it nor fails the Job; `Count` or no
  match counts it. `onExitCodes` looks at the containers that ended with a non-zero code (`containerName`
  narrows it), `onPodConditions` at the pod's conditions (DisruptionTarget: evicted, preempted);
- `status.failed` is the number of counted failures (nonIgnoredFailedPodsCount); the Job fails with
  BackoffLimitExceeded once it exceeds `backoffLimit`;
- when `activeDeadlineSeconds` passes, the Job fails with DeadlineExceeded and the controller deletes its
  active pod, which then counts as failed ("every non-terminated pod is considered failed" once the Job is
  finished; its exit code, 143 after SIGTERM, matches no rule of this chart). With no active pod at that
  moment (after an ignored failure the next pod waits out the pod failure back-off: 10 s, 20 s, ...,
  backoff_utils.go counts ignored pods too) nothing more is counted.

Not emulated: time (the caller says when the deadline passes), parallelism and completions above 1, indexed
Jobs, `restartPolicy: OnFailure`, suspension, and the interim FailureTarget condition of Kubernetes 1.31+
(the Failed condition follows once the pod terminated; both tools read it then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMPLETE = "Complete"
FAILED = "Failed"


@dataclass(frozen=True)
class PodOutcome:
    """How one pod of the Job ended: exit codes of its containers that ended, or killed at the deadline."""

    exit_codes: dict[str, int] = field(default_factory=dict)  # container -> exit code
    disrupted: bool = False  # DisruptionTarget=True: evicted, preempted, deleted by a node's shutdown
    deadline: bool = False  # still running or pending when activeDeadlineSeconds passed

    @property
    def succeeded(self) -> bool:
        return not self.deadline and not self.disrupted and all(code == 0 for code in self.exit_codes.values())


@dataclass
class JobStatus:
    """The Job's status as the controller writes it."""

    failed: int = 0  # status.failed: counted failures
    succeeded: int = 0
    ignored: int = 0  # failures an Ignore rule kept from counting (not in the status)
    condition: str = ""  # "", Complete or Failed
    reason: str = ""  # BackoffLimitExceeded, PodFailurePolicy, DeadlineExceeded
    message: str = ""  # the Failed condition's message (FailJob names the container and exit code)


def failure_action(policy: dict[str, Any] | None, outcome: PodOutcome) -> str | None:
    """The action of the first podFailurePolicy rule that matches a failed pod (None: count the failure)."""
    codes = {name: code for name, code in outcome.exit_codes.items() if code != 0}
    for rule in (policy or {}).get("rules", []):
        if "onExitCodes" in rule:
            requirement = rule["onExitCodes"]
            scoped = [c for n, c in codes.items() if requirement.get("containerName") in (None, n)]
            wanted = requirement["operator"] == "In"
            if any((code in requirement["values"]) == wanted for code in scoped):
                return str(rule["action"])
        for condition in rule.get("onPodConditions", []):
            wanted = condition.get("status", "True") == "True"
            if condition["type"] == "DisruptionTarget" and outcome.disrupted == wanted:
                return str(rule["action"])
    return None


def job_status(spec: dict[str, Any], pods: list[PodOutcome], deadline_after: bool = False) -> JobStatus:
    """The status after PODS ended in order; DEADLINE_AFTER: the deadline then passed with no pod running."""
    status = JobStatus()
    limit = int(spec.get("backoffLimit", 6))
    for pod in pods:
        if pod.succeeded:
            status.succeeded += 1
            status.condition = COMPLETE
            return status
        action = failure_action(spec.get("podFailurePolicy"), pod)
        if pod.deadline:
            status.failed += 0 if action == "Ignore" else 1
            return finish(status, "DeadlineExceeded", "Job was active longer than specified deadline")
        if action == "Ignore":
            status.ignored += 1
            continue
        status.failed += 1
        if action == "FailJob":
            container, code = next((n, c) for n, c in pod.exit_codes.items() if c != 0)
            return finish(status, "PodFailurePolicy", f"Container {container} failed with exit code {code} "
                                                       "matching FailJob rule")
        if status.failed > limit:
            return finish(status, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    if deadline_after:
        return finish(status, "DeadlineExceeded", "Job was active longer than specified deadline")
    return status


def finish(status: JobStatus, reason: str, message: str) -> JobStatus:
    status.condition, status.reason, status.message = FAILED, reason, message
    return status
