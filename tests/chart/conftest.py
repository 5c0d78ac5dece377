"""The Docker fixtures of tests/docker.py, for the pod-spec emulation tests."""

from __future__ import annotations

from tests.docker import app_image, containers, migrator_image

__all__ = ["app_image", "containers", "migrator_image"]
