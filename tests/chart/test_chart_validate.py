"""The chart against the real checkers: `helm lint --strict`, kubernetes-validate --strict, checkov, the values
schema; and values.yaml documented line by line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_render import (
    CHART,
    KUBE_VERSIONS,
    SCENARIOS,
    deep_merge,
    helm,
    render,
    render_error,
    rollback_command,
    rollback_pod,
    tool,
)

# --- helm lint ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_strict(scenario: str, kube: str) -> None:
    report = helm().lint(str(CHART), SCENARIOS[scenario] or None, strict=True, kube_version=f"v{kube}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert report["errors"] == [] and problems == [], report
    assert report["total_charts_linted"] == 1


def test_helm_lint_reports_bad_values() -> None:
    """The lint above can fail: the same call reports values that break the schema."""
    report = helm().lint(str(CHART), {"migrator": {"mode": "sidecar"}}, strict=True, kube_version="v1.33.0")
    assert any("/migrator/mode" in e for e in report["errors"]), report


# --- kubernetes-validate --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every scenario rendered for install and upgrade, one file each."""
    out = tmp_path_factory.mktemp("manifests")
    files = []
    for name, values in SCENARIOS.items():
        for upgrade in (False, True):
            path = out / f"{name}-{'upgrade' if upgrade else 'install'}.yaml"
            path.write_text(yaml.safe_dump_all(render(values, upgrade=upgrade).objects, sort_keys=False))
            files.append(path)
    return files


@pytest.fixture(scope="module")
def rollback_pods(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Pod that NOTES.txt's `kubectl run` makes, for each scenario: not a chart manifest (checkov does not
    see it), but the API server must accept it all the same."""
    path = tmp_path_factory.mktemp("notes") / "rollback-pods.yaml"
    pods = [rollback_pod(rollback_command(render(values).notes), "20211103022310") for values in SCENARIOS.values()]
    path.write_text(yaml.safe_dump_all(pods, sort_keys=False))
    return path


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_kubernetes_validate_strict(manifests: list[Path], rollback_pods: Path, kube: str) -> None:
    files = [*manifests, rollback_pods]
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", kube, *map(str, files)],
                          capture_output=True, text=True, check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    documents = sum(len([d for d in yaml.safe_load_all(p.read_text()) if d]) for p in files)
    assert output.count(f"against version {kube.rsplit('.', 1)[0]}") == documents, output
    assert "ERROR" not in output and "WARN" not in output, output


def test_kubernetes_validate_rejects_a_bad_manifest(tmp_path: Path) -> None:
    """The check above can fail: a field the API does not know is rejected in strict mode."""
    job = render().jobs()[0]
    job["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True  # misspelt
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(job))
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSIONS[-1], str(path)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode != 0
    assert "readOnlyRootFilesytem" in proc.stdout + proc.stderr


# --- checkov --------------------------------------------------------------------------------------------

# Each skip the chart may declare, and the value that makes it necessary. The reasons are in the chart.
ALLOWED_SKIPS = {
    "CKV_K8S_15": "pullPolicy IfNotPresent (kind-loaded and air-gapped images cannot be pulled)",
    "CKV_K8S_43": "no digest given (development builds)",
    "CKV_K8S_35": "a Secret in the environment, asked for by the values",
    "CKV_K8S_8": "no liveness probe on the run-to-completion test pod",
    "CKV_K8S_9": "no readiness probe on the run-to-completion test pod",
    "CKV_K8S_40": "runAsUser left to the platform (OpenShift's SCC), asked for by the values",
}


def checkov(directory: Path) -> dict[str, Any]:
    home = directory.parent / f"{directory.name}-checkov-home"
    home.mkdir(exist_ok=True)
    proc = subprocess.run(
        [tool("checkov"), "--framework", "kubernetes", "--directory", str(directory), "--output", "json",
         "--skip-download", "--compact"],
        capture_output=True, text=True, check=False, timeout=600,
        # checkov would otherwise ask a server for guidelines and the latest version.
        env={"PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
             "HOME": str(home)})
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    if isinstance(report, list):
        [report] = [r for r in report if r["check_type"] == "kubernetes"]
    return report  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def checkov_report(manifests: list[Path]) -> dict[str, Any]:
    return checkov(manifests[0].parent)


def test_checkov_finds_nothing(checkov_report: dict[str, Any], manifests: list[Path]) -> None:
    summary = checkov_report["summary"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in checkov_report["results"]["failed_checks"]]
    assert failed == []
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0
    assert summary["passed"] > 500  # it did look: about 30 checks on each pod-bearing object
    documents = sum(len([d for d in yaml.safe_load_all(p.read_text()) if d]) for p in manifests)
    assert summary["resource_count"] >= documents  # every object was parsed (containers count on their own)


def test_checkov_skips_are_named_and_justified(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "the default values need the CKV_K8S_15 and CKV_K8S_43 skips"
    for check in skipped:
        assert check["check_id"] in ALLOWED_SKIPS, check["check_id"]
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check
    skipped_ids = {c["check_id"] for c in skipped}
    assert skipped_ids == set(ALLOWED_SKIPS)


def test_checkov_skips_only_what_the_values_need(tmp_path: Path) -> None:
    """With digests, pullPolicy Always and the password as a file, no skip is left on the app and the Job,
    and checkov still finds nothing."""
    always = {"pullPolicy": "Always"}
    values = {"migrator": {"image": always}, "app": {"image": always}}
    rendered = render(deep_merge(SCENARIOS["job-digests-seed"], values))
    for obj in [rendered.deployment(), *rendered.jobs()]:
        assert not [k for k in obj["metadata"].get("annotations") or {} if k.startswith("checkov.io/skip")]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(rendered.objects))
    report = checkov(tmp_path)
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    # Job mode renders no helm test pod, whose probes would be skipped (CKV_K8S_8, CKV_K8S_9).
    assert report["results"].get("skipped_checks", []) == []


def test_checkov_fails_a_weakened_chart(tmp_path: Path) -> None:
    """The check above can fail: the same run reports a privileged container."""
    job = render().jobs()[0]
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    failed = {c["check_id"] for c in checkov(tmp_path)["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed


# --- values.schema.json ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"migrator": {"mode": "sidecar"}}, "at '/migrator/mode': value must be one of 'hook', 'initContainer', 'job'"),
    ({"migrator": {"resources": {"requests": {}, "limits": {"cpu": "-1"}}}}, "/migrator/resources/limits/cpu"),
    ({"app": {"resources": {"requests": {"memory": -64}, "limits": {}}}}, "minimum: got -64, want 0"),
    ({"migrator": {"image": {"repository": ""}}}, "at '/migrator/image/repository': minLength: got 0, want 1"),
    ({"migrator": {"image": None}}, "at '/migrator': missing property 'image'"),
    ({"app": {"image": {"repository": None}}}, "at '/app/image': missing property 'repository'"),
    ({"migrator": {"image": {"tag": ""}}}, "at '/migrator/image/tag': minLength: got 0, want 1"),
    ({"migrator": {"job": {"backoffLimit": -1}}}, "at '/migrator/job/backoffLimit': minimum: got -1, want 0"),
    ({"migrator": {"job": {"nonRetryableExitCodes": [0]}}}, "nonRetryableExitCodes/0': minimum: got 0, want 1"),
    ({"migrator": {"wait": {"timeout": 0}}}, "at '/migrator/wait/timeout': minimum: got 0, want 1"),
    ({"migrator": {"config": {"logFormat": "xml"}}}, "at '/migrator/config/logFormat'"),
    ({"migrator": {"config": {"lockTimeout": "ten"}}}, "at '/migrator/config/lockTimeout'"),
    ({"database": {"ssl": {"mode": "verify"}}}, "at '/database/ssl/mode'"),
    ({"database": {"url": "mysql://x@y/z"}}, "at '/database/url'"),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"migrator": {"modes": "hook"}}, "additional properties 'modes' not allowed"),
])
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(("values", "message"), [
    ({"database": {"url": "postgresql://app:hunter2@db/app"}}, "database.url must not carry a password"),
    ({"database": {"url": "postgresql://app@db/app?password=hunter2"}}, "database.url must not carry a password"),
    ({"database": {"password": "x", "existingSecret": {"name": "s", "passwordKey": "p"}}}, "not both"),
    ({"database": {"existingSecret": {"name": "s"}}}, "set urlKey"),
    ({"database": {"existingSecret": {"passwordKey": "p"}}}, "need database.existingSecret.name"),
    ({"database": {"url": ""}}, "set database.url, or database.existingSecret.name with urlKey"),
    ({"database": {"ssl": {"ca": "-----BEGIN CERTIFICATE-----", "caSecret": {"name": "c"}}}}, "ca or caSecret"),
    ({"migrator": {"image": {"tag": "", "digest": ""}}}, "minLength"),
])
def test_inconsistent_values_fail_with_one_clear_line(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert message in error, error
    assert "hunter2" not in error


# --- values.yaml: every value documented and typed -----------------------------------------------------

def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Paths of the values a user sets: nested keys down to scalars, lists, and free-form maps."""
    if isinstance(node, dict) and node and prefix not in FREE_FORM:
        return [p for k, v in node.items() for p in leaf_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


FREE_FORM = {"migrator.resources", "app.resources", "podSecurityContext", "containerSecurityContext"}


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    definitions = schema["definitions"]
    node = schema
    for part in path.split("."):
        while "$ref" in node or ("allOf" in node and "properties" not in node):
            ref = node["$ref"] if "$ref" in node else node["allOf"][0]["$ref"]
            node = definitions[ref.rsplit("/", 1)[1]]
        node = node["properties"][part]
    return node


def test_every_value_is_documented_and_typed() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    documented = re.findall(r"^\s*## @param (\S+) \S", text, flags=re.MULTILINE)
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(leaf_paths(values))
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in documented:
        node = schema_node(schema, path)
        assert node.get("description") or "$ref" in node or "allOf" in node, path


def test_each_param_comment_sits_right_above_its_key() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)## @param (\S+) ", line)
        if match:
            key = match.group(2).rsplit(".", 1)[-1]
            assert re.match(rf"^{match.group(1)}{re.escape(key)}:", lines[i + 1]), (i + 1, line)


def test_default_values_render_and_match_the_schema() -> None:
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.values)
        assert chart.metadata["apiVersion"] == "v2"
        assert chart.values["migrator"]["mode"] == "hook"
    assert render().jobs()
