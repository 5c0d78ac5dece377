"""Many tenants on Kubernetes (issue 21, item 2): `migrator.tenants.shards` makes the migrate (and seed) Job an
Indexed Job whose pods share the tenants out, retried per shard.

Rendered by Helm's own engine; the rendered spec is run through the Job controller's rules for Indexed Jobs
(job_status.indexed_job_status) and read with each Helm's rule (helm_rules). test_lifecycle_emulation.py runs
the real images through the same rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_render import SCENARIOS, containers, env_of, pod_spec, render, render_error
from tests.chart.helm_rules import helm3_job_failed, helm4_job_status, hook_failed
from tests.chart.job_status import COMPLETE, FAILED, PodOutcome, indexed_job_status

TENANTS = SCENARIOS["hook-tenants-seed"]  # 5 shards, 2 at a time, 2 retries per shard, seeds on


def shard_env(container: dict[str, Any]) -> str | None:
    value = env_of(container).get("MIGRATOR_TENANT_SHARDS")
    return None if value is None else str(value)


def test_shards_make_the_migrate_and_seed_jobs_indexed() -> None:
    rendered = render(TENANTS)
    jobs = rendered.jobs()
    assert [j["metadata"]["name"] for j in jobs] == ["rel-migrator-migrate", "rel-migrator-seed"]
    for job in jobs:
        spec = job["spec"]
        assert {k: spec.get(k) for k in ("completionMode", "completions", "parallelism", "backoffLimitPerIndex",
                                        "backoffLimit")} == {
            "completionMode": "Indexed", "completions": 5, "parallelism": 2, "backoffLimitPerIndex": 2,
            "backoffLimit": None}
        assert pod_spec(job)["restartPolicy"] == "Never"  # what backoffLimitPerIndex requires
        assert [shard_env(c) for c in containers(pod_spec(job))] == ["5"]
        # Exit 7 (some tenants failed, the others done) is retried per shard: no rule decides it.
        assert all(7 not in rule.get("onExitCodes", {}).get("values", []) for rule in spec["podFailurePolicy"]["rules"])
    # Only the Jobs share the tenants out: the app pods' wait and helm test's status cover every tenant.
    assert [shard_env(c) for c in containers(pod_spec(rendered.deployment()))] == [None, None]
    assert [shard_env(c) for c in containers(pod_spec(rendered.test_pod()))] == [None]


def test_plain_job_mode_shares_out_every_step_of_its_pod() -> None:
    rendered = render(SCENARIOS["job-tenants"])
    [job] = rendered.jobs()
    assert job["spec"]["completions"] == 3 and job["spec"]["parallelism"] == 3  # null parallelism: every shard
    assert [shard_env(c) for c in containers(pod_spec(job))] == ["3"]
    seeded = render({**SCENARIOS["job-tenants"], "migrator": {"mode": "job", "tenants": {"shards": 3},
                                                              "seed": {"enabled": True}}})
    [job] = seeded.jobs()
    assert [(c["name"], shard_env(c)) for c in containers(pod_spec(job))] == [("migrate", "3"), ("seed", "3")]
    # A Job's spec is immutable: another shard count is another Job (its name hashes the spec).
    other = render({**SCENARIOS["job-tenants"], "migrator": {"mode": "job", "tenants": {"shards": 4}}})
    assert other.jobs()[0]["metadata"]["name"] != rendered.jobs()[0]["metadata"]["name"]


def test_one_shard_is_the_job_as_before() -> None:
    [job] = render({}).jobs()
    assert "completionMode" not in job["spec"] and "backoffLimitPerIndex" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 0
    assert [shard_env(c) for c in containers(pod_spec(job))] == [None]


@pytest.mark.parametrize(("values", "message"), [
    ({"migrator": {"mode": "initContainer", "tenants": {"shards": 2}}, "database": {"password": "pw"}},
     "migrator.tenants.shards: 2 pods can share the tenants out only as an Indexed Job: use mode hook or job"),
    ({"migrator": {"tenants": {"shards": 0}}}, "at '/migrator/tenants/shards': minimum: got 0, want 1"),
    ({"migrator": {"tenants": {"shards": "4"}}}, "at '/migrator/tenants/shards': got string, want integer"),
    ({"migrator": {"tenants": {"parallelism": 0}}}, "at '/migrator/tenants/parallelism': minimum: got 0, want 1"),
    ({"migrator": {"tenants": {"backoffLimitPerIndex": -1}}},
     "at '/migrator/tenants/backoffLimitPerIndex': minimum: got -1, want 0"),
    ({"migrator": {"tenants": {"shard": 2}}}, "additional properties 'shard' not allowed"),
])
def test_bad_tenant_values_are_refused(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


# --- the Job controller's verdict, and what Helm 3 and Helm 4 read ------------------------------------------

def ok() -> PodOutcome:
    return PodOutcome({"migrate": 0})


def exit_code(code: int) -> PodOutcome:
    return PodOutcome({"migrate": code})


def migrate_job(values: dict[str, Any] = TENANTS) -> dict[str, Any]:
    return render(values).jobs()[0]["spec"]  # type: ignore[no-any-return]


def test_a_shard_whose_tenants_failed_is_retried_and_the_others_complete() -> None:
    spec = migrate_job()
    # Shard 3 exits 7 (a tenant failed, its others done); its first retry finds that tenant fixed.
    status = indexed_job_status(spec, [(0, ok()), (1, ok()), (3, exit_code(7)), (2, ok()), (3, ok()), (4, ok())])
    assert (status.condition, status.completed_indexes, status.failed, status.failed_indexes) == (
        COMPLETE, {0, 1, 2, 3, 4}, 1, set())
    assert hook_failed(status) is False


def test_a_shard_that_keeps_failing_fails_the_job_once_every_shard_ended() -> None:
    spec = migrate_job()
    pods = [(0, exit_code(7)), (1, ok()), (0, exit_code(7)), (2, ok()), (0, exit_code(7))]
    status = indexed_job_status(spec, pods)
    assert status.failed_indexes == {0} and not status.condition, "shards 3 and 4 have not run yet"
    status = indexed_job_status(spec, [*pods, (3, ok()), (4, ok())])
    assert (status.condition, status.reason, status.failed) == (FAILED, "FailedIndexes", 3)
    assert status.completed_indexes == {1, 2, 3, 4}
    assert hook_failed(status) is True and helm4_job_status(status) == "Failed"
    # Helm 3's --wait-for-jobs compares status.failed with backoffLimit, which the API server leaves unlimited
    # for an Indexed Job with per-index limits: in job mode it never sees the failure (the notes say so).
    assert helm3_job_failed(migrate_job(SCENARIOS["job-tenants"]), status) is False


@pytest.mark.parametrize("code", [1, 2, 6])
def test_an_exit_no_retry_can_fix_fails_every_shard_at_once(code: int) -> None:
    spec = migrate_job()
    status = indexed_job_status(spec, [(0, ok()), (1, exit_code(code)),
                                       (2, PodOutcome({"migrate": 143}, deleted=True))])
    assert (status.condition, status.reason) == (FAILED, "PodFailurePolicy")
    assert status.message == f"Container migrate failed with exit code {code} matching FailJob rule"
    assert status.failed == 2, "the shard still running was deleted, and counts"


def test_an_evicted_shard_is_replaced_without_using_up_its_retries() -> None:
    spec = migrate_job()
    evicted = PodOutcome({"migrate": 143}, disrupted=True)
    status = indexed_job_status(spec, [(0, evicted), (0, evicted), (0, evicted), (0, exit_code(7)),
                                       (0, exit_code(7)), *((i, ok()) for i in range(5))])
    assert (status.condition, status.ignored, status.failed) == (COMPLETE, 3, 2)


def test_the_deadline_bounds_every_shard() -> None:
    spec = migrate_job()
    status = indexed_job_status(spec, [(0, ok()), (1, PodOutcome({"migrate": 143}, deadline=True)),
                                       (2, PodOutcome({"migrate": 143}, deadline=True))])
    assert (status.condition, status.reason, status.failed) == (FAILED, "DeadlineExceeded", 2)
