"""Fixtures for the image tests: the images (built once per session) and databases prepared through them.

Every container runs with the chart's hardening on the host network, against the TCP test PostgreSQL.
"""

from __future__ import annotations

import pytest

from tests.conftest import assert_no_secret
from tests.docker import app_image, containers, migrator_image, run_container

__all__ = ["app_image", "containers", "migrated_database", "migrator_image"]


def migrate(image: str, url: str, *args: str) -> str:
    """Run the migrator image with ARGS (default CMD when none) and return its output; it must succeed."""
    proc = run_container(image, list(args), env={"DATABASE_URL": url, "MIGRATOR_CONNECT_TIMEOUT": "10"})
    output = proc.stdout + proc.stderr
    assert_no_secret(output)
    assert proc.returncode == 0, f"migrator {' '.join(args) or '(default CMD)'} exited {proc.returncode}:\n{output}"
    return output


@pytest.fixture
def migrated_database(migrator_image: str, tcp_database_url: str) -> str:
    """A new database migrated to head and seeded by the migrator image, as a release would do."""
    migrate(migrator_image, tcp_database_url)
    migrate(migrator_image, tcp_database_url, "seed")
    return tcp_database_url
