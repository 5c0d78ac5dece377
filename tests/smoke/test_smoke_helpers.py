"""The smoke tests' helpers that need no cluster: loading images into kind (the docker half runs here, with
the real engine), reading rollouts and Jobs from API JSON, and the NOTES command turned into pods."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.chart.chart_render import render, rollback_pod, tool
from tests.smoke.kind_load import (
    LoadError,
    load_argv,
    main,
    platform_of,
    save_argv,
    save_image,
    uses_containerd_store,
)
from tests.smoke.kube_state import (
    detached_argv,
    init_container_restarts,
    job_outcome,
    notes_rollback_argv,
    rollout_problem,
)
from tests.smoke.test_smoke_workflow import kube_versions

# --- kind_load ------------------------------------------------------------------------------------------

CLASSIC_INFO = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]}
CONTAINERD_INFO = {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}


def test_the_containerd_image_store_is_recognised() -> None:
    assert uses_containerd_store(CONTAINERD_INFO)
    assert not uses_containerd_store(CLASSIC_INFO)
    assert not uses_containerd_store({"DriverStatus": None})


def test_save_names_the_platform_only_when_asked() -> None:
    archive = Path("/tmp/x.tar")
    assert save_argv("docker", "migrator:dev", archive, "linux/arm64/v8") == [
        "docker", "image", "save", "--platform", "linux/arm64/v8", "--output", "/tmp/x.tar", "migrator:dev"]
    assert save_argv("docker", "migrator:dev", archive, None) == [
        "docker", "image", "save", "--output", "/tmp/x.tar", "migrator:dev"]
    assert load_argv("kind", archive, "migrator") == [
        "kind", "load", "image-archive", "/tmp/x.tar", "--name", "migrator"]
    assert platform_of({"Os": "linux", "Architecture": "amd64"}) == "linux/amd64"
    assert platform_of({"Os": "linux", "Architecture": "arm64", "Variant": "v8"}) == "linux/arm64/v8"


def test_a_failing_step_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as caught:
        save_image("migrator:dev", tmp_path / "x.tar", docker=str(tmp_path / "no-docker"))
    assert len(str(caught.value).splitlines()) == 1
    assert "did not finish" in str(caught.value)


def test_the_script_wants_a_cluster_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["migrator:dev"])
    assert caught.value.code == 2
    assert "--name" in capsys.readouterr().err


@pytest.mark.docker
@pytest.mark.slow
def test_save_writes_an_archive_kind_can_import(migrator_image: str, tmp_path: Path) -> None:
    """The docker half, with this machine's engine: the archive holds the image under its name."""
    archive = tmp_path / "image.tar"
    argv = save_image(migrator_image, archive)
    assert argv[-1] == migrator_image
    # docker save writes manifest.json under both image stores (beside the OCI index.json in OCI archives, as
    # moby/moby#44833 shows for the containerd store): its RepoTags name the image.
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [entry.get("RepoTags") for entry in manifest] == [[migrator_image]]


# --- kube_state: rollouts -------------------------------------------------------------------------------

def deployment(replicas: int = 2, revision: str = "2", generation: int = 3, observed: int = 3) -> dict[str, Any]:
    return {"metadata": {"name": "rel-migrator", "uid": "d-1", "generation": generation,
                         "annotations": {"deployment.kubernetes.io/revision": revision}},
            "spec": {"replicas": replicas}, "status": {"observedGeneration": observed}}


def replica_set(revision: str, template_hash: str) -> dict[str, Any]:
    return {"metadata": {"name": f"rel-migrator-{template_hash}", "labels": {"pod-template-hash": template_hash},
                         "annotations": {"deployment.kubernetes.io/revision": revision},
                         "ownerReferences": [{"kind": "Deployment", "uid": "d-1"}]}}


def pod(name: str, template_hash: str, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"pod-template-hash": template_hash}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": "Running",
                                         "conditions": [{"type": "Ready", "status": str(ready)}]}}


SETS = [replica_set("1", "old"), replica_set("2", "new")]


def test_a_rollout_is_over_when_only_ready_new_pods_are_left() -> None:
    assert rollout_problem(deployment(), SETS, [pod("a", "new"), pod("b", "new")]) is None


@pytest.mark.parametrize(("dep", "pods", "problem"), [
    (deployment(), [pod("a", "new"), pod("b", "new"), pod("c", "old")], "pods of an older ReplicaSet remain: c"),
    (deployment(), [pod("a", "new"), pod("b", "new", deleting=True)], "pods are terminating: b"),
    (deployment(), [pod("a", "new"), pod("b", "new", ready=False)], "1 of 2 pods ready, 2 exist"),
    (deployment(), [pod("a", "new")], "1 of 2 pods ready, 1 exist"),
    (deployment(observed=2), [pod("a", "new"), pod("b", "new")], "has not seen the newest spec"),
    (deployment(revision="3"), [pod("a", "new"), pod("b", "new")], "no ReplicaSet of the Deployment's newest"),
], ids=["old-pod-left", "terminating", "not-ready", "too-few", "unobserved", "no-replicaset"])
def test_a_rollout_is_not_over(dep: dict[str, Any], pods: list[dict[str, Any]], problem: str) -> None:
    """What Helm 3's --wait lets through: an old ReplicaSet's pod still listed after it returned."""
    found = rollout_problem(dep, SETS, pods)
    assert found is not None and problem in found, found


def test_a_replica_set_of_another_deployment_is_not_current() -> None:
    foreign = replica_set("2", "new")
    foreign["metadata"]["ownerReferences"] = [{"kind": "Deployment", "uid": "other"}]
    assert rollout_problem(deployment(), [foreign], [pod("a", "new"), pod("b", "new")]) is not None


def test_job_outcome_and_init_container_restarts() -> None:
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert job_outcome({"status": {"conditions": [{"type": "FailureTarget", "status": "True"},
                                                  {"type": "Failed", "status": "True"}]}}) == "Failed"
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}) is None
    assert job_outcome({"status": {}}) is None
    status = {"status": {"initContainerStatuses": [
        {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        {"name": "wait-for-schema", "restartCount": 3, "state": {"running": {}}}]}}
    assert init_container_restarts(status) == {"migrate": (0, 0), "wait-for-schema": (3, None)}


# --- kube_state: the NOTES command ----------------------------------------------------------------------

def test_the_notes_command_for_a_context_and_revision() -> None:
    notes = render().notes
    argv = notes_rollback_argv(notes, "kind-migrator", "20211103022310")
    assert argv[:4] == ["kubectl", "run", "rel-migrator-rollback", "--context=kind-migrator"]
    assert argv[-3:] == ["--", "rollback", "20211103022310"]
    assert {"--rm", "-i"} <= set(argv)


def test_the_detached_pod_runs_other_arguments_with_the_same_settings() -> None:
    rendered = render({"database": {"existingSecret": {"name": "app-db", "passwordKey": "password"}}})
    notes_argv = notes_rollback_argv(rendered.notes, "kind-migrator", "REV")
    argv = detached_argv(notes_argv, "rel-history", ["history", "--json"])
    assert argv[:3] == ["kubectl", "run", "rel-history"]
    assert "--context=kind-migrator" in argv
    assert not {"--rm", "-i"} & set(argv)
    assert argv[-3:] == ["--", "history", "--json"]
    # The pod kubectl makes: the override's container must merge into kubectl's, which is named after the pod.
    detached = rollback_pod([a for a in argv if not a.startswith("--context=")], "unused")
    original = rollback_pod([a for a in notes_argv if not a.startswith("--context=")], "REV")
    [container] = detached["spec"]["containers"]
    [before] = original["spec"]["containers"]
    assert container["name"] == "rel-history"
    assert container["args"] == ["history", "--json"]
    assert container["env"] == before["env"] and container["volumeMounts"] == before["volumeMounts"]
    assert detached["spec"]["volumes"] == original["spec"]["volumes"]


# --- test_kind_smoke: each cluster test says what only a cluster proves ---------------------------------

def test_every_cluster_test_names_what_only_a_cluster_proves() -> None:
    from tests.smoke import test_kind_smoke

    tests = {name for name in vars(test_kind_smoke) if name.startswith("test_")}
    assert set(test_kind_smoke.ONLY_A_CLUSTER) == tests


# --- the cluster's PostgreSQL: tests/smoke/postgres.yaml and postgres-up.sh -----------------------------

SMOKE = Path(__file__).resolve().parent


@pytest.mark.parametrize("kube", kube_versions())
def test_the_smoke_postgres_manifest_is_valid_for_kubernetes(kube: str) -> None:
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", kube, str(SMOKE / "postgres.yaml")],
                          capture_output=True, text=True, check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count(f"against version {kube.rsplit('.', 1)[0]}") == 2, output  # the Service and Deployment


def test_postgres_up_refuses_an_unknown_argument_before_touching_a_cluster() -> None:
    proc = subprocess.run(["bash", str(SMOKE / "postgres-up.sh"), "--contxt", "kind-migrator"],
                          capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "postgres-up.sh: unknown argument '--contxt' (--context CONTEXT, --namespace NAMESPACE)"]
