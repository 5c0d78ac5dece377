"""The Docker fixtures of tests/docker.py: the images under test, for the smoke suite's cluster-free parts (the
image loading of test_smoke_helpers.py, the scenario emulation, the README's kubectl run command)."""

from __future__ import annotations

from tests.docker import app_image, migrator_image

__all__ = ["app_image", "migrator_image"]
