"""The Docker fixture of tests/docker.py, for the offline half of the image loading (test_smoke_helpers.py)."""

from __future__ import annotations

from tests.docker import migrator_image

__all__ = ["migrator_image"]
