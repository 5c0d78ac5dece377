"""What the migrations' SQL depends on reaches the run without the app's code (issue 18, items 1 to 3).

A history written against a metadata with a naming convention (the shape of a real project, see
tests/alembic_projects.py) and a Flask-Migrate project made by the installed flask-migrate package's own `flask db
init`: adopted where the models import, then migrated by migrator without them, the schema equals what plain
Alembic (or `flask db upgrade`) makes with the models; without the captured convention the run stops before the
first migration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.alembic_projects import (
    ALEMBIC_INI,
    CONVENTION,
    NAMED_MODELS,
    NAMED_REVISIONS,
    SCHEMA_QUERY,
    write_convention_in_env_project,
    write_named_project,
)
from tests.conftest import fresh_database, migrator_env, query, run_migrator
from tests.postgres import Server

BIN = Path(sys.executable).parent


@pytest.fixture
def second_url(pg_server: Server) -> Iterator[str]:
    """Another empty database on the same server: where the reference (plain Alembic) run goes."""
    yield from fresh_database(pg_server)


def sqlalchemy_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def schema(url: str) -> list[tuple[object, ...]]:
    return query(url, SCHEMA_QUERY)


def plain_alembic(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's own env.py, as the plain alembic command runs it (with the models importable)."""
    ini = ALEMBIC_INI.replace("driver://user:pass@localhost/dbname", sqlalchemy_url(url).replace("%", "%%"))
    (project / "alembic.ini").write_text(ini)
    return subprocess.run([str(BIN / "alembic"), *args], cwd=project, capture_output=True, text=True, timeout=120,
                          check=False, env=migrator_env(None))


def reference_and_adopted(write: Callable[[Path], Path], tmp_path: Path,
                          second_url: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The project WRITE makes, migrated by plain Alembic with its own env.py into SECOND_URL (the reference), and
    another copy adopted where the models import: that copy, and what adopt printed."""
    reference = write(tmp_path / "reference")
    upgraded = plain_alembic(reference, second_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    project = write(tmp_path / "courses")
    adopted = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert adopted.returncode == 0, adopted.stderr
    return project, adopted


def test_a_naming_convention_reaches_the_run_without_the_models(tmp_path: Path, database_url: str,
                                                                 second_url: str) -> None:
    project, adopted = reference_and_adopted(write_named_project, tmp_path, second_url)
    env_py = (project / "alembic" / "env.py").read_text()
    assert "naming_convention=NAMING_CONVENTION" in env_py
    assert f"imported Base.metadata (1 table(s)) with {sys.executable} to capture its naming convention" \
        in adopted.stdout
    assert "note: env.py.orig line 8: `from dotenv_settings import settings` is not carried over: importing it " \
           "adds no table to Base.metadata" in adopted.stdout
    shutil.rmtree(project / "courses")  # the migration image: migrations, seeds, migrator.toml; no app code

    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert schema(database_url) == schema(second_url)
    assert ("constraint", "courses", "uq_courses_token", "UNIQUE (token)") in schema(database_url)


def test_a_convention_the_env_py_sets_reaches_the_run_without_the_models(tmp_path: Path, database_url: str,
                                                                         second_url: str) -> None:
    """fractal-server's shape: env.py sets the convention on the models' metadata itself (before importing the
    models), which the models' own metadata does not have."""
    project, adopted = reference_and_adopted(write_convention_in_env_project, tmp_path, second_url)
    assert "with target_metadata = Base.metadata with its naming convention (as env.py.orig line 17 sets it)" \
        in adopted.stdout
    # where the models import, the new env.py's target_metadata() prepares them as the original did: they agree
    rendered = run_migrator(["sql"], cwd=project, database_url=None)
    assert rendered.returncode == 0, rendered.stderr
    shutil.rmtree(project / "courses")  # the migration image: migrations, seeds, migrator.toml; no app code

    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert schema(database_url) == schema(second_url)
    assert ("constraint", "courses", "pk_courses", "PRIMARY KEY (id)") in schema(database_url)


def test_a_run_without_the_models_or_their_convention_stops_before_the_first_migration(
        tmp_path: Path, database_url: str) -> None:
    project = write_named_project(tmp_path / "courses")
    assert run_migrator(["init", "--adopt"], cwd=project, database_url=None).returncode == 0
    env_py = project / "alembic" / "env.py"
    env_py.write_text(env_py.read_text().replace("naming_convention=NAMING_CONVENTION, ", ""))
    shutil.rmtree(project / "courses")

    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 2, migrated.stderr
    [line] = migrated.stderr.splitlines()
    assert f"{env_py}: target_metadata() failed (ModuleNotFoundError: No module named 'courses'), and " \
           "run_migrations() has no naming_convention to use instead" in line
    assert "== Running" not in migrated.stderr
    assert query(database_url, "SELECT to_regclass('courses'), to_regclass('alembic_version')") == [(None, None)]


def test_models_whose_convention_changed_since_adopt_are_refused(tmp_path: Path) -> None:
    project = write_named_project(tmp_path / "courses")
    assert run_migrator(["init", "--adopt"], cwd=project, database_url=None).returncode == 0
    models = project / "courses" / "models.py"
    models.write_text(NAMED_MODELS.replace("'pk_%(table_name)s'", "'%(table_name)s_pkey'"))
    rendered = run_migrator(["sql"], cwd=project, database_url=None)
    assert rendered.returncode == 2, rendered.stderr
    [line] = rendered.stderr.splitlines()
    assert "run_migrations(naming_convention=...) differs from the models' metadata" in line
    assert line.endswith(f"pass naming_convention={ {**CONVENTION, 'pk': '%(table_name)s_pkey'}!r}")


# --- Flask-Migrate --------------------------------------------------------------------------------------

FLASK_APP = f'''\
import os

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy(metadata=sa.MetaData(naming_convention={CONVENTION!r}))
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("APP_DATABASE_URL", "sqlite://")
db.init_app(app)
migrate = Migrate(app, db)


class Course(db.Model):
    __tablename__ = "courses"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100))
'''


def flask(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `flask` command of the installed Flask (and flask-migrate's `flask db`), in PROJECT."""
    return subprocess.run([str(BIN / "flask"), *args], cwd=project, capture_output=True, text=True, timeout=120,
                          check=False, env={**migrator_env(None), "FLASK_APP": "app.py", **env})


def write_flask_project(root: Path, *init: str) -> Path:
    """A Flask app whose migrations/ is what `flask db init` writes from the installed flask-migrate's templates,
    with the revisions of the naming-convention history."""
    root.mkdir()
    (root / "app.py").write_text(FLASK_APP)
    created = flask(root, "db", "init", *init)
    assert created.returncode == 0, created.stderr
    for revision, (name, down, upgrade, downgrade) in NAMED_REVISIONS.items():
        (root / "migrations" / "versions" / f"{revision}_{name}.py").write_text(
            f'"""{name}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\nrevision = {revision!r}\n'
            f"down_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{upgrade}\n\n\ndef downgrade():\n{downgrade}\n")
    return root


def test_flask_migrate_is_adopted_with_its_convention_and_options(tmp_path: Path, database_url: str,
                                                                  second_url: str) -> None:
    reference = write_flask_project(tmp_path / "reference")
    upgraded = flask(reference, "db", "upgrade", APP_DATABASE_URL=sqlalchemy_url(second_url))
    assert upgraded.returncode == 0, upgraded.stderr

    project = write_flask_project(tmp_path / "shop")
    adopted = run_migrator(["init", "--adopt"], cwd=project, database_url=None, FLASK_APP="app.py")
    assert adopted.returncode == 0, adopted.stderr
    assert "rewrote migrations/env.py: it delegates to migrator, with target_metadata = " \
           "current_app.extensions['migrate'].db.metadata with its naming convention and the options " \
           "compare_type, render_as_batch" in adopted.stdout
    assert "note: the Flask app's database URL (SQLALCHEMY_DATABASE_URI) is no longer read" in adopted.stdout
    os.remove(project / "app.py")  # the migration image: no app, no Flask

    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert schema(database_url) == schema(second_url)


def test_flask_migrate_multi_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    project = write_flask_project(tmp_path / "shop", "--multidb")
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    adopted = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert adopted.returncode == 2, adopted.stdout + adopted.stderr
    [line] = adopted.stderr.splitlines()
    assert "init --adopt: the env.py is Flask-Migrate's multi-database env.py (`flask db init --multidb`)" in line
    assert {path: path.read_bytes() for path in project.rglob("*") if path.is_file()} == before


def test_verify_does_not_take_the_conventions_stand_in_for_the_models(tmp_path: Path) -> None:
    """Without the models, the run's metadata carries only the captured convention, no tables: verify's drift
    check skips (no models to compare), instead of finding every table missing from them."""
    project = write_named_project(tmp_path / "courses")
    assert run_migrator(["init", "--adopt"], cwd=project, database_url=None).returncode == 0
    shutil.rmtree(project / "courses")
    verified = run_migrator(["verify"], cwd=project, database_url=None)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "skip  drift: env.py's target_metadata() failed where verify runs (ModuleNotFoundError: " in verified.stdout
