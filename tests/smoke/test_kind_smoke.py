"""Smoke tests on a real kind cluster: the chart installed with Helm, migrations, seeds, an upgrade with one more
migration, the NOTES rollback command, and init-container mode with 5 replicas.

They need kind, helm, kubectl and docker, and a kind cluster (MIGRATOR_KIND_CLUSTER, default `migrator`);
.github/workflows/kind-smoke.yml creates one and runs them. Where there is none they skip and say why: no
cluster is ever faked. The tests run in file order and build on each other (one release, then a second).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CLUSTER = os.environ.get("MIGRATOR_KIND_CLUSTER", "migrator")
CONTEXT = f"kind-{CLUSTER}"
NAMESPACE = "migrator-smoke"
MIGRATOR_IMAGE = os.environ.get("MIGRATOR_IMAGE", "migrator:dev")
APP_IMAGE = os.environ.get("APP_IMAGE", "migrator-app:dev")
EXTRA_IMAGE = "migrator:smoke-extra"
EXTRA_REVISION = "29990101000000"
RUNNING = re.compile(r"== Running (\d{14}) ")

pytestmark = pytest.mark.cluster


def cluster_problem() -> str | None:
    """Why no kind cluster can be used here, or None."""
    for binary in ("kind", "helm", "kubectl", "docker"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed, so no kind cluster runs here (the kind-smoke workflow runs these)"
    if importlib.util.find_spec("kubernetes") is None:
        return "the kubernetes Python client is not installed: pip install kubernetes"
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=False, timeout=60)
    if CLUSTER not in clusters.stdout.split():
        return f"no kind cluster named {CLUSTER} (kind create cluster --name {CLUSTER}, or set MIGRATOR_KIND_CLUSTER)"
    return None


def run(*argv: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[0]} {argv[1]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run("kubectl", "--context", CONTEXT, "--namespace", NAMESPACE, *args, **kw)


def helm(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run("helm", "--kube-context", CONTEXT, "--namespace", NAMESPACE, *args, **kw)


def revisions() -> list[str]:
    """The revisions the migrator image carries (it copies migrations/ from this tree), oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(ROOT / "migrations"))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def psql(database: str, sql: str) -> str:
    """SQL in the PostgreSQL pod over its Unix socket (trusted there): no password on any command line."""
    return kubectl("exec", "deploy/postgres", "--", "psql", "--username", "app", "--dbname", database,
                   "--no-align", "--tuples-only", "--command", sql).stdout.strip()


@dataclass
class Cluster:
    core: Any
    batch: Any
    apps: Any
    values_dir: Path

    def pod_logs(self, pod: str, container: str) -> str:
        return str(self.core.read_namespaced_pod_log(pod, NAMESPACE, container=container))

    def pods(self, selector: str) -> list[Any]:
        """The pods matching SELECTOR, less those being deleted (an old ReplicaSet's, after a rollout)."""
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def job_logs(self, job: str, container: str) -> str:
        """The logs of the Job's own pods: its selector carries its uid, so a deleted predecessor's pods
        (still being garbage-collected) are not read."""
        selector = self.batch.read_namespaced_job(job, NAMESPACE).spec.selector.match_labels
        pods = self.pods(",".join(f"{k}={v}" for k, v in selector.items()))
        assert pods, f"no pod of Job {job} is left"
        return "\n".join(self.pod_logs(p.metadata.name, container) for p in pods)

    def users_page(self, release: str) -> str:
        return str(self.core.connect_get_namespaced_service_proxy_with_path(
            f"{release}-migrator:http", NAMESPACE, "users"))

    def values_file(self, name: str, values: dict[str, Any]) -> Path:
        path = self.values_dir / f"{name}.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(values))
        return path


def load_image(image: str) -> None:
    run("kind", "load", "docker-image", image, "--name", CLUSTER)


def ensure_local_image(image: str, target: str) -> None:
    if run("docker", "image", "inspect", image, check=False).returncode != 0:
        env_var = {"migrator": "MIGRATOR_IMAGE", "app": "APP_IMAGE"}[target]
        subprocess.run(["bash", str(ROOT / "image" / "build.sh"), target], check=True, timeout=1800,
                       env={**os.environ, env_var: image})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    problem = cluster_problem()
    if problem:
        pytest.skip(f"no Kubernetes cluster: {problem}")
    from kubernetes import client, config

    config.load_kube_config(context=CONTEXT)
    ensure_local_image(MIGRATOR_IMAGE, "migrator")
    ensure_local_image(APP_IMAGE, "app")
    load_image(MIGRATOR_IMAGE)
    load_image(APP_IMAGE)
    run("kubectl", "--context", CONTEXT, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    run(str(ROOT / "tests" / "smoke" / "postgres-up.sh"), "--context", CONTEXT, "--namespace", NAMESPACE)
    values_dir = tmp_path_factory.mktemp("values")
    values_dir.chmod(0o700)
    return Cluster(core=client.CoreV1Api(), batch=client.BatchV1Api(), apps=client.AppsV1Api(),
                   values_dir=values_dir)


def image_values(image: str = MIGRATOR_IMAGE) -> dict[str, Any]:
    repo, tag = image.rsplit(":", 1)
    app_repo, app_tag = APP_IMAGE.rsplit(":", 1)
    return {"migrator": {"image": {"repository": repo, "tag": tag, "pullPolicy": "Never"}},
            "app": {"image": {"repository": app_repo, "tag": app_tag, "pullPolicy": "Never"}}}


def merge(*dicts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def postgres_password(cluster: Cluster) -> str:
    secret = cluster.core.read_namespaced_secret("postgres", NAMESPACE)
    return base64.b64decode(secret.data["password"]).decode()


def first_release_values(cluster: Cluster, image: str = MIGRATOR_IMAGE) -> Path:
    """Hook mode with a chart-made Secret: the pre-install ordering is what this release proves."""
    return cluster.values_file("smoke", merge(image_values(image), {
        "database": {"password": postgres_password(cluster)},
        "migrator": {"seed": {"enabled": True},
                     # Keep the succeeded Job (not its hook copies) so that its log can be read.
                     "hook": {"deletePolicy": "before-hook-creation"}},
        "app": {"replicaCount": 2},
    }))


def test_install_runs_the_hook_job_and_seeds(cluster: Cluster) -> None:
    values = first_release_values(cluster)
    helm("upgrade", "--install", "smoke", str(ROOT / "chart"), "--values", str(values), "--wait",
         "--timeout", "10m")
    job = cluster.batch.read_namespaced_job("smoke-migrator-migrate", NAMESPACE)
    assert job.status.succeeded == 1
    migrate_log = cluster.job_logs("smoke-migrator-migrate", "migrate")
    assert "== Migrated" in migrate_log
    assert sorted(RUNNING.findall(migrate_log)) == revisions()
    assert "== Seeded" in cluster.job_logs("smoke-migrator-migrate", "seed")
    # The hook copies lived through the hook phase only; the release's own Secret stays for the app.
    names = {s.metadata.name for s in cluster.core.list_namespaced_secret(NAMESPACE).items}
    assert "smoke-migrator-database" in names
    assert "smoke-migrator-migrate-database" not in names
    assert psql("app", "SELECT version_num FROM alembic_version") == revisions()[-1]
    assert "User1" in cluster.users_page("smoke")
    helm("test", "smoke", "--timeout", "5m")


def build_extra_image(tmp_path: Path) -> str:
    """The migrator image plus one revision on top of the current head, as a new release would ship."""
    head = revisions()[-1]
    (tmp_path / f"{EXTRA_REVISION}_smoke_extra.py").write_text(
        '"""smoke extra"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {EXTRA_REVISION!r}\ndown_revision = {head!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    op.create_table('smoke_extra', sa.Column('id', sa.Integer, primary_key=True))\n\n\n"
        "def downgrade():\n    op.drop_table('smoke_extra')\n")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {MIGRATOR_IMAGE}\nUSER 0:0\n"
        f"COPY {EXTRA_REVISION}_smoke_extra.py /app/migrations/versions/\n"
        "RUN python -m compileall -q --invalidation-mode unchecked-hash /app/migrations\n"
        "USER 10001:10001\n")
    run("docker", "build", "--tag", EXTRA_IMAGE, str(tmp_path))
    load_image(EXTRA_IMAGE)
    return EXTRA_IMAGE


def test_upgrade_with_one_more_migration(cluster: Cluster, tmp_path: Path) -> None:
    image = build_extra_image(tmp_path)
    helm("upgrade", "smoke", str(ROOT / "chart"), "--values", str(first_release_values(cluster, image)), "--wait",
         "--timeout", "10m")
    migrate_log = cluster.job_logs("smoke-migrator-migrate", "migrate")
    assert RUNNING.findall(migrate_log) == [EXTRA_REVISION]
    assert "== Migrated" in migrate_log
    assert psql("app", "SELECT version_num FROM alembic_version") == EXTRA_REVISION
    assert psql("app", "SELECT to_regclass('smoke_extra') IS NOT NULL") == "t"
    deployment = cluster.apps.read_namespaced_deployment("smoke-migrator", NAMESPACE)
    assert deployment.status.updated_replicas == deployment.status.ready_replicas == 2
    for pod in cluster.pods("app.kubernetes.io/instance=smoke,app.kubernetes.io/component=app"):
        assert pod.spec.init_containers[0].image == image
    assert "User1" in cluster.users_page("smoke")


def test_rollback_with_the_command_from_notes(cluster: Cluster) -> None:
    notes = helm("get", "notes", "smoke").stdout
    [line] = [x.strip() for x in notes.splitlines() if x.strip().startswith("kubectl run ")]
    argv = shlex.split(line)
    head = revisions()[-1]
    argv = [head if a == "REV" else a for a in argv]
    argv.insert(2, f"--context={CONTEXT}")
    assert f"--image={EXTRA_IMAGE}" in argv
    proc = run(*argv, timeout=600)
    output = proc.stdout + proc.stderr
    assert EXTRA_REVISION in output, output
    assert postgres_password(cluster) not in output
    assert psql("app", "SELECT version_num FROM alembic_version") == head
    assert psql("app", "SELECT to_regclass('smoke_extra') IS NULL") == "t"
    deadline = time.monotonic() + 60
    while cluster.pods("run=smoke-migrator-rollback"):  # --rm deletes it once the command ended
        assert time.monotonic() < deadline, "kubectl run --rm left its pod"
        time.sleep(1)


def test_init_container_mode_applies_each_migration_once(cluster: Cluster) -> None:
    psql("app", "CREATE DATABASE smoke_init")
    values = cluster.values_file("smoke-init", merge(image_values(), {
        "database": {"url": "postgresql://app@postgres:5432/smoke_init",
                     "existingSecret": {"name": "postgres", "passwordKey": "password"}},
        "migrator": {"mode": "initContainer"},
        "app": {"replicaCount": 5},
    }))
    helm("upgrade", "--install", "smoke-init", str(ROOT / "chart"), "--values", str(values), "--wait",
         "--timeout", "10m")
    pods = cluster.pods("app.kubernetes.io/instance=smoke-init,app.kubernetes.io/component=app")
    assert len(pods) == 5
    applied: Counter[str] = Counter()
    for pod in pods:
        assert [c.name for c in pod.spec.init_containers] == ["migrate", "wait-for-schema"]
        applied.update(RUNNING.findall(cluster.pod_logs(pod.metadata.name, "migrate")))
    assert applied == Counter(revisions()), applied  # every revision exactly once across the 5 pods
    assert psql("smoke_init", "SELECT version_num FROM alembic_version") == revisions()[-1]
    deadline = time.monotonic() + 120
    while cluster.apps.read_namespaced_deployment("smoke-init-migrator", NAMESPACE).status.ready_replicas != 5:
        assert time.monotonic() < deadline, "the 5 app pods did not become ready"
        time.sleep(2)

