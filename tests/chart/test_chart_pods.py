"""Every migrator pod takes the platform's sidecars, extra containers and volumes, labels and annotations,
scheduling and pull settings (issue 17, items 7 and 8). test_pod_emulation.py runs a real sidecar in each mode.

Rendered offline by Helm's own engine; no cluster is involved.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_render import (
    RELEASE,
    SCENARIOS,
    SIDECAR,
    Rendered,
    containers,
    deep_merge,
    env_of,
    is_migrator,
    pod_spec,
    render,
    rollback_command,
    rollback_pod,
)

FULLNAME = f"{RELEASE}-migrator"
PLATFORM = SCENARIOS["hook-platform"]
SCHEDULING = ("nodeSelector", "tolerations", "affinity", "priorityClassName", "topologySpreadConstraints")
MODES = ["hook", "job"]


def migrator_pods(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The pods that run the migrator on their own: the Jobs' templates, the test pod, the rollback pod."""
    out = {f"Job/{j['metadata']['name']}": {"kind": "Pod", **j["spec"]["template"]} for j in rendered.jobs()}
    out |= {f"Pod/{p['metadata']['name']}": p for p in rendered.kind("Pod")}
    out["rollback"] = rollback_pod(rollback_command(rendered.notes), "base")
    return out


def platform(mode: str) -> Rendered:
    values = deep_merge(PLATFORM, {"migrator": {"mode": mode, "seed": {"enabled": True}, "test": {"enabled": True}}})
    if mode == "job":  # the hook-only CA and credentials rules do not apply; keep the scenario otherwise
        values = deep_merge(values, {"database": {"existingSecret": {"name": "pg-app"}}})
    return render(values)


@pytest.mark.parametrize("mode", MODES)
def test_sidecars_start_first_and_extra_init_containers_next(mode: str) -> None:
    extra_init = {"name": "wait-for-vault", "image": "example.com/vault-agent:1", "args": ["--once"]}
    values = deep_merge(PLATFORM, {"migrator": {"mode": mode, "seed": {"enabled": True}, "test": {"enabled": True},
                                                "extraInitContainers": [extra_init]}})
    rendered = render(values)
    pods = migrator_pods(rendered)
    assert len(pods) == (4 if mode == "hook" else 3)  # migrate, seed (hook) or migrate+seed (job), test, rollback
    for name, pod in pods.items():
        spec = pod_spec(pod)
        init = spec["initContainers"]
        assert init[0] == {**SIDECAR, "restartPolicy": "Always"}, name
        assert init[1] == extra_init, name  # runs to completion: no restartPolicy
        assert [c["name"] for c in init[2:]] == (["migrate"] if name.startswith("Job/") and mode == "job" else [])
        assert all(is_migrator(c) for c in spec["containers"]) and len(spec["containers"]) == 1


@pytest.mark.parametrize("mode", ["hook", "job", "initContainer"])
def test_app_sidecars_come_before_the_migrators_init_containers(mode: str) -> None:
    """A database proxy in app.sidecars serves `wait` (and in initContainer mode `migrate`) too."""
    rendered = render(deep_merge(PLATFORM, {"migrator": {"mode": mode},
                                            "database": {"existingSecret": {"name": "pg-app"}}}))
    init = pod_spec(rendered.deployment())["initContainers"]
    expected = (["migrate"] if mode == "initContainer" else []) + ["wait-for-schema"]
    assert init[0] == {**SIDECAR, "restartPolicy": "Always"}
    assert [c["name"] for c in init[1:]] == expected
    assert [c["name"] for c in pod_spec(rendered.deployment())["containers"]] == ["app"]


@pytest.mark.parametrize("mode", MODES)
def test_labels_annotations_and_volumes_reach_every_migrator_pod(mode: str) -> None:
    rendered = platform(mode)
    for name, pod in migrator_pods(rendered).items():
        assert pod["metadata"]["labels"]["team"] == "payments", name
        assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, name  # the chart's stay
        spec = pod_spec(pod)
        assert {"name": "certs", "emptyDir": {}} in spec["volumes"], name
        for container in (c for c in containers(spec) if is_migrator(c)):
            assert {"name": "certs", "mountPath": "/certs"} in container["volumeMounts"], name
    for name, pod in migrator_pods(rendered).items():  # the rollback pod too: --overrides sets its metadata
        assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true", name
    app = {"kind": "Pod", **rendered.deployment()["spec"]["template"]}
    assert "team" not in app["metadata"]["labels"]  # the migrator's pod labels are the migrator's
    wait = next(c for c in pod_spec(app)["initContainers"] if c["name"] == "wait-for-schema")
    assert {"name": "certs", "mountPath": "/certs"} in wait["volumeMounts"]
    assert {"name": "certs", "emptyDir": {}} in pod_spec(app)["volumes"]


@pytest.mark.parametrize("mode", MODES)
def test_scheduling_reaches_every_migrator_pod(mode: str) -> None:
    rendered = platform(mode)
    migrator = PLATFORM["migrator"]
    for name, pod in migrator_pods(rendered).items():
        spec = pod_spec(pod)
        assert {key: spec[key] for key in SCHEDULING} == {key: migrator[key] for key in SCHEDULING}, name
        assert spec["imagePullSecrets"] == [{"name": "regcred"}], name
    app = pod_spec(rendered.deployment())
    assert app["priorityClassName"] == "web" and not {"nodeSelector", "tolerations", "affinity"} & set(app)
    assert app["imagePullSecrets"] == [{"name": "regcred"}]


def test_init_container_mode_schedules_the_migrator_as_an_app_pod() -> None:
    values = {"migrator": {"mode": "initContainer", "nodeSelector": {"pool": "batch"}},
              "app": {"nodeSelector": {"pool": "web"}}}
    assert pod_spec(render(values).deployment())["nodeSelector"] == {"pool": "web"}


def test_a_mirror_registry_replaces_every_images_registry() -> None:
    rendered = platform("hook")
    pods = [*migrator_pods(rendered).values(), rendered.deployment()]
    images = {c["image"] for pod in pods for c in containers(pod_spec(pod)) if is_migrator(c) or c["name"] == "app"}
    assert images == {"mirror.example.com/migrator:dev", "mirror.example.com/migrator-app:dev"}
    for pod in migrator_pods(rendered).values():
        for container in (c for c in containers(pod_spec(pod)) if is_migrator(c)):
            assert env_of(container)["MIGRATOR_IMAGE"] == "mirror.example.com/migrator:dev"
    assert "--image=mirror.example.com/migrator:dev" in rollback_command(rendered.notes)
    ghcr = render({"migrator": {"image": {"registry": "ghcr.io/example"}},
                   "global": {"imageRegistry": "mirror.example.com"}})
    assert ghcr.jobs()[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example.com/migrator:dev"
    plain = render({"migrator": {"image": {"registry": "ghcr.io/example"}}})
    assert plain.jobs()[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/migrator:dev"
