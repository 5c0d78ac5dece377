"""The chart under GitOps tools (issue 17, items 6 and 11): `helm template | kubectl apply`, Argo CD (replayed
with gitops-engine's hook and sync-wave rules, argocd_emulation.py) and Flux's helm-controller; and the
database made by the same release.

Rendered offline by Helm's own engine; no cluster is involved.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chart.argocd_emulation import sync, tasks
from tests.chart.chart_render import (
    HOOK_SCENARIOS,
    RELEASE,
    SCENARIOS,
    deep_merge,
    external_objects,
    pod_spec,
    recipe,
    render,
    render_error,
)

FULLNAME = f"{RELEASE}-migrator"
Key = tuple[str, str]


# --- helm template | kubectl apply ----------------------------------------------------------------------

POD_MUTABLE = ("image",)  # a Pod's containers may change their image in place, nothing else of the spec


def apply_refusal(live: dict[str, Any], new: dict[str, Any]) -> str:
    """The API server's refusal of `kubectl apply` changing an immutable field, or '': a Job's pod template, a
    Pod's spec beyond its containers' images."""
    if new["kind"] == "Job" and live["spec"]["template"] != new["spec"]["template"]:
        return f"Job {new['metadata']['name']}: spec.template: field is immutable"
    if new["kind"] == "Pod":
        def without_images(spec: dict[str, Any]) -> dict[str, Any]:
            spec = copy.deepcopy(spec)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                for key in POD_MUTABLE:
                    container.pop(key, None)
            return spec
        if without_images(live["spec"]) != without_images(new["spec"]):
            return f"Pod {new['metadata']['name']}: spec: Forbidden: pod updates may not change fields"
    return ""


def kubectl_apply_twice(values: dict[str, Any]) -> list[str]:
    """`helm template` (hooks and tests included, as it prints them) piped to `kubectl apply`, with image v1,
    then with image v2: the refusals of the second apply."""
    live: dict[Key, dict[str, Any]] = {}
    refusals: list[str] = []
    for tag in ("v1", "v2"):
        for obj in render(deep_merge(values, {"migrator": {"image": {"tag": tag}}})).objects:
            key = (obj["kind"], obj["metadata"]["name"])
            refusal = apply_refusal(live[key], obj) if key in live else ""
            if refusal:
                refusals.append(refusal)
            else:
                live[key] = obj
    return refusals


def test_job_mode_applies_cleanly_with_kubectl_again_and_again() -> None:
    """The plain Job is named after its spec, and job mode renders no test pod: a new image applies."""
    assert render({"migrator": {"mode": "job"}}).kind("Pod") == []
    assert kubectl_apply_twice({"migrator": {"mode": "job"}}) == []


def test_the_test_pod_would_break_the_second_apply() -> None:
    """What job mode's default avoids (and `helm template --skip-tests` avoids in the other modes): the test
    pod, applied as a plain Pod, cannot take the next image's spec."""
    refusals = kubectl_apply_twice({"migrator": {"mode": "job", "test": {"enabled": True}}})
    assert refusals == [f"Pod {FULLNAME}-test-schema: spec: Forbidden: pod updates may not change fields"]


def test_hook_mode_is_not_for_kubectl_apply() -> None:
    """Documented: hook mode's Jobs keep their names, so a second apply with a new image is refused."""
    assert f"Job {FULLNAME}-migrate: spec.template: field is immutable" in kubectl_apply_twice({})


# --- Argo CD: hook mode ---------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", HOOK_SCENARIOS)
def test_argo_cd_runs_hook_mode_as_presync_hooks(scenario: str) -> None:
    """The migrate (and seed) Jobs are PreSync hooks, run before anything of the release is applied, reading
    only what existed before; the test pod has no Argo CD phase and is never applied."""
    values = SCENARIOS[scenario]
    rendered = render(values)
    plan = tasks(rendered.objects)
    presync = [t.key for t in plan if t.phase == "PreSync"]
    assert [k for k in presync if k[0] == "Job"] == [(j["kind"], j["metadata"]["name"]) for j in rendered.jobs()]
    assert all(t.phase == "Sync" for t in plan if t.key not in presync)
    result = sync(rendered.objects, external_objects(values))
    assert result.outcome == "Succeeded", result.message
    assert ("Pod", f"{FULLNAME}-test-schema") not in result.applied
    assert result.applied.index(("Job", f"{FULLNAME}-migrate")) < result.applied.index(("Deployment", FULLNAME))


def test_a_failed_presync_job_leaves_the_app_alone() -> None:
    rendered = render({})
    result = sync(rendered.objects, external_objects({}), job_outcome=lambda job: "Failed")
    assert result.outcome == "Failed" and ("Deployment", FULLNAME) not in result.applied


# --- Argo CD: job mode and sync waves -------------------------------------------------------------------

def test_argo_cd_applies_the_plain_job_between_its_inputs_and_the_app() -> None:
    values = SCENARIOS["job-argocd-waves"]
    rendered = render(values)
    waves = {t.key: t.wave for t in tasks(rendered.objects)}
    [job] = rendered.jobs()
    assert waves[("Job", job["metadata"]["name"])] == 0
    assert waves[("ServiceAccount", pod_spec(job)["serviceAccountName"])] == -1
    for (kind, name), number in waves.items():
        if kind in ("Secret", "ServiceAccount") or name in (f"{FULLNAME}-egress", f"{FULLNAME}-migrator"):
            assert number == -1, (kind, name)
        if kind in ("Deployment", "Service") or name == f"{FULLNAME}-app":
            assert number == 1, (kind, name)
    result = sync(rendered.objects, external_objects(values))
    assert result.outcome == "Succeeded", result.message
    failed = sync(rendered.objects, external_objects(values), job_outcome=lambda job: "Failed")
    assert failed.outcome == "Failed" and ("Deployment", FULLNAME) not in failed.applied


def test_job_mode_without_waves_is_one_apply() -> None:
    """Without sync waves Argo CD applies everything at once and ends the sync there; app pods wait for the
    schema in `migrator wait`."""
    rendered = render({"migrator": {"mode": "job"}})
    assert {t.wave for t in tasks(rendered.objects)} == {0}
    assert sync(rendered.objects, set(), job_outcome=lambda job: "Failed").outcome == "Succeeded"


def test_a_wave_on_the_job_alone_deadlocks_and_is_refused() -> None:
    """Chart 0.2.0's recipe: `argocd.argoproj.io/sync-wave: "-1"` on the Job only (through job.annotations):
    the Job waits in wave -1 for the Secret and ServiceAccount of wave 0, which Argo CD applies only after it."""
    values = {"migrator": {"mode": "job"}, "database": {"password": "pw"}}
    rendered = render(values)
    [job] = rendered.jobs()
    job["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = "-1"
    result = sync(rendered.objects, set())
    assert result.outcome == "Stuck"
    assert result.message == (f"Sync wave -1: Job/{job['metadata']['name']} waits for "
                              f"Secret/{FULLNAME}-database, ServiceAccount/{FULLNAME}")
    error = render_error(deep_merge(values, {"migrator": {"job": {"annotations": {
        "argocd.argoproj.io/sync-wave": "-1"}}}}))
    assert "migrator.job.annotations: set the Job's Argo CD sync wave with migrator.job.syncWave" in error


# --- the database made by the same release --------------------------------------------------------------

def same_release_database(mode: str) -> tuple[list[dict[str, Any]], dict[Key, list[Key]]]:
    """The README's recipe in MODE: a CloudNativePG Cluster in extraDeploy, whose operator makes the Secret the
    migrator reads once the Cluster is healthy."""
    values = deep_merge(recipe("same-release-database"), {"migrator": {"mode": mode}})
    rendered = render(values)
    [cluster] = rendered.kind("Cluster")
    # CloudNativePG names the Secret of the app's role after the Cluster.
    operators = {("Cluster", cluster["metadata"]["name"]): [("Secret", f"{cluster['metadata']['name']}-app")]}
    return rendered.objects, operators


def test_job_mode_migrates_a_database_made_by_the_same_release() -> None:
    objects, operators = same_release_database("job")
    result = sync(objects, set(), operators=operators)
    assert result.outcome == "Succeeded", result.message
    job = next(k for k in result.applied if k[0] == "Job")
    assert result.applied.index(("Cluster", "myapp-db")) < result.applied.index(job)


def test_hook_mode_cannot_migrate_a_database_made_by_the_same_release() -> None:
    """Documented: its PreSync Job waits for the operator's Secret, which comes only after the Sync phase
    applied the Cluster."""
    objects, operators = same_release_database("hook")
    result = sync(objects, set(), operators=operators)
    assert result.outcome == "Stuck" and "waits for Secret/myapp-db-app" in result.message


# --- the recipes of chart/README.md ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["argocd-hook", "argocd-job"])
def test_argo_cd_recipes_sync(name: str) -> None:
    application = recipe(name)
    assert application["kind"] == "Application" and application["spec"]["source"]["path"] == "chart"
    values = application["spec"]["source"]["helm"]["valuesObject"]
    rendered = render(values)
    assert sync(rendered.objects, external_objects(values)).outcome == "Succeeded"


def test_flux_recipe_runs_the_hooks_within_its_timeout() -> None:
    release = recipe("flux")
    spec = release["spec"]
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2" and spec["chart"]["spec"]["chart"] == "./chart"
    rendered = render(spec["values"])
    [job] = rendered.jobs()
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    minutes = int(spec["timeout"].removesuffix("m"))
    assert minutes * 60 >= job["spec"]["activeDeadlineSeconds"] + 90
    assert spec["upgrade"]["remediation"]["remediateLastFailure"] is False
    assert spec["test"]["enable"] is True and rendered.kind("Pod")
    assert "disableHooks" not in spec["install"] and "disableHooks" not in spec["upgrade"]
