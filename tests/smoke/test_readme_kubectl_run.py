"""The README's `kubectl run ... -- rollback REV` command, as written: split by bash, turned into the Pod kubectl
makes (its generated pod with --overrides merged), valid against the Kubernetes schema of the oldest and newest
Kubernetes the kind-smoke workflow runs, admitted by the restricted Pod Security Standard (pod_security.py), and
run with the real migrator image (the pod emulated with Docker, tests/chart/pod_emulation.py) against a real
PostgreSQL at head, its password in the Secret the overrides name."""

from __future__ import annotations

import copy
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.chart.chart_render import Rendered, render, rollback_command, rollback_pod, tool
from tests.chart.pod_emulation import PodEmulation
from tests.conftest import FIRST, HEAD, query
from tests.docker import run_container
from tests.postgres import DebianServer
from tests.smoke.pod_security import restricted_violations
from tests.smoke.test_smoke_workflow import kube_versions

ROOT = Path(__file__).resolve().parent.parent.parent
OLD_COMMAND = "kubectl run migrator --image=IMG --restart=Never --rm -i -- rollback 20211103022310"


def readme_command() -> str:
    """The README's one shell block that is a `kubectl run` command."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    [block] = [b for b in blocks if b.startswith("kubectl run ")]
    return str(block)


def shell_words(command: str) -> list[str]:
    """COMMAND's words as bash splits them when a user pastes it (kubectl replaced by a function that prints
    its arguments)."""
    script = "kubectl() { printf '%s\\0' kubectl \"$@\"; }\n" + command
    proc = subprocess.run(["bash", "-euc", script], capture_output=True, check=True, timeout=30)
    words = proc.stdout.decode().split("\0")[:-1]
    assert words.count("kubectl") == 1, words
    return words


def readme_pod() -> dict[str, Any]:
    return rollback_pod(shell_words(readme_command()), "unused")


def test_the_command_rolls_back_with_the_overrides() -> None:
    argv = shell_words(readme_command())
    assert argv[:3] == ["kubectl", "run", "migrator-rollback"]
    assert argv[argv.index("--"):] == ["--", "rollback", FIRST]
    pod = readme_pod()
    [container] = pod["spec"]["containers"]
    assert container["name"] == "migrator-rollback"  # the override merges into kubectl's container
    assert container["args"] == ["rollback", FIRST]
    assert {e["name"] for e in container["env"]} == {"DATABASE_URL", "DATABASE_PASSWORD_FILE"}


@pytest.mark.parametrize("kube", kube_versions())
def test_the_pod_is_valid_for_kubernetes(kube: str, tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(readme_pod()))
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", kube, str(path)],
                          capture_output=True, text=True, check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"against version {kube.rsplit('.', 1)[0]}" in output and "WARN" not in output, output


def test_the_pod_is_admitted_by_the_restricted_profile() -> None:
    assert restricted_violations(readme_pod()) == []


def test_the_notes_command_is_admitted_by_the_restricted_profile() -> None:
    """The command NOTES prints for a release, which the README's follows."""
    assert restricted_violations(rollback_pod(rollback_command(render().notes), HEAD)) == []


def old_pod() -> dict[str, Any]:
    """The Pod the README's former command made: kubectl run's generated pod, nothing overridden."""
    argv = shell_words(OLD_COMMAND)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": argv[2], "labels": {"run": argv[2]}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": argv[2], "image": "IMG", "args": argv[argv.index("--") + 1:]}]}}


def test_the_former_command_is_refused_by_the_restricted_profile() -> None:
    assert restricted_violations(old_pod()) == [
        "allowPrivilegeEscalation != false: migrator", "runAsNonRoot != true: migrator",
        "seccompProfile not RuntimeDefault or Localhost: migrator", "capabilities.drop lacks ALL: migrator"]


@pytest.mark.docker
def test_the_former_command_has_no_database(migrator_image: str) -> None:
    proc = run_container(migrator_image, old_pod()["spec"]["containers"][0]["args"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no database configured" in proc.stdout + proc.stderr


def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change of the pod at PATH (dot-separated; a number indexes a list)."""
    def change(pod: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = pod
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[int(last) if last.isdigit() else last] = value
    return change


def delete_in(path: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = pod
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]
    return change


C = "spec.containers.0"
# Each rule of the profile, broken on the README's pod: the violation it must report.
BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "hostProcess": (set_in(f"{C}.securityContext.windowsOptions.hostProcess", True), "hostProcess"),
    "hostNetwork": (set_in("spec.hostNetwork", True), "host namespaces (hostNetwork=true)"),
    "hostPID": (set_in("spec.hostPID", True), "host namespaces (hostPID=true)"),
    "privileged": (set_in(f"{C}.securityContext.privileged", True), "privileged"),
    "capability": (set_in(f"{C}.securityContext.capabilities.add", ["SYS_ADMIN"]), "non-default capabilities"),
    "hostPath": (set_in("spec.volumes.0", {"name": "tmp", "hostPath": {"path": "/tmp"}}), "hostPath volumes"),
    "hostPort": (set_in(f"{C}.ports", [{"containerPort": 80, "hostPort": 80}]), "hostPort"),
    "appArmor": (set_in(f"{C}.securityContext.appArmorProfile", {"type": "Unconfined"}), "AppArmor"),
    "seLinux": (set_in("spec.securityContext.seLinuxOptions", {"user": "root"}), "seLinuxOptions"),
    "procMount": (set_in(f"{C}.securityContext.procMount", "Unmasked"), "procMount"),
    "sysctl": (set_in("spec.securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
    "probeHost": (set_in(f"{C}.readinessProbe", {"tcpSocket": {"host": "10.0.0.1", "port": 5432}}), "probe"),
    "volumeType": (set_in("spec.volumes.0", {"name": "tmp", "nfs": {"server": "nfs", "path": "/"}}),
                   "restricted volume types"),
    "escalation": (delete_in(f"{C}.securityContext.allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    "nonRoot": (delete_in("spec.securityContext.runAsNonRoot"), "runAsNonRoot != true"),
    "rootUser": (set_in(f"{C}.securityContext.runAsUser", 0), "runAsUser=0"),
    "seccompMissing": (delete_in("spec.securityContext.seccompProfile"), "seccompProfile not RuntimeDefault"),
    "unconfined": (set_in(f"{C}.securityContext.seccompProfile", {"type": "Unconfined"}), "Unconfined"),
    "dropAll": (delete_in(f"{C}.securityContext.capabilities"), "capabilities.drop lacks ALL"),
}


@pytest.mark.parametrize("rule", list(BREAKS))
def test_each_rule_of_the_profile_can_refuse(rule: str) -> None:
    change, expected = BREAKS[rule]
    pod = copy.deepcopy(readme_pod())
    change(pod)
    violations = restricted_violations(pod)
    assert any(expected in line for line in violations), violations


# --- run as written against PostgreSQL ------------------------------------------------------------------

def database_of(server: DebianServer, user: str, password: str) -> str:
    """A new database owned by USER (created, or given PASSWORD), as the README's URL names its user."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(f"{verb} ROLE {user} LOGIN PASSWORD '{password}'")
    name = server.create_database()
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" OWNER TO {user}')
    return name


@pytest.mark.docker
def test_the_command_rolls_a_database_at_head_back(migrator_image: str, tcp_server: DebianServer,
                                                   tmp_path: Path) -> None:
    """The pod's container as written, except for what a test machine cannot have: the image under test
    instead of the registry's, the test server's host, port and database instead of db.example.internal's."""
    pod = readme_pod()
    [container] = pod["spec"]["containers"]
    [url] = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
    user = str(re.match(r"postgresql://(\w+)@", url["value"]).group(1))  # type: ignore[union-attr]
    password = secrets.token_urlsafe(18)
    name = database_of(tcp_server, user, password)
    url["value"] = re.sub(r"@[^/]+/\w+$", f"@127.0.0.1:{tcp_server.port}/{name}", url["value"])
    container["image"] = migrator_image
    [volume] = [v for v in pod["spec"]["volumes"] if "secret" in v]
    emulation = PodEmulation(Rendered(files={}, values={}), tmp_path,
                             {volume["secret"]["secretName"]: {"password": password}})

    migrate = copy.deepcopy(pod)
    migrate["spec"]["containers"][0]["args"] = ["migrate"]
    assert emulation.run(migrate, container["name"]).returncode == 0
    admin = tcp_server.url_for(name)
    assert query(admin, "SELECT version_num FROM alembic_version") == [(HEAD,)]

    run = emulation.run(pod, container["name"])
    assert run.returncode == 0, run.output
    assert query(admin, "SELECT version_num FROM alembic_version") == [(FIRST,)]
    assert password not in run.output and password not in run.termination_message
