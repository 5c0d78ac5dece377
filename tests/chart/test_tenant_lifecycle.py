"""Many tenants through the chart's Indexed Job, emulated (lifecycle_emulation.py): Helm's hooks with the chart
rendered by Helm's own engine, the Job controller's Indexed mode with its per-index retries, and the kubelet
running the real migrator image with Docker against a real PostgreSQL. Not a cluster test (no scheduler, API
server or image pulls; tests/smoke runs the chart on kind).

The release (hook mode, `migrator.tenants.shards: 2`) migrates four tenant schemas listed by a query:

1. install v1: each shard's pod migrates its tenants (JOB_COMPLETION_INDEX, a hash of the name), the Job
   completes, and the app pods start once `wait` finds every tenant at head;
2. upgrade to v2, whose migration conflicts with a table in one tenant's schema: that tenant's shard exits 7
   (its other tenant migrated), its retry exits 7 again, its index fails; the other shard completes; the Job
   fails with FailedIndexes and Helm reports the failed hook; the v1 app keeps serving;
3. the conflicting table removed, the same upgrade again: the Job completes; the retried tenant is migrated,
   the others are found at head.

Asserted: the Job's verdict, each pod's exit code and termination message, the tenants' versions, and each
tenant's migration history: every revision applied exactly once, by a pod of that tenant's shard.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.config import Shard
from tests.chart.chart_render import render
from tests.chart.lifecycle_emulation import EmulatedCluster, HelmEmulation, JobRun, PodRun
from tests.chart.pod_emulation import DB_SECRET, release_values
from tests.conftest import FIRST, HEAD, assert_no_secret, query
from tests.docker import docker, require_docker
from tests.postgres import SUPERUSER_PASSWORD

NAMESPACE = "apps"
SHARDS = 2
CONFIG = 'tenants_query = "SELECT schema_name FROM public.tenants ORDER BY 1"\n'
V2 = "20300101000000"
V2_FILE = (f'"""notes"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = {V2!r}\n'
           f"down_revision = {HEAD!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
           "def upgrade():\n    op.create_table('notes', sa.Column('id', sa.BigInteger, primary_key=True))\n\n\n"
           "def downgrade():\n    op.drop_table('notes')\n")


def tenants_by_shard() -> dict[int, list[str]]:
    """Two tenants for each shard, as the hash of their names assigns them."""
    by_shard: dict[int, list[str]] = {index: [] for index in range(SHARDS)}
    for number in range(100):
        name = f"tenant_{number:02d}"
        index = next(i for i in range(SHARDS) if Shard(i, SHARDS).takes(name))
        if len(by_shard[index]) < 2:
            by_shard[index].append(name)
    return by_shard


@pytest.fixture(scope="module")
def tenant_images(migrator_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The migrator image under test with a migrator.toml listing tenants by a query (v1), and with one more
    migration (v2); removed afterwards."""
    require_docker()
    tag = uuid.uuid4().hex[:8]
    images = {"v1": f"migrator-tenants-lifecycle:v1-{tag}", "v2": f"migrator-tenants-lifecycle:v2-{tag}"}
    workdir = tmp_path_factory.mktemp("tenant-images")
    (workdir / "migrator.toml").write_text(CONFIG)
    (workdir / f"{V2}_notes.py").write_text(V2_FILE)
    steps = {"v1": "COPY migrator.toml /app/migrator.toml\n",
             "v2": f"COPY migrator.toml /app/migrator.toml\nCOPY {V2}_notes.py /app/migrations/versions/\n"}
    try:
        for version, copies in steps.items():
            (workdir / "Dockerfile").write_text(
                f"FROM {migrator_image}\nUSER 0:0\n{copies}"
                "RUN python -m compileall -q -f --invalidation-mode unchecked-hash /app/migrations\nUSER 10001:10001\n")
            docker("build", "--quiet", "--tag", images[version], str(workdir), timeout=600,
                   env={"DOCKER_BUILDKIT": "1"})
        yield images
    finally:
        docker("image", "rm", *images.values(), check=False)


def db_secret(password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": DB_SECRET, "namespace": NAMESPACE},
            "type": "Opaque", "stringData": {"password": password}}


def versions(url: str, tenant: str) -> list[object]:
    return [row[0] for row in query(url, f'SELECT version_num FROM "{tenant}".alembic_version')]


def applied_by(url: str, tenant: str) -> dict[str, list[str]]:
    """Revision -> the pods that applied it, from the tenant's own history."""
    rows = query(url, f"SELECT revision, pod FROM \"{tenant}\".migrator_history WHERE outcome = 'applied' ORDER BY id")
    out: dict[str, list[str]] = {}
    for revision, pod in rows:
        out.setdefault(str(revision), []).append(str(pod))
    return out


def shard_of_pod(pod: str) -> int:
    """rel-migrator-migrate-INDEX-XXXXX: the Job controller names an Indexed Job's pods with their index."""
    return int(pod.removeprefix("rel-migrator-migrate-").split("-")[0])


def by_index(job: JobRun) -> dict[int, list[PodRun]]:
    pods: dict[int, list[PodRun]] = {}
    for pod in job.pods:
        pods.setdefault(shard_of_pod(pod.name), []).append(pod)
    return pods


@pytest.mark.docker
@pytest.mark.slow
def test_an_indexed_job_shares_the_tenants_out_and_retries_a_failed_shard(
        tenant_images: dict[str, str], app_image: str, tcp_database_url: str, tmp_path: Path) -> None:
    url = tcp_database_url
    shards = tenants_by_shard()
    everyone = sorted(name for names in shards.values() for name in names)
    query(url, "CREATE TABLE public.tenants (schema_name text PRIMARY KEY)")
    for name in everyone:
        query(url, "INSERT INTO public.tenants VALUES (%s)", name)
    cluster = EmulatedCluster(tmp_path, NAMESPACE, existing=(db_secret(SUPERUSER_PASSWORD),))
    helm = HelmEmulation(cluster, lambda values, upgrade, revision: render(values, upgrade=upgrade,
                                                                          revision=revision))
    extra = {"migrator": {"tenants": {"shards": SHARDS, "backoffLimitPerIndex": 1}, "wait": {"timeout": 20}},
             "app": {"replicaCount": 1}}
    try:
        # 1. install v1: one pod per shard, each migrating its own tenants.
        result = helm.install(release_values(tenant_images["v1"], app_image, url, SUPERUSER_PASSWORD, extra))
        assert result.ok, result.error + cluster.log()
        [job] = result.hook_jobs()
        assert (job.condition, job.status.completed_indexes) == ("Complete", {0, 1}), job.describe()
        assert {index: [p.exit_codes("migrate") for p in pods] for index, pods in by_index(job).items()} == {
            0: [[0]], 1: [[0]]}
        for index, names in shards.items():
            for name in names:
                assert versions(url, name) == [HEAD]
                applied = applied_by(url, name)
                assert list(applied) == [FIRST, HEAD] and all(len(pods) == 1 for pods in applied.values())
                assert {shard_of_pod(pod) for pods in applied.values() for pod in pods} == {index}
        assert [p.ready for p in cluster.ready_pods()] == [True], "the app waited for every tenant, then started"

        # 2. upgrade to v2, which one tenant's schema cannot take: its shard fails after its retry.
        failing_shard, [other, failing] = 1, shards[1]
        query(url, f'CREATE TABLE "{failing}".notes (conflicting int)')
        result = helm.upgrade(release_values(tenant_images["v2"], app_image, url, SUPERUSER_PASSWORD, extra))
        [job] = result.hook_jobs()
        assert (job.condition, job.reason) == ("Failed", "FailedIndexes"), job.describe()
        assert (job.status.completed_indexes, job.status.failed_indexes) == ({0}, {failing_shard})
        pods = by_index(job)
        assert [p.exit_codes("migrate") for p in pods[failing_shard]] == [[7], [7]]
        # The first pod migrated the shard's other tenant; its replacement found it done.
        for pod, counts in zip(pods[failing_shard], ("1 migrated, 1 failed", "1 already up, 1 failed"), strict=True):
            message = pod.last("migrate").termination_message
            assert message.startswith(f"migrate failed (exit 7): migrate default: 2 of 4 tenants (schemas): {counts} "
                                      "in "), message
            assert message.endswith(f"; failed: {failing} (exit 1)\n"), message
        assert result.error.startswith("pre-upgrade hooks failed"), result.error
        assert versions(url, failing) == [HEAD] and versions(url, other) == [V2]
        assert all(versions(url, name) == [V2] for name in shards[0])
        assert [p.images["wait-for-schema"] for p in cluster.ready_pods()] == [tenant_images["v1"]]

        # 3. the conflict removed, the same upgrade: the retried tenant migrates, the others were done.
        query(url, f'DROP TABLE "{failing}".notes')
        result = helm.upgrade(release_values(tenant_images["v2"], app_image, url, SUPERUSER_PASSWORD, extra))
        assert result.ok, result.error + cluster.log()
        [job] = result.hook_jobs()
        assert job.condition == "Complete", job.describe()
        for index, names in shards.items():
            for name in names:
                assert versions(url, name) == [V2]
                applied = applied_by(url, name)
                assert list(applied) == [FIRST, HEAD, V2] and all(len(pods) == 1 for pods in applied.values())
                assert {shard_of_pod(pod) for pods in applied.values() for pod in pods} == {index}
    finally:
        print(cluster.log())  # shown with the test's output when it fails
        helm.close()
        for pod in cluster.pods:
            for run in pod.runs:
                assert_no_secret(run.output, run.termination_message)
