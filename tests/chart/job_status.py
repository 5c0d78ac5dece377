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

Indexed Jobs with a per-index backoff limit (`completionMode: Indexed`, `backoffLimitPerIndex`; beta and on by
default from 1.29, GA in 1.33), as indexed_job_status (indexed_job_utils.go calculateFailedIndexes and
isIndexFailed, job_controller.go syncJob):

- each pod has an index; a pod that succeeds completes its index (status.completedIndexes);
- a failed pod is matched against podFailurePolicy as above: `FailJob` fails the Job; `FailIndex` fails its
  index at once; `Ignore` neither counts it nor uses up its index's retries (the replacement pod's
  job-index-ignored-failure-count); `Count` or no match counts it, and its index fails once the index had
  `backoffLimitPerIndex` counted failures before this one (the replacement's job-index-failure-count
  annotation); otherwise the index gets a new pod;
- `backoffLimit`, when the spec leaves it out, defaults to unlimited with a per-index limit (the API server's
  defaulting), else it still fails the Job with BackoffLimitExceeded once exceeded;
- the Job fails with MaxFailedIndexesExceeded once more indexes failed than `maxFailedIndexes`; with
  FailedIndexes ("Job has failed indexes") once every index completed or failed and one failed; it is
  Complete once every index completed;
- when the Job fails, every pod still running is deleted and counts as failed unless an Ignore rule matches
  it ("every non-terminated pod is considered failed" once the Job is finished).

Not emulated: time (the caller says when the deadline passes, and in which order pods ended),
`restartPolicy: OnFailure`, suspension, successPolicy, the pod failure back-off, and the interim
FailureTarget condition of Kubernetes 1.31+ (the Failed condition follows once the pod terminated; both tools
read it then).
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
    deleted: bool = False  # still running when the Job failed for another reason: the controller deleted it

    @property
    def succeeded(self) -> bool:
        return (not self.deadline and not self.disrupted and not self.deleted
                and all(code == 0 for code in self.exit_codes.values()))


@dataclass
class JobStatus:
    """The Job's status as the controller writes it (for an Indexed Job also its indexes)."""

    failed: int = 0  # status.failed: counted failures
    succeeded: int = 0
    ignored: int = 0  # failures an Ignore rule kept from counting (not in the status)
    condition: str = ""  # "", Complete or Failed
    reason: str = ""  # BackoffLimitExceeded, PodFailurePolicy, DeadlineExceeded
    message: str = ""  # the Failed condition's message (FailJob names the container and exit code)
    completed_indexes: set[int] = field(default_factory=set)  # status.completedIndexes, of an Indexed Job
    failed_indexes: set[int] = field(default_factory=set)  # status.failedIndexes, with backoffLimitPerIndex


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
    limit = backoff_limit(spec)
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
            return fail_job(status, pod)
        if status.failed > limit:
            return finish(status, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    if deadline_after:
        return finish(status, "DeadlineExceeded", "Job was active longer than specified deadline")
    return status


def fail_job(status: JobStatus, pod: PodOutcome) -> JobStatus:
    """The Failed condition a FailJob rule sets, naming the container and its exit code."""
    container, code = next((n, c) for n, c in pod.exit_codes.items() if c != 0)
    return finish(status, "PodFailurePolicy",
                  f"Container {container} failed with exit code {code} matching FailJob rule")


def finish(status: JobStatus, reason: str, message: str) -> JobStatus:
    status.condition, status.reason, status.message = FAILED, reason, message
    return status


UNLIMITED = 2**31 - 1  # the API server's default backoffLimit when backoffLimitPerIndex is set


def backoff_limit(spec: dict[str, Any]) -> int:
    """spec.backoffLimit as the API server stores it: 6 when left out, unlimited with backoffLimitPerIndex."""
    return int(spec.get("backoffLimit", UNLIMITED if "backoffLimitPerIndex" in spec else 6))


def indexed_job_status(spec: dict[str, Any], pods: list[tuple[int, PodOutcome]],
                       deadline_after: bool = False) -> JobStatus:
    """The status of an Indexed Job with backoffLimitPerIndex after PODS (index, outcome) ended in order."""
    status = JobStatus()
    completions = int(spec["completions"])
    per_index = int(spec["backoffLimitPerIndex"])
    limit = backoff_limit(spec)
    most_failed = spec.get("maxFailedIndexes")
    counted: dict[int, int] = {}  # counted failures of each index so far (job-index-failure-count)
    for index, pod in pods:
        if status.condition:  # the Job had failed: the controller deleted this pod, which counts unless ignored
            status.failed += failure_action(spec.get("podFailurePolicy"), pod) != "Ignore"
            continue
        if pod.succeeded:
            status.completed_indexes.add(index)
        elif pod.deadline:
            status.failed += failure_action(spec.get("podFailurePolicy"), pod) != "Ignore"
            finish(status, "DeadlineExceeded", "Job was active longer than specified deadline")
            continue
        else:
            _count_failure(spec, status, counted, index, pod, per_index)
        _verdict(status, completions, limit, most_failed)
    status.succeeded = len(status.completed_indexes)
    if deadline_after and not status.condition:
        finish(status, "DeadlineExceeded", "Job was active longer than specified deadline")
    return status


def _count_failure(spec: dict[str, Any], status: JobStatus, counted: dict[int, int], index: int, pod: PodOutcome,
                   per_index: int) -> None:
    """One failed pod of INDEX: ignored, or counted, failing its index or the Job as the policy says."""
    action = failure_action(spec.get("podFailurePolicy"), pod)
    if action == "Ignore":
        status.ignored += 1
        return
    status.failed += 1
    if action == "FailJob":
        fail_job(status, pod)
    elif action == "FailIndex" or counted.get(index, 0) >= per_index:
        status.failed_indexes.add(index)
    else:
        counted[index] = counted.get(index, 0) + 1


def _verdict(status: JobStatus, completions: int, limit: int, most_failed: int | None) -> None:
    """The Job's condition once a pod ended, in syncJob's order of checks."""
    if status.condition:
        return
    if status.failed > limit:
        finish(status, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    elif most_failed is not None and len(status.failed_indexes) > int(most_failed):
        finish(status, "MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes")
    elif status.failed_indexes and len(status.failed_indexes) + len(status.completed_indexes) >= completions:
        finish(status, "FailedIndexes", "Job has failed indexes")
    elif len(status.completed_indexes) >= completions:
        status.condition = COMPLETE
