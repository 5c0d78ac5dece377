"""Every way the migration Job can fail reaches Helm 3 and Helm 4 alike (issue 17, items 2 and 12).

The rendered Job spec is run through the Job controller's counting rules (job_status.py) for each way a
migration fails, and the outcome read with each Helm's own rule (helm_rules.py): a hook Job by its Failed
condition (Helm 3's client.go and Helm 4's status reader agree), the plain Job by Helm 3's `--wait-for-jobs`
(`status.failed > backoffLimit`) and by Helm 4's (the Failed condition). The chart may rely on no rule only one
of them has: with `backoffLimit: 3` (chart 0.2.0) Helm 3 missed every FailJob exit and the deadline, and with
disruptions ignored in job mode it would miss a deadline that passes before the replacement pod started.

Rendered offline by Helm's own engine; no cluster and no container is involved (test_lifecycle_emulation.py
runs the real images through the same rules).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_render import INSTALL_ORDER, render
from tests.chart.helm_rules import (
    TIMEOUT,
    ResourceState,
    WaitOutcome,
    helm3_job_failed,
    helm3_wait,
    helm4_job_status,
    helm4_wait,
    hook_failed,
    job_state,
)
from tests.chart.job_status import FAILED, PodOutcome, job_status

# Each way a migration Job fails, as the pods it made ended; the flag: the deadline then passed with no pod.
FAILURES: dict[str, tuple[list[PodOutcome], bool]] = {
    "exit 1, a failed migration": ([PodOutcome({"migrate": 1})], False),
    "exit 2, a configuration error": ([PodOutcome({"migrate": 2})], False),
    "exit 6, left part-way": ([PodOutcome({"migrate": 6})], False),
    "exit 3, database unreachable": ([PodOutcome({"migrate": 3})], False),
    "exit 4, lock not acquired": ([PodOutcome({"migrate": 4})], False),
    "exit 137, killed for memory": ([PodOutcome({"migrate": 137})], False),
    "deadline, migration running": ([PodOutcome({"migrate": 143}, deadline=True)], False),
    "deadline, pod never started": ([PodOutcome({}, deadline=True)], False),
    "evicted, then deadline while the next runs": (
        [PodOutcome({"migrate": 143}, disrupted=True), PodOutcome({"migrate": 143}, deadline=True)], False),
    "evicted, then deadline before the next started": ([PodOutcome({"migrate": 143}, disrupted=True)], True),
}
SEED_FAILURE = [PodOutcome({"migrate": 0, "seed": 1})]  # job mode: migrate (init container) then seed


def job_spec(mode: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    merged = {"migrator": {"mode": mode, **(values or {})}}
    return render(merged).jobs()[0]["spec"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_hook_job_reaches_helm_3_and_4(failure: str) -> None:
    """Both Helm versions end a hook's wait on the Job's Failed condition, which every failure sets."""
    pods, deadline_after = FAILURES[failure]
    status = job_status(job_spec("hook"), pods, deadline_after)
    assert status.condition == FAILED, status
    assert hook_failed(status) is True


@pytest.mark.parametrize("failure", [*FAILURES, "seed fails after migrate"])
def test_a_failed_plain_job_reaches_helm_3_and_4(failure: str) -> None:
    """The plain Job's failure satisfies Helm 3's rule (failed pods above backoffLimit) and Helm 4's (the
    Failed condition) at the same moment: one counted failure both fails it and exceeds backoffLimit 0, and no
    Ignore rule lets it fail with none counted."""
    pods, deadline_after = FAILURES.get(failure, (SEED_FAILURE, False))
    spec = job_spec("job", {"seed": {"enabled": failure == "seed fails after migrate"}})
    status = job_status(spec, pods, deadline_after)
    assert status.condition == FAILED, status
    assert helm3_job_failed(spec, status), f"Helm 3 would wait out --timeout: {status}"
    assert helm4_job_status(status) == "Failed"


def test_chart_0_2_0s_job_failed_where_helm_3_did_not_look() -> None:
    """The check above can fail: with chart 0.2.0's spec (backoffLimit 3, disruptions ignored) Helm 3's rule
    misses a FailJob exit and the deadline, while Helm 4 sees them."""
    spec = job_spec("job", {"job": {"backoffLimit": 3, "nonRetryableExitCodes": [2, 6]}})
    spec["podFailurePolicy"]["rules"].append(
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
    for failure in ("exit 2, a configuration error", "deadline, migration running",
                    "evicted, then deadline before the next started"):
        status = job_status(spec, *FAILURES[failure])
        assert helm4_job_status(status) == "Failed" and not helm3_job_failed(spec, status), failure


# --- which exit codes are retried (item 12) -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["hook", "job"])
def test_exit_codes_a_retry_cannot_fix_fail_the_job_at_once(mode: str) -> None:
    """With pod-level retries turned on (backoffLimit 2), exit 1, 2 and 6 still fail the Job with the first pod
    (FailJob: a failed migration runs the same SQL on the same data again; a configuration error stays; a
    migration left part-way waits for an operator), while 3 and 4 (the database or the lock, which may come
    back) and a crash are retried."""
    spec = job_spec(mode, {"job": {"backoffLimit": 2}})
    for code in (1, 2, 6):
        status = job_status(spec, [PodOutcome({"migrate": code})])
        assert (status.reason, status.failed) == ("PodFailurePolicy", 1), code
    for code in (3, 4, 137):
        one = job_status(spec, [PodOutcome({"migrate": code})] * 2)
        assert one.condition == "", code  # two failures, still running: a third pod comes
        assert job_status(spec, [PodOutcome({"migrate": code})] * 3).reason == "BackoffLimitExceeded"


def test_by_default_no_failure_is_retried_by_the_job() -> None:
    """backoffLimit 0: the migrator's own bounded waits (MIGRATOR_CONNECT_TIMEOUT, MIGRATOR_LOCK_TIMEOUT,
    MIGRATOR_DDL_RETRIES) are the retries; the Job fails with the first failed pod, whatever its code."""
    spec = job_spec("hook")
    assert spec["backoffLimit"] == 0
    for code in (3, 4, 137):
        status = job_status(spec, [PodOutcome({"migrate": code})])
        assert (status.reason, status.failed) == ("BackoffLimitExceeded", 1), code


# --- --wait --wait-for-jobs in job mode: what each Helm sees first --------------------------------------

def job_mode_states(deployment_ready: bool, outcome: list[PodOutcome]) -> list[ResourceState]:
    """The plain-Job release's resources in the manifest's order (Helm's install order), the Deployment's new
    pods ready or waiting, the Job after OUTCOME."""
    rendered = render({"migrator": {"mode": "job", "seed": {"enabled": True}}})
    objects = sorted(rendered.objects, key=lambda o: INSTALL_ORDER.index(o["kind"]))
    states = []
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Job":
            states.append(job_state(obj, job_status(obj["spec"], outcome)))
        elif obj["kind"] == "Deployment":
            states.append(ResourceState("Deployment", name, deployment_ready, False,
                                        "Current" if deployment_ready else "InProgress"))
        else:
            states.append(ResourceState(obj["kind"], name, True, False, "Current"))
    return states


def test_a_failed_migration_holds_job_modes_wait_until_the_timeout() -> None:
    """Documented in chart/README.md: in job mode a failed migration keeps the new app pods in `migrator
    wait`; Helm 3 checks the Deployment before the Job and stops there, Helm 4 waits for every resource that has
    not failed. Both end at --timeout; only Helm 4 names the Job."""
    states = job_mode_states(deployment_ready=False, outcome=[PodOutcome({"migrate": 1})])
    assert [s.kind for s in states].index("Deployment") < [s.kind for s in states].index("Job")
    assert helm3_wait(states, "apps") == WaitOutcome(TIMEOUT, at_timeout=True)
    helm4 = helm4_wait(states, "apps")
    assert helm4.at_timeout and "status: Failed, message: Job Failed. failed: 1/1" in helm4.error


def test_a_failed_job_beside_ready_app_pods_reaches_both_before_the_timeout() -> None:
    """A seed that fails after migrate (the schema is at head, so app pods start), or a rerun by runId: the
    Deployment is ready and both Helm versions report the failed Job without waiting out --timeout."""
    states = job_mode_states(deployment_ready=True, outcome=SEED_FAILURE)
    job = next(s for s in states if s.kind == "Job")
    assert helm3_wait(states, "apps") == WaitOutcome(f"job is failed: apps/{job.name}", at_timeout=False)
    assert not helm4_wait(states, "apps").at_timeout
