"""Both images: the hardening the chart relies on, and nothing in them that a release image must not carry."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import assert_no_secret
from tests.docker import docker, run_container

pytestmark = pytest.mark.docker

COMPILERS = ("gcc", "cc", "c++", "g++", "cpp", "clang", "tcc", "ld", "as", "make")
INSTALLERS = ("pip", "pip3", "easy_install")
MAX_MIGRATOR_LAYERS_MB = 50


@pytest.fixture(params=["migrator", "app"])
def image(request):
    return request.getfixturevalue(f"{request.param}_image")


# Each image's exec-form entrypoint (its process, Python, is PID 1 and gets SIGTERM) and the passwd name of uid
# 10001 (libpq and getpass look it up), as image/*/Dockerfile write them.
ENTRYPOINTS = {"migrator": ["migrator"], "app": ["python3", "-m", "users_app"]}
USER_NAMES = {"migrator": "migrator", "app": "app"}


def inspect(image: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(docker("image", "inspect", image).stdout)[0]
    return info


@pytest.mark.parametrize("kind", sorted(ENTRYPOINTS))
def test_image_config_runs_as_10001_in_exec_form(kind: str, request: pytest.FixtureRequest) -> None:
    config = inspect(request.getfixturevalue(f"{kind}_image"))["Config"]
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert config["Entrypoint"] == ENTRYPOINTS[kind]
    assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])
    labels = config["Labels"]
    for key in ("source", "version", "revision", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


def test_migrator_image_entrypoint_and_default_command(migrator_image):
    config = inspect(migrator_image)["Config"]
    assert config["Entrypoint"] == ["migrator"]
    assert config["Cmd"] == ["migrate"]


@pytest.mark.parametrize("kind", sorted(USER_NAMES))
def test_runs_as_uid_and_gid_10001_without_being_told(kind: str, request: pytest.FixtureRequest) -> None:
    proc = run_container(request.getfixturevalue(f"{kind}_image"), ["-c", "id -u; id -g; id -un"], entrypoint="sh",
                         hardening=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10001", "10001", USER_NAMES[kind]]


def test_no_compiler_and_no_pip(image):
    tools = " ".join(COMPILERS + INSTALLERS)
    proc = run_container(image, ["-c", f"for t in {tools}; do command -v $t; done; exit 0"], entrypoint="sh")
    assert proc.stdout.split() == [], "build tools on PATH"
    # Anywhere in the image, not only on PATH: executables named like a compiler, and installer packages.
    # (Names alone would flag runtime parts such as gcc-12-base, the package of libgcc_s.)
    names = [arg for name in ("gcc*", "cc1*", "clang*", "*-linux-gnu-gcc*", "pip", "pip3*")
             for arg in ("-o", "-name", name)][1:]
    proc = run_container(image, ["/", "-xdev",
                                 "(", "-type", "f", "-o", "-type", "l", ")", "-perm", "/111", "(", *names, ")",
                                 "-print", "-o",
                                 "-type", "d", "(", "-name", "pip", "-o", "-name", "setuptools", ")", "-print"],
                         entrypoint="find", hardening=False, extra=["--user", "0:0"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []
    for module in ("pip", "setuptools"):
        proc = run_container(image, ["-c", f"import {module}"], entrypoint="python3")
        assert f"No module named '{module}'" in proc.stderr, module


def test_every_python_file_is_byte_compiled_unchecked(image):
    """Each .py under /app and /opt/venv has a hash-based, unchecked .pyc: valid on a read-only root."""
    script = """
import importlib.util, pathlib, sys
missing, checked = [], 0
for root in ("/app", "/opt/venv"):
    for src in pathlib.Path(root).rglob("*.py"):
        pyc = pathlib.Path(importlib.util.cache_from_source(str(src)))
        if not pyc.exists():
            missing.append(f"{src}: no pyc")
            continue
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != 0b01:
            missing.append(f"{src}: flags {flags}")
        checked += 1
print(checked)
print("\\n".join(missing))
"""
    proc = run_container(image, ["-c", script], entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    checked, *missing = proc.stdout.splitlines()
    assert int(checked) > 0
    assert [m for m in missing if m] == []


def test_migrator_loads_only_bytecode_on_a_read_only_root(migrator_image, tcp_database_url):
    """A real migrate, verbose imports: no module (library, migration, seed) is compiled from source."""
    proc = run_container(migrator_image, ["migrate"],
                         env={"DATABASE_URL": tcp_database_url, "PYTHONVERBOSE": "1"})
    assert_no_secret(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = re.findall(r"^# code object from '?([^'\n]+)'?$", proc.stderr, re.MULTILINE)
    assert any("/app/migrations/versions/__pycache__/" in path for path in loaded), "migrations loaded from .pyc"
    from_source = [path for path in loaded if path.endswith(".py")]
    assert from_source == []


def test_migrator_layers_add_at_most_50_mb_to_the_base(migrator_image):
    image = inspect(migrator_image)
    base = image["Config"]["Labels"]["org.opencontainers.image.base.name"]
    base_info = docker("image", "inspect", base, check=False)
    if base_info.returncode != 0:
        pytest.skip(f"the base {base} is not in the local image store, so its size is unknown here")
    added = image["Size"] - json.loads(base_info.stdout)[0]["Size"]
    assert 0 < added <= MAX_MIGRATOR_LAYERS_MB * 1_000_000, f"the migrator layers add {added / 1e6:.1f} MB"
