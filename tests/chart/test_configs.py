"""skaffold.yaml: valid for its tool, and consistent with the chart and images (the kind smoke workflow:
tests/smoke/test_smoke_workflow.py)."""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_render import ROOT, helm, render, tool

SKAFFOLD = ROOT / "skaffold.yaml"
# Kept in the repository with its source and license (tests/schemas/README.md): tests read nothing outside it.
SKAFFOLD_SCHEMA = ROOT / "tests" / "schemas" / "skaffold-v4beta13.json"
SKAFFOLD_SCHEMA_SHA256 = "60aa19bdc634299263af120abee0ca47162315511dd10788f19f4741147857b9"


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("check-jsonschema"), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def skaffold() -> dict[str, Any]:
    return yaml.safe_load(SKAFFOLD.read_text())  # type: ignore[no-any-return]


# --- skaffold.yaml --------------------------------------------------------------------------------------

def test_the_skaffold_schema_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256(SKAFFOLD_SCHEMA.read_bytes()).hexdigest()
    assert digest == SKAFFOLD_SCHEMA_SHA256
    assert SKAFFOLD_SCHEMA_SHA256 in (SKAFFOLD_SCHEMA.parent / "README.md").read_text()


def test_skaffold_yaml_matches_the_v4beta13_schema() -> None:
    proc = check_jsonschema("--schemafile", str(SKAFFOLD_SCHEMA), str(SKAFFOLD))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert skaffold()["apiVersion"] == "skaffold/v4beta13"  # the schema types it only as a string
    assert skaffold()["kind"] == "Config"


def test_the_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    config = skaffold()
    config["deploy"]["helm"]["releases"][0]["setValueTemplate"] = config["deploy"]["helm"]["releases"][0].pop(
        "setValueTemplates")
    bad = tmp_path / "skaffold.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = check_jsonschema("--schemafile", str(SKAFFOLD_SCHEMA), str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "setValueTemplate" in proc.stdout + proc.stderr


def test_skaffold_builds_both_images_from_image_dir() -> None:
    artifacts = {a["image"]: a for a in skaffold()["build"]["artifacts"]}
    assert set(artifacts) == {"migrator", "migrator-app"}
    for artifact in artifacts.values():
        assert artifact["context"] == "."
        dockerfile = ROOT / artifact["docker"]["dockerfile"]
        assert dockerfile.parent.parent == ROOT / "image"
        assert dockerfile.exists(), dockerfile
    assert skaffold()["build"]["local"]["useBuildkit"] is True


def skaffold_values(profile: str | None = None) -> dict[str, Any]:
    """The values Skaffold passes to `helm upgrade --install`: setValues, and setValueTemplates filled in as
    Skaffold fills them for locally built images (repository and tag)."""
    config = skaffold()
    assert "manifests" not in config or "helm" not in config["manifests"]  # helm template would drop the hooks
    if profile:
        [prof] = [p for p in config["profiles"] if p["name"] == profile]
        for patch in prof.get("patches", []):
            apply_patch(config, patch)
    [release] = config["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "chart"
    images = {"migrator": ("migrator", "abc123"), "migrator_app": ("migrator-app", "def456")}
    values: dict[str, Any] = {}
    for key, template in release["setValueTemplates"].items():
        match = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_(\w+)\}\}", template)
        assert match, f"{key}: {template}"
        repo, tag = images[match.group(2)]
        set_path(values, key, repo if match.group(1) == "REPO" else tag)
    for key, value in release.get("setValues", {}).items():
        set_path(values, key, value)
    return values


def set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[leaf] = value


def apply_patch(config: dict[str, Any], patch: dict[str, Any]) -> None:
    assert patch["op"] == "add", patch
    *parents, leaf = patch["path"].strip("/").split("/")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[leaf] = copy.deepcopy(patch["value"])


@pytest.mark.parametrize("profile", [None, "kind"])
def test_skaffold_values_render_the_chart(profile: str | None) -> None:
    values = skaffold_values(profile)
    rendered = render(values)
    images = {c["image"] for o in rendered.objects if o["kind"] in ("Deployment", "Job")
              for c in [*o["spec"]["template"]["spec"].get("initContainers", []),
                        *o["spec"]["template"]["spec"]["containers"]]}
    assert images == {"migrator:abc123", "migrator-app:def456"}
    assert rendered.jobs()[0]["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    if profile == "kind":
        assert values["database"]["existingSecret"] == {"name": "postgres", "passwordKey": "password"}
        policies = {c["imagePullPolicy"] for o in rendered.objects if o["kind"] in ("Deployment", "Job")
                    for c in o["spec"]["template"]["spec"]["containers"]}
        assert policies == {"Never"}
    h = helm()
    report = h.lint(str(ROOT / "chart"), values, strict=True, kube_version="v1.33.0")
    assert report["errors"] == [], report


def duration_seconds(text: str) -> int:
    """A Go duration as Helm's --timeout takes it (5m, 300s, 1m30s) in seconds."""
    parts = re.findall(r"(\d+)(h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_skaffold_passes_a_timeout_that_outlasts_the_job() -> None:
    """Helm must see the hook Job end (its deadline, then 60 s for the Job controller to stop its last pod) or
    it reports a bare timeout: skaffold passes --timeout to both helm install and helm upgrade."""
    flags = skaffold()["deploy"]["helm"]["flags"]
    jobs = render(skaffold_values()).jobs()
    assert len(jobs) == 2  # migrate, then seed
    for command in ("install", "upgrade"):
        [timeout] = [f.split("=", 1)[1] for f in flags[command] if f.startswith("--timeout=")]
        for job in jobs:
            assert duration_seconds(timeout) >= job["spec"]["activeDeadlineSeconds"] + 60, (command, timeout)


def test_kind_profile_loads_images_instead_of_pushing() -> None:
    [kind] = [p for p in skaffold()["profiles"] if p["name"] == "kind"]
    assert kind["build"]["local"]["push"] is False
    assert kind["activation"] == [{"kubeContext": "kind-migrator"}]
    patches = {p["path"]: p["value"] for p in kind["patches"]}
    assert patches["/deploy/kubeContext"] == "kind-migrator"
    [hook] = patches["/deploy/helm/hooks"]["before"]
    script = ROOT / hook["host"]["command"][0]
    assert script.exists() and script.stat().st_mode & 0o111
    assert (ROOT / "tests" / "smoke" / "postgres.yaml").exists()

