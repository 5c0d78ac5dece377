"""The chart and the images together, without a cluster: the rendered migrate and seed Jobs, `wait` init
container, app container, helm test pod and NOTES rollback pod, each run with Docker as the kubelet would run
its spec (see pod_emulation.py), against the test PostgreSQL on 127.0.0.1 (host network).

An emulation of the pod spec, not a cluster test: no API server, admission, scheduling or Job controller is
involved (tests/smoke does that on kind).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.chart.chart_render import Rendered, deep_merge, render, rollback_command, rollback_pod
from tests.chart.pod_emulation import (
    PodEmulation,
    existing_secrets,
    field_value,
    release_values,
    render_release,
    without_password,
)
from tests.conftest import FIRST, HEAD, assert_no_secret, query
from tests.docker import ROOT, Container, run_container, wait_for
from tests.postgres import SUPERUSER_PASSWORD, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]


EXISTING = existing_secrets(SUPERUSER_PASSWORD)  # the Secret the release reads, made before it


def release(migrator_image: str, app_image: str, url: str, extra: dict[str, Any] | None = None, *,
            chart_secret: bool = False) -> Rendered:
    """The chart rendered for the test database: its URL without the password, which a Secret made before the
    release holds (EXISTING), or with CHART_SECRET the one the chart makes. With the default values, migrate and
    seed run with --allow-newer: an image without that option cannot pass, so the test is skipped, saying so."""
    rendered = render_release(migrator_image, app_image, url, SUPERUSER_PASSWORD, extra, chart_secret=chart_secret)
    if "--allow-newer" in json.dumps([j["spec"] for j in rendered.jobs()] + [rendered.deployment()["spec"]]):
        require_allow_newer(migrator_image)
    return rendered


def require_wait(image: str) -> None:
    """The app pods' init container needs `migrator wait` (issue 3); an image without it cannot pass."""
    if run_container(image, ["wait", "--help"]).returncode != 0:
        pytest.skip(f"{image} has no `wait` command yet, which every app pod's init container runs")


def require_allow_newer(image: str) -> None:
    """The chart passes `--allow-newer` to migrate and seed (issue 11); an image whose CLI lacks it exits 2."""
    for verb in ("migrate", "seed"):
        # An option line, not the exit-code table (which names --allow-newer in every command's help).
        if not re.search(r"^\s+--allow-newer\s", run_container(image, [verb, "--help"]).stdout, re.MULTILINE):
            pytest.skip(f"{image}: `{verb}` has no --allow-newer yet (issue 11), which the chart passes; "
                        "rebuild the image (image/build.sh migrator)")


def versions(url: str) -> list[str]:
    return [str(row[0]) for row in query(url, "SELECT version_num FROM alembic_version")]


def assert_ran(run: Any, code: int = 0) -> None:
    assert_no_secret(run.output, run.termination_message)
    assert run.returncode == code, f"exit {run.returncode}, wanted {code}:\n{run.output[-3000:]}"


@pytest.mark.parametrize("allow_newer", [True, False], ids=["allow-newer", "no-allow-newer"])
def test_hook_jobs_migrate_then_seed(allow_newer: bool, migrator_image: str, app_image: str,
                                     tcp_database_url: str, tmp_path: Path) -> None:
    rendered = release(migrator_image, app_image, tcp_database_url,
                       {"migrator": {"seed": {"enabled": True}, "allowNewer": allow_newer}})
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    # Helm runs the migrate Job to completion before the seed Job (a higher hook weight).
    migrate_job, seed_job = rendered.jobs()
    migrate = pods.run(migrate_job, "migrate")
    assert_ran(migrate)
    assert {"--read-only", "--cap-drop", "no-new-privileges", "--user", "10001:10001"} <= set(migrate.flags)
    assert "== Migrated" in migrate.output
    assert versions(tcp_database_url) == [HEAD]
    seed = pods.run(seed_job, "seed")
    assert_ran(seed)
    assert query(tcp_database_url, "SELECT name FROM users") == [("User1",)]
    # The password reached the migrator as the mounted file of the Secret made before the release.
    env = {v["name"]: v.get("value") for v in pods.container(migrate_job, "migrate")["env"]}
    assert env["DATABASE_PASSWORD_FILE"] == "/var/run/secrets/database/password"
    # What `kubectl describe pod` would show: one line, from /dev/termination-log.
    [summary] = migrate.termination_message.strip().splitlines()
    assert summary.startswith("migrate") and HEAD in summary, summary


def test_wait_init_container_waits_for_the_schema(migrator_image: str, app_image: str, tcp_database_url: str,
                                                  tmp_path: Path) -> None:
    require_wait(migrator_image)
    rendered = release(migrator_image, app_image, tcp_database_url)
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    deployment = rendered.deployment()
    early = pods.run(deployment, "wait-for-schema")
    assert_ran(early, 5)  # not at head within --timeout 4: the kubelet restarts the init container
    # `wait` only reads: it neither migrates nor creates the version table.
    assert query(tcp_database_url, "SELECT to_regclass('alembic_version')") == [(None,)]
    assert_ran(pods.run(rendered.jobs()[0], "migrate"))
    assert_ran(pods.run(deployment, "wait-for-schema"))


def test_init_container_mode_pod_runs_migrate_seed_wait_then_serves(
        migrator_image: str, app_image: str, tcp_database_url: str, tmp_path: Path,
        containers: list[Container]) -> None:
    require_wait(migrator_image)
    port = free_port()
    rendered = release(migrator_image, app_image, tcp_database_url,
                       {"migrator": {"mode": "initContainer", "seed": {"enabled": True}}, "app": {"port": port}},
                       chart_secret=True)
    assert rendered.jobs() == []
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    deployment = rendered.deployment()
    for name in ("migrate", "seed", "wait-for-schema"):
        assert_ran(pods.run(deployment, name))
    app = pods.start(deployment, "app")
    containers.append(app)

    def users() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/users", timeout=3) as response:
                return str(response.read().decode())
        except OSError:
            return None

    wait_for(users, timeout=30, what="the app container to answer /users")
    assert "User1" in (users() or "")
    assert_no_secret(app.logs())


def test_downward_api_identity_reaches_the_container(tmp_path: Path) -> None:
    """MIGRATOR_POD_NAME and MIGRATOR_POD_NAMESPACE come from fieldRefs: the emulation gives them the values the
    kubelet would (a generated name for a Job's pod), so the migrator's history records who ran it."""
    rendered = render_release("migrator:dev", "migrator-app:dev", "postgresql://app@127.0.0.1:5432/app", "pw")
    [job] = rendered.jobs()
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    env = pods.docker_options(job, pods.container(job, "migrate"))["env"]
    assert env["MIGRATOR_POD_NAME"] == "rel-migrator-migrate-emulated"
    assert env["MIGRATOR_POD_NAMESPACE"] == "apps"
    assert env["MIGRATOR_IMAGE"] == "migrator:dev"
    assert field_value(rendered.test_pod(), "metadata.name") == "rel-migrator-test-schema"


@pytest.mark.parametrize("credentials", ["pgpassword-env", "existing-secret-url"])
def test_other_credential_forms_reach_the_database(credentials: str, migrator_image: str, app_image: str,
                                                   tcp_database_url: str, tmp_path: Path) -> None:
    external: dict[str, dict[str, str]] = {}
    if credentials == "pgpassword-env":
        extra: dict[str, Any] = {"database": {"passwordFile": {"enabled": False}}, "migrator": {"mode": "job"}}
    else:
        extra = {"database": {"url": "", "existingSecret": {"name": "app-db", "urlKey": "uri", "passwordKey": ""}}}
        external["app-db"] = {"uri": tcp_database_url}
    rendered = release(migrator_image, app_image, tcp_database_url, extra, chart_secret=credentials == "pgpassword-env")
    pods = PodEmulation(rendered, tmp_path, external)
    assert_ran(pods.run(rendered.jobs()[0], "migrate"))
    assert versions(tcp_database_url) == [HEAD]


def test_helm_test_pod_and_notes_rollback_pod(migrator_image: str, app_image: str, tcp_database_url: str,
                                              tmp_path: Path) -> None:
    rendered = release(migrator_image, app_image, tcp_database_url)
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    test_pod = rendered.test_pod()
    assert_ran(pods.run(test_pod, "status"), 5)  # not migrated: `status --check` fails the helm test
    assert_ran(pods.run(rendered.jobs()[0], "migrate"))
    assert_ran(pods.run(test_pod, "status"))
    pod = rollback_pod(rollback_command(rendered.notes), FIRST)
    name = pod["spec"]["containers"][0]["name"]
    rollback = pods.run(pod, name)
    assert_ran(rollback)
    assert HEAD in rollback.output
    assert versions(tcp_database_url) == [FIRST]
    assert json.dumps(pod).count(SUPERUSER_PASSWORD) == 0


def test_failed_migration_exit_code_fails_the_job_at_once(migrator_image: str, app_image: str,
                                                          tcp_database_url: str, tmp_path: Path) -> None:
    """An unknown revision is exit 2, the code podFailurePolicy turns into FailJob (no retry)."""
    rendered = release(migrator_image, app_image, tcp_database_url)
    [job] = rendered.jobs()
    job = json.loads(json.dumps(job))
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["migrate", "--to", "19990101000000"]
    started = time.monotonic()
    run = PodEmulation(rendered, tmp_path, EXISTING).run(job, "migrate")
    assert_ran(run, 2)
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob" and run.returncode in fail_job["onExitCodes"]["values"]
    assert time.monotonic() - started < 60


# --- a database proxy as a native sidecar, in each mode (issue 17, item 7) -----------------------------

# A TCP forwarder: what a database proxy (Cloud SQL Auth Proxy, PgBouncer, a mesh's proxy) does to the
# migrator's connection. It logs each connection it forwards, and ends on SIGTERM like any sidecar.
FORWARDER = """
import signal, socket, sys, threading
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default action for SIGTERM
listen, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
server = socket.create_server(("127.0.0.1", listen))
print("forwarding", listen, "to", port, flush=True)
while True:
    client, _ = server.accept()
    upstream = socket.create_connection((host, port))
    print("forwarded a connection", flush=True)
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


def forwarder(image: str, listen: int, port: int) -> dict[str, Any]:
    """The sidecar of the values: the forwarder in front of PostgreSQL, hardened, with a startupProbe."""
    return {"name": "db-proxy", "image": image, "command": ["python3", "-c", FORWARDER],
            "args": [str(listen), "127.0.0.1", str(port)],
            "startupProbe": {"tcpSocket": {"port": listen}, "periodSeconds": 1},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}


@pytest.mark.parametrize("mode", ["hook", "job", "initContainer"])
def test_the_migration_runs_through_a_native_sidecar_proxy(mode: str, migrator_image: str, app_image: str,
                                                           tcp_database_url: str, tmp_path: Path) -> None:
    """The URL points at the sidecar's port, on which nothing else listens: the hook Job's pod, the plain Job's
    pod (migrate then seed) and, in initContainer mode, the app pod's `migrate` and `wait` init containers
    reach PostgreSQL through it, and each pod ends once its migrator containers did (the kubelet stops the
    sidecar), so that a Job completes."""
    listen = free_port()
    pg = urlsplit(tcp_database_url)
    proxied = tcp_database_url.replace(f"127.0.0.1:{pg.port}", f"127.0.0.1:{listen}")
    sidecar = forwarder(migrator_image, listen, int(pg.port or 5432))
    extra = {"migrator": {"mode": mode, "seed": {"enabled": True}, "sidecars": [sidecar]},
             "app": {"sidecars": [sidecar]}}
    rendered = release(migrator_image, app_image, proxied, extra)
    pods = PodEmulation(rendered, tmp_path, EXISTING)
    # Hook mode: the hook Job, then an app pod's `wait` through the app's own sidecar.
    objects = {"hook": [*rendered.jobs()[:1], rendered.deployment()], "job": rendered.jobs(),
               "initContainer": [rendered.deployment()]}[mode]
    results = [pods.run_pod(obj, until_main=obj["kind"] == "Deployment") for obj in objects]
    runs = [(r.container, r.returncode) for result in results for r in result.runs]
    assert runs == {"hook": [("migrate", 0), ("wait-for-schema", 0)], "job": [("migrate", 0), ("seed", 0)],
                    "initContainer": [("migrate", 0), ("seed", 0), ("wait-for-schema", 0)]}[mode], results
    assert all("forwarded a connection" in result.sidecar_logs["db-proxy"] for result in results)
    assert versions(tcp_database_url) == [HEAD]
    for result in results:
        for run in result.runs:
            assert_no_secret(run.output, run.termination_message)


# --- separate credentials: two real roles (issue 17, item 10) ------------------------------------------

def role_setup(owner: str, app: str, database: str, owner_password: str, app_password: str) -> list[str]:
    """chart/README.md's role setup (its ```sql block), for these names and passwords."""
    text = (ROOT / "chart" / "README.md").read_text()
    block = text[text.index("```sql\n") + len("```sql\n"):].split("```", 1)[0]
    statements = [line.split("--")[0].strip() for line in block.splitlines() if line.split("--")[0].strip()]
    passwords = iter([owner_password, app_password])
    out = []
    for written in statements:
        named = written.replace("app_owner", owner).replace("app_rw", app).replace("DATABASE app ",
                                                                                   f"DATABASE {database} ")
        out.append(named.replace("'...'", f"'{next(passwords)}'") if "'...'" in named else named)
    return out


@pytest.fixture
def two_roles(tcp_database_url: str) -> Iterator[tuple[str, str]]:
    """The schema owner's and the app's URLs (passwords included) on the test database, the roles made with
    chart/README.md's statements and dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {"owner": f"app_owner_{suffix}", "app": f"app_rw_{suffix}", "owner_pw": f"owner-{suffix}",
             "app_pw": f"rw-{suffix}", "database": urlsplit(tcp_database_url).path.lstrip("/")}
    statements = role_setup(names["owner"], names["app"], names["database"], names["owner_pw"], names["app_pw"])
    assert len(statements) == 7, statements
    for statement in statements:
        query(tcp_database_url, statement)
    parts = urlsplit(tcp_database_url)

    def url(role: str, password: str) -> str:
        return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))

    try:
        yield url(names["owner"], names["owner_pw"]), url(names["app"], names["app_pw"])
    finally:
        for role in (names["app"], names["owner"]):
            query(tcp_database_url, f"DROP OWNED BY {role}")
            query(tcp_database_url, f"DROP ROLE {role}")


def test_the_owner_migrates_and_the_app_role_only_reads_and_writes(
        two_roles: tuple[str, str], migrator_image: str, app_image: str, tmp_path: Path) -> None:
    owner_url, app_url = two_roles
    owner, app = urlsplit(owner_url), urlsplit(app_url)
    secrets = {"db-owner": {"password": owner.password or ""}, "db-rw": {"password": app.password or ""}}
    existing = {"existingSecret": {"name": "db-rw", "passwordKey": "password"}}
    values = {"database": {"url": without_password(app_url), **existing},
              "migrator": {"seed": {"enabled": True}, "database": {
                  "url": without_password(owner_url),
                  "existingSecret": {"name": "db-owner", "passwordKey": "password"}}}}
    rendered = render(deep_merge(release_values(migrator_image, app_image, app_url, "unused"), values))
    pods = PodEmulation(rendered, tmp_path, secrets)
    migrate_job, seed_job = rendered.jobs()
    assert_ran(pods.run(migrate_job, "migrate"))  # as the owner
    assert_ran(pods.run(seed_job, "seed"))
    assert_ran(pods.run(rendered.deployment(), "wait-for-schema"))  # as the app role: it reads both tables
    assert_ran(pods.run(rendered.test_pod(), "status"))
    assert query(owner_url, "SELECT tableowner FROM pg_tables WHERE tablename = 'users'") == [(owner.username,)]
    query(app_url, "INSERT INTO users (name) VALUES ('added by the app')")  # data: yes
    for ddl in ("CREATE TABLE app_made (id int)", "ALTER TABLE users ADD COLUMN x int", "DROP TABLE users"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # schema: no
            query(app_url, ddl)
