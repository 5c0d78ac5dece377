"""Docker for the tests: is an engine usable, build the images once per session, run hardened containers.

Shared by the image tests and the chart tests (which emulate a rendered pod spec with `run_container`:
readOnlyRootFilesystem -> read_only, emptyDir -> tmpfs, runAsUser -> user, dropped capabilities).

Secrets never go on a command line: a container's environment is passed as `-e NAME` (no value) with the
value in the docker client's own environment, so it shows in no `ps` listing and in no error message.

`MIGRATOR_IMAGE` / `APP_IMAGE` name prebuilt images to test; otherwise the session builds them once with
image/build.sh (cached layers make that a few seconds when nothing changed).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARDENING_USER = "10001:10001"
LABEL = "migrator-tests"
# The variables the docker client itself needs; nothing else of the test process leaks into its env.
CLIENT_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


def docker_binary() -> str | None:
    """The docker client: $DOCKER, else Debian's /usr/bin/docker (its BuildKit needs no registry), else PATH's."""
    explicit = os.environ.get("DOCKER")
    if explicit:
        return explicit
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


@functools.cache
def docker_problem() -> str | None:
    """Why Docker cannot be used here (one line), or None when an engine answers."""
    binary = docker_binary()
    if binary is None:
        return "no docker client (install docker.io, or run image/docker-setup.sh)"
    try:
        proc = subprocess.run([binary, "version", "--format", "{{.Server.Version}}"], check=False,
                              capture_output=True, text=True, timeout=30, env=client_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker version failed: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers ({detail}); start one with image/docker-setup.sh"
    return None


def require_docker() -> str:
    """The docker client, or skip the test saying why Docker is not usable."""
    problem = docker_problem()
    if problem is not None:
        pytest.skip(f"Docker is not usable: {problem}")
    binary = docker_binary()
    assert binary is not None
    return binary


def client_env(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The docker client's environment: what it needs, plus VALUES for `-e NAME` to pick up."""
    env = {k: os.environ[k] for k in CLIENT_ENV if k in os.environ}
    env.update(values or {})
    return env


def docker(*args: str, timeout: float = 120, check: bool = True,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker client; VALUES in ENV reach containers only through `-e NAME` flags in ARGS."""
    proc = subprocess.run([require_docker(), *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env=client_env(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


# --- containers -----------------------------------------------------------------------------------------

@dataclass
class RunOptions:
    """How a container runs. Defaults: the hardening the Helm chart applies, on the host network."""

    env: Mapping[str, str] = field(default_factory=dict)
    hardening: bool = True
    network: str = "host"
    user: str = HARDENING_USER
    tmpfs: Sequence[str] = ("/tmp",)
    volumes: Sequence[str] = ()  # "src:dest:ro" as for `docker run -v`
    entrypoint: str | None = None
    name: str | None = None
    extra: Sequence[str] = ()  # any other `docker run` flags

    def flags(self) -> list[str]:
        flags = ["--network", self.network, "--label", LABEL]
        if self.hardening:
            flags += ["--read-only", "--user", self.user, "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges"]
            for path in self.tmpfs:
                flags += ["--tmpfs", path]
        for volume in self.volumes:
            flags += ["-v", volume]
        for name in self.env:
            flags += ["-e", name]  # the value comes from the client's environment, never from argv
        if self.entrypoint is not None:
            flags += ["--entrypoint", self.entrypoint]
        if self.name is not None:
            flags += ["--name", self.name]
        return [*flags, *self.extra]


def run_container(image: str, args: Sequence[str] = (), *, timeout: float = 180,
                  **options: Any) -> subprocess.CompletedProcess[str]:
    """`docker run --rm IMAGE ARGS` to completion; OPTIONS as RunOptions (env, hardening, network, ...).

    The exit code is the container's; docker's own failures are 125-127. On TIMEOUT the container is
    removed too (killing the client alone would leave it running) and the test fails.
    """
    opts = RunOptions(**options)
    if opts.name is None:
        opts.name = f"migrator-test-{uuid.uuid4().hex[:10]}"
    try:
        return docker("run", "--rm", *opts.flags(), image, *args, timeout=timeout, check=False, env=opts.env)
    except subprocess.TimeoutExpired:
        docker("rm", "--force", opts.name, check=False)
        pytest.fail(f"{image} {' '.join(args)} still running after {timeout}s (removed)")


@dataclass
class Container:
    """A detached container; `remove()` (or the `containers` fixture) cleans it up."""

    id: str
    name: str

    def logs(self) -> str:
        proc = docker("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def wait(self, timeout: float = 180) -> int:
        return int(docker("wait", self.id, timeout=timeout).stdout.strip())

    def stop(self, grace: int = 10, timeout: float = 60) -> None:
        docker("stop", "--time", str(grace), self.id, timeout=timeout)

    def exit_code(self) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", self.id).stdout.strip())

    def running(self) -> bool:
        return docker("inspect", "--format", "{{.State.Running}}", self.id).stdout.strip() == "true"

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.id, check=False)


def start_container(image: str, args: Sequence[str] = (), **options: Any) -> Container:
    """`docker run --detach`: for servers, concurrency and signals. Not removed on exit: logs stay readable."""
    opts = RunOptions(**options)
    if opts.name is None:
        opts.name = f"migrator-test-{uuid.uuid4().hex[:10]}"
    proc = docker("run", "--detach", *opts.flags(), image, *args, env=opts.env)
    return Container(id=proc.stdout.strip(), name=opts.name)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    """Append the containers a test starts: they are removed after it, whatever happened."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def wait_for(check: Callable[[], object], timeout: float = 30, interval: float = 0.2,
             what: str = "condition") -> None:
    """Poll CHECK until it returns something true; fails the test naming WHAT."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- images ---------------------------------------------------------------------------------------------

def build_image(target: str, tag: str) -> str:
    """Build TARGET (`migrator` or `app`) as TAG with image/build.sh; fails the session with its output."""
    require_docker()
    env = {**os.environ, {"migrator": "MIGRATOR_IMAGE", "app": "APP_IMAGE"}[target]: tag}
    proc = subprocess.run(["bash", str(ROOT / "image" / "build.sh"), target], check=False, capture_output=True,
                          text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"image/build.sh {target} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return tag


def _image(target: str, variable: str, default_tag: str) -> str:
    prebuilt = os.environ.get(variable)
    if prebuilt:
        require_docker()
        if docker("image", "inspect", prebuilt, check=False).returncode != 0:
            pytest.fail(f"{variable}={prebuilt} names no local image")
        return prebuilt
    return build_image(target, default_tag)


@pytest.fixture(scope="session")
def migrator_image() -> str:
    """The migrator image under test: $MIGRATOR_IMAGE, or built once per session as migrator:test."""
    return _image("migrator", "MIGRATOR_IMAGE", "migrator:test")


@pytest.fixture(scope="session")
def app_image() -> str:
    """The app image under test: $APP_IMAGE, or built once per session as migrator-app:test."""
    return _image("app", "APP_IMAGE", "migrator-app:test")
