"""Run a rendered container with Docker the way the kubelet would run it: an emulation of the pod spec, not a
cluster. What Kubernetes would provide is made from the rendered objects themselves:

- env: `value`s as they are, `secretKeyRef`s from the rendered Secret (the one the pod names, so a hook Job
  reads the hook copy) or from a Secret the test says exists already, `fieldRef`s (downward API) from the
  object: metadata.namespace as rendered, metadata.name as the object's name for a Pod and NAME-emulated for
  a pod made from a template (a Job's or a Deployment's, whose real pods get generated names); values reach
  the container through the docker client's environment (`-e NAME`), never through argv;
- volumes: `emptyDir` as a tmpfs (with its sizeLimit), `secret` as a read-only bind mount of files written
  with the volume's items, defaultMode, root owner and the pod's fsGroup as group;
- securityContext (container over pod): runAsUser/runAsGroup as --user, fsGroup as --group-add,
  readOnlyRootFilesystem as --read-only, capabilities.drop ALL as --cap-drop ALL, allowPrivilegeEscalation
  false as no-new-privileges, seccomp RuntimeDefault as Docker's default profile;
- the termination log: a file mounted at /dev/termination-log, read back after the container ends.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.chart.chart_render import Rendered, deep_merge, is_migrator, pod_spec, render
from tests.docker import Container, run_container, start_container, wait_for

TERMINATION_LOG = "/dev/termination-log"


@dataclass
class Run:
    """One emulated container run: its exit code, its output, and what it wrote to the termination log."""

    returncode: int
    output: str
    termination_message: str
    flags: list[str] = field(default_factory=list)
    container: str = ""


def docker_quantity(quantity: str) -> str:
    """64Mi -> 64m (docker's tmpfs size units are powers of 1024)."""
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    return quantity


def security_flags(pod_ctx: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """docker run flags for a securityContext CTX (the container's over the pod's POD_CTX)."""
    flags: list[str] = []
    user = ctx.get("runAsUser")
    if ctx.get("runAsNonRoot"):
        assert user not in (None, 0), "runAsNonRoot needs a non-zero runAsUser that the kubelet can check"
    if user is not None:
        flags += ["--user", f"{user}:{ctx.get('runAsGroup', user)}"]
    if "fsGroup" in pod_ctx:
        flags += ["--group-add", str(pod_ctx["fsGroup"])]
    if ctx.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if "ALL" in ctx.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", "ALL"]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    seccomp = ctx.get("seccompProfile", {}).get("type")
    assert seccomp in (None, "RuntimeDefault"), f"no Docker equivalent for seccomp {seccomp}"
    return flags


def pod_name(obj: dict[str, Any]) -> str:
    """The name a pod of OBJ would have: a Pod's own, or an emulated one for a template's pods."""
    name = str(obj["metadata"]["name"])
    return name if obj["kind"] == "Pod" else f"{name}-emulated"


def field_value(obj: dict[str, Any], path: str) -> str:
    """A downward-API fieldRef of a pod of OBJ: the two the chart uses, and a label (an Indexed Job's pod reads
    its JOB_COMPLETION_INDEX from one)."""
    values = {"metadata.name": pod_name(obj), "metadata.namespace": str(obj["metadata"].get("namespace", ""))}
    label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    if label is not None:
        return str(obj["metadata"]["labels"][label[1]])
    assert path in values, f"no emulation for fieldRef {path}"
    return values[path]


# --- a release for a test database (also for a lifecycle emulation driver) ------------------------------

def without_password(url: str) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


def image_values(image: str) -> dict[str, Any]:
    """migrator.image / app.image values for a local image REPOSITORY:TAG (never pulled)."""
    repository, tag = image.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


DB_SECRET = "db-credentials"  # made before the release, as hook mode needs (see existing_secrets)


def existing_secrets(password: str) -> dict[str, dict[str, str]]:
    """The data of the Secrets that exist before the release, for release_values' default credentials."""
    return {DB_SECRET: {"password": password}}


def release_values(migrator_image: str, app_image: str, url: str, password: str,
                   extra: dict[str, Any] | None = None, *, chart_secret: bool = False) -> dict[str, Any]:
    """Chart values that reach the database at URL, its password kept out of the URL: in the Secret DB_SECRET
    made before the release (existing_secrets; every mode), or with CHART_SECRET in the one the chart makes
    (modes job and initContainer). Local images and short waits, merged with EXTRA."""
    credentials: dict[str, Any] = {"password": password} if chart_secret else {
        "existingSecret": {"name": DB_SECRET, "passwordKey": "password"}}
    values = {
        "database": {"url": without_password(url), **credentials},
        "migrator": {"image": image_values(migrator_image), "config": {"connectTimeout": "10"},
                     "wait": {"timeout": 4}},
        "app": {"image": image_values(app_image)},
    }
    return deep_merge(values, extra or {})


def render_release(migrator_image: str, app_image: str, url: str, password: str,
                   extra: dict[str, Any] | None = None, *, upgrade: bool = False,
                   chart_secret: bool = False) -> Rendered:
    """One release of the chart for a test database, as `helm install` (or `helm upgrade`) renders it (see
    release_values); run its pods with PodEmulation, giving it existing_secrets(password)."""
    return render(release_values(migrator_image, app_image, url, password, extra, chart_secret=chart_secret),
                  upgrade=upgrade)


@dataclass
class PodEmulation:
    """The pods of one render. EXTERNAL holds the data of Secrets that exist before the release."""

    rendered: Rendered
    workdir: Path
    external: dict[str, dict[str, str]] = field(default_factory=dict)

    def secret_data(self, name: str) -> dict[str, str]:
        if name in self.external:
            return self.external[name]
        secret = self.rendered.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data

    def container(self, obj: dict[str, Any], name: str) -> dict[str, Any]:
        spec = pod_spec(obj)
        matches = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
        assert len(matches) == 1, f"{obj['kind']}/{obj['metadata']['name']} has no container {name}"
        return dict(matches[0])

    def docker_options(self, obj: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
        """tests.docker RunOptions for CONTAINER of OBJ's pod, derived from the spec alone."""
        spec = pod_spec(obj)
        pod_ctx = spec.get("securityContext", {})
        flags = security_flags(pod_ctx, {**pod_ctx, **container.get("securityContext", {})})

        env: dict[str, str] = {}
        for var in container.get("env", []):
            source = var.get("valueFrom", {})
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "fieldRef" in source:
                env[var["name"]] = field_value(obj, source["fieldRef"]["fieldPath"])
            else:
                ref = source["secretKeyRef"]
                env[var["name"]] = self.secret_data(ref["name"])[ref["key"]]

        volumes_by_name = {v["name"]: v for v in spec.get("volumes", [])}
        binds: list[str] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes_by_name[mount["name"]]
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                flags += ["--tmpfs", mount["mountPath"] + (f":size={docker_quantity(size)}" if size else "")]
            elif "secret" in volume:
                directory = self.secret_volume(obj, volume, pod_ctx.get("fsGroup"))
                binds.append(f"{directory}:{mount['mountPath']}:ro")
            else:
                raise AssertionError(f"no emulation for volume {volume}")
        options: dict[str, Any] = {"hardening": False, "env": env, "volumes": binds, "extra": flags}
        if container.get("command"):  # a sidecar's or an extra container's own program
            options["entrypoint"] = container["command"][0]
        return options

    @staticmethod
    def argv(container: dict[str, Any]) -> list[str]:
        """What follows the image on `docker run`: the command's rest (its first word is the entrypoint), then
        the args, as the kubelet runs `command` + `args`."""
        return [*container.get("command", [])[1:], *container.get("args", [])]

    def secret_volume(self, obj: dict[str, Any], volume: dict[str, Any], fs_group: int | None) -> Path:
        source = volume["secret"]
        data = self.secret_data(source["secretName"])
        directory = self.workdir / f"{obj['metadata']['name']}-{volume['name']}"
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            path = directory / item["path"]
            path.write_text(data[item["key"]])
            path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
            if fs_group is not None:
                os.chown(path, 0, fs_group)
        return directory

    def termination_log(self, obj: dict[str, Any], container: dict[str, Any]) -> Path:
        path = self.workdir / f"{obj['metadata']['name']}-{container['name']}.termination-log"
        path.write_text("")
        path.chmod(0o666)
        return path

    def run(self, obj: dict[str, Any], name: str, timeout: float = 180) -> Run:
        """Run container NAME of OBJ's pod to completion."""
        container = self.container(obj, name)
        options = self.docker_options(obj, container)
        log = self.termination_log(obj, container)
        options["volumes"] = [*options["volumes"], f"{log}:{TERMINATION_LOG}"]
        if is_migrator(container):
            assert "command" not in container, "the chart relies on the image's ENTRYPOINT"
        proc: subprocess.CompletedProcess[str] = run_container(container["image"], self.argv(container),
                                                               timeout=timeout, **options)
        return Run(returncode=proc.returncode, output=proc.stdout + proc.stderr,
                   termination_message=log.read_text(), flags=list(options["extra"]), container=name)

    def start(self, obj: dict[str, Any], name: str) -> Container:
        """Start container NAME of OBJ's pod in the background (a server, a sidecar)."""
        container = self.container(obj, name)
        options = self.docker_options(obj, container)
        return start_container(container["image"], self.argv(container), **options)

    def run_pod(self, obj: dict[str, Any], timeout: float = 180, *, until_main: bool = False) -> PodResult:
        """Run OBJ's pod as the kubelet runs it: its init containers in order, each to exit 0 before the next,
        except native sidecars (`restartPolicy: Always`), which are started and kept running (once their
        startupProbe, if any, passes); then its main containers, to their end (UNTIL_MAIN: not, for an app
        pod whose main container serves); then the sidecars are stopped (SIGTERM). The pod stops at the first
        container that fails."""
        spec = pod_spec(obj)
        todo = [*spec.get("initContainers", []), *([] if until_main else spec["containers"])]
        sidecars: dict[str, Container] = {}
        result = PodResult()
        try:
            for container in todo:
                if container.get("restartPolicy") == "Always":
                    sidecars[container["name"]] = self.start(obj, container["name"])
                    wait_started(container, sidecars[container["name"]])
                    continue
                result.runs.append(self.run(obj, container["name"], timeout=timeout))
                if result.runs[-1].returncode != 0:
                    break
        finally:
            for name, sidecar in sidecars.items():
                sidecar.stop(grace=int(spec.get("terminationGracePeriodSeconds", 30)))
                result.sidecar_logs[name] = sidecar.logs()
                sidecar.remove()
        return result


@dataclass
class PodResult:
    """One emulated pod's end: the runs of the containers that ran to completion, in order, and the log of
    each sidecar."""

    runs: list[Run] = field(default_factory=list)
    sidecar_logs: dict[str, str] = field(default_factory=dict)


def wait_started(container: dict[str, Any], running: Container, timeout: float = 30) -> None:
    """A native sidecar's startupProbe (tcpSocket, on the pod's network: the host's here) passing, which the
    kubelet waits for before it starts the next container; a sidecar without one only has to be running."""
    probe = container.get("startupProbe", {}).get("tcpSocket")

    def started() -> bool:
        if not running.running():
            pytest.fail(f"sidecar {container['name']} exited: {running.logs()[-2000:]}")
        if probe is None:
            return True
        try:
            socket.create_connection(("127.0.0.1", int(probe["port"])), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(started, timeout=timeout, what=f"sidecar {container['name']}'s startupProbe")
