"""The migrator image carries the manifest of its revision files, written by its build where the files lie, and
a no-op `migrate` in the image (read-only root, uid 10001) trusts it: it reads no revision file."""

from __future__ import annotations

import json

import pytest

from migrator.manifest import RACY_SECONDS
from tests.conftest import HEAD, assert_no_secret
from tests.docker import run_container

pytestmark = [pytest.mark.docker]

READ_HEADER = "print(open('/app/migrations/.migrator-manifest').read().partition('\\n--\\n')[0])"


def test_the_image_build_writes_the_manifest(migrator_image: str) -> None:
    proc = run_container(migrator_image, ["-c", READ_HEADER], entrypoint="python")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()
    assert header[0] == "migrator-manifest 1"
    assert f"heads {HEAD}" in header


def test_the_image_manifest_needs_no_file_hashed_at_start(migrator_image: str) -> None:
    """The build sets /app's mtimes far back before it writes the manifest: no file is recorded as written within
    the manifest's racy window (each such file would be hashed on every start), and the version directory's time
    is trusted (no listing)."""
    proc = run_container(migrator_image, ["-c", READ_HEADER], entrypoint="python")
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split(" ", 1) for line in proc.stdout.splitlines()[1:])
    written_ns = int(fields["written_ns"])
    assert "racy" not in fields, proc.stdout
    assert json.loads(fields["directories"]) == [["versions", 315532800 * 10**9]]
    assert written_ns - 315532800 * 10**9 > RACY_SECONDS * 10**9


def test_a_no_op_migrate_in_the_image_trusts_the_manifest(migrator_image: str, migrated_database: str) -> None:
    proc = run_container(migrator_image, ["migrate"], env={"DATABASE_URL": migrated_database,
                                                           "MIGRATOR_CONNECT_TIMEOUT": "10",
                                                           "MIGRATOR_LOG_LEVEL": "debug"})
    output = proc.stdout + proc.stderr
    assert_no_secret(output)
    assert proc.returncode == 0, output
    assert "Migrations already up" in output
    assert "manifest" not in output  # no debug line saying it is missing or stale
