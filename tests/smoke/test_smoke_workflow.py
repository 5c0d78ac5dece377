"""The kind smoke workflow (.github/workflows/kind-smoke.yml) without running it: valid for GitHub Actions
(check-jsonschema's built-in workflow schema), a matrix that covers the oldest Kubernetes the chart claims and
the newest, each with Helm 3.18 and Helm 4, and no image pulled where a rate limit can refuse it without a
fallback (tests/smoke/pull_image.py, whose own logic is tested here with the real Docker client)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_render import tool
from tests.docker import require_docker
from tests.smoke.pull_image import PullError, candidates, local_name, pull, split

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "kind-smoke.yml"
DIGEST = re.compile(r"^kindest/node:v(\d+)\.(\d+)\.\d+@sha256:[0-9a-f]{64}$")


def workflow() -> dict[str, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def job() -> dict[str, Any]:
    [smoke] = workflow()["jobs"].values()
    return dict(smoke)


def matrix() -> list[dict[str, str]]:
    return list(job()["strategy"]["matrix"]["include"])


def step(uses: str | None = None, name: str | None = None) -> dict[str, Any]:
    matches = [s for s in job()["steps"] if (uses is not None and s.get("uses", "").startswith(uses))
               or (name is not None and s.get("name") == name)]
    assert len(matches) == 1, (uses, name)
    return dict(matches[0])


def scripts() -> str:
    return "\n".join(s.get("run", "") for s in job()["steps"])


def minor(version: str) -> tuple[int, int]:
    match = re.match(r"v?(\d+)\.(\d+)", version)
    assert match, version
    return int(match.group(1)), int(match.group(2))


def kube_versions() -> list[str]:
    """The oldest and newest Kubernetes of the kind-smoke workflow's matrix."""
    versions = sorted({minor(row["kubernetes"]) for row in matrix()})
    return [f"{major}.{minor_}.0" for major, minor_ in (versions[0], versions[-1])]


def chart_minimum_helm() -> tuple[int, int]:
    """The oldest Helm the chart supports: chart/Chart.yaml says which and why ("Helm 3.18.0 or later")."""
    [minimum] = re.findall(r"Helm (3\.\d+)\.0 or later", (ROOT / "chart" / "Chart.yaml").read_text())
    return minor(minimum)


def chart_minimum_kubernetes() -> tuple[int, int]:
    """The oldest Kubernetes minor chart/Chart.yaml's kubeVersion (">=1.29.0-0") admits."""
    constraint = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.0(-0)?", constraint)
    assert match, f"kubeVersion {constraint!r} is not a plain lower bound"
    return int(match.group(1)), int(match.group(2))


# --- the schema -----------------------------------------------------------------------------------------

def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_workflow_is_valid_for_github_actions() -> None:
    proc = validate(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    """The check above can fail: a job without runs-on is refused."""
    broken = workflow()
    del broken["jobs"]["smoke"]["runs-on"]
    path = tmp_path / "kind-smoke.yml"
    path.write_text(yaml.safe_dump(broken))
    proc = validate(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "runs-on" in proc.stdout + proc.stderr


# --- the matrix -----------------------------------------------------------------------------------------

def test_the_matrix_covers_the_oldest_and_newest_kubernetes_with_the_oldest_helm_and_helm_4() -> None:
    rows = matrix()
    kubernetes = sorted({minor(row["kubernetes"]) for row in rows})
    assert kubernetes[0] == chart_minimum_kubernetes()
    assert chart_minimum_helm() == (3, 18)
    for version in (kubernetes[0], kubernetes[-1]):
        helms = {minor(row["helm"]) for row in rows if minor(row["kubernetes"]) == version}
        assert chart_minimum_helm() in helms, f"Kubernetes {version}: not the chart's oldest Helm"
        assert any(major == 4 for major, _ in helms), f"Kubernetes {version}: no Helm 4"


# The newest major of each action (checked against their repositories' tags); node24 runtimes.
ACTIONS = {"actions/checkout": "v7", "actions/setup-python": "v7", "azure/setup-helm": "v5",
           "helm/kind-action": "v1.14.0"}


def test_the_workflow_uses_current_actions() -> None:
    uses = dict(s["uses"].split("@", 1) for s in job()["steps"] if "uses" in s)
    assert uses == ACTIONS


def test_each_row_pins_a_node_image_of_its_kubernetes_and_a_matching_kubectl() -> None:
    for row in matrix():
        match = DIGEST.match(row["node_image"])
        assert match, f"{row['node_image']}: not a kindest/node image pinned by digest"
        assert (int(match.group(1)), int(match.group(2))) == minor(row["kubernetes"]), row
        assert minor(row["kubectl"]) == minor(row["kubernetes"]), f"kubectl's version skew: {row}"
        assert re.fullmatch(r"v\d+\.\d+\.\d+", row["kind"]), row
        assert re.fullmatch(r"v\d+\.\d+\.\d+", row["helm"]), row
    kind = step(uses="helm/kind-action")["with"]
    assert kind["version"] == "${{ matrix.kind }}" and kind["kubectl_version"] == "${{ matrix.kubectl }}"
    assert step(uses="azure/setup-helm")["with"]["version"] == "${{ matrix.helm }}"


def test_the_workflow_runs_the_cluster_tests_on_its_cluster() -> None:
    env = job()["env"]
    kind = step(uses="helm/kind-action")["with"]
    assert kind["cluster_name"] == env["MIGRATOR_KIND_CLUSTER"]
    assert f"kind_load.py --name {env['MIGRATOR_KIND_CLUSTER']} " in scripts()
    assert "bash image/build.sh all" in step(name="Build the images")["run"]
    assert "python -m pytest tests/smoke -m cluster" in step(name="Smoke tests")["run"]


# --- no pull a rate limit can refuse --------------------------------------------------------------------

def pulled() -> list[str]:
    """The references the workflow pulls through pull_image.py, with its environment filled in."""
    env = {**job()["env"], **step(name="Pull the images from mirrors").get("env", {})}
    found = re.findall(r"pull_image\.py (\S+)", step(name="Pull the images from mirrors")["run"])
    out = []
    for token in found:
        value = token.strip("'\")")
        variable = re.fullmatch(r"\$\{?(\w+)\}?", value)
        out.append(env[variable.group(1)] if variable else value)
    return out


def test_every_image_comes_from_a_mirror_first() -> None:
    pulls = pulled()
    assert pulls[0] == "${{ matrix.node_image }}"
    # The node image kind starts from is the one pulled (kind pulls only what is missing locally).
    assert step(uses="helm/kind-action")["with"]["node_image"] == "${{ steps.pull.outputs.node_image }}"
    assert step(uses="helm/kind-action")["with"].get("registry", "false") == "false"  # it would pull registry:2
    # image/build.sh's base, present before it builds.
    official = re.search(r"^OFFICIAL_BASE=(\S+)$", (ROOT / "image" / "build.sh").read_text(), re.MULTILINE)
    assert official and official.group(1) in pulls
    # Every image of the manifests the tests apply is pulled, loaded into the node, and never pulled there.
    load = step(name="Load the images into kind")["run"]
    for doc in yaml.safe_load_all((ROOT / "tests" / "smoke" / "postgres.yaml").read_text()):
        for container in doc["spec"]["template"]["spec"]["containers"] if doc["kind"] == "Deployment" else []:
            assert container["image"] == job()["env"]["POSTGRES_IMAGE"] and "POSTGRES_IMAGE" in load
            assert container["image"] in pulls
            assert container["imagePullPolicy"] in ("IfNotPresent", "Never")
    assert "docker pull" not in scripts()
    assert "kind load docker-image" not in scripts()


def test_mirrors_come_first_and_a_digest_is_kept() -> None:
    assert candidates("postgres:16") == [
        "mirror.gcr.io/library/postgres:16", "public.ecr.aws/docker/library/postgres:16",
        "docker.io/library/postgres:16"]
    node = "kindest/node:v1.36.1@sha256:" + "a" * 64
    assert candidates(node) == ["mirror.gcr.io/kindest/node@sha256:" + "a" * 64,
                                "docker.io/kindest/node@sha256:" + "a" * 64]
    assert local_name(node) == "kindest/node:v1.36.1"
    assert local_name("python:3.12-slim") == "python:3.12-slim"
    assert local_name("docker.io/library/postgres") == "postgres:latest"
    assert split("postgres:16") == ("library/postgres", "16", None)


def test_an_image_of_another_registry_is_refused() -> None:
    with pytest.raises(PullError, match="not a Docker Hub image"):
        candidates("ghcr.io/example/migrator:0.1.0")


@pytest.mark.docker
def test_a_failed_pull_names_every_source_in_one_line() -> None:
    """With the real Docker client: an image no registry has fails at every source, each named once."""
    docker = require_docker()
    reference = "migrator-tests-no-such-namespace/no-such-image:0"
    with pytest.raises(PullError) as caught:
        pull(reference, docker_binary=docker, timeout=120)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    for candidate in candidates(reference):
        assert message.count(candidate) == 1, message
