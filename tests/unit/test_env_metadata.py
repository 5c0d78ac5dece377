"""How `init --adopt` reads the metadata an env.py hands to Alembic, when the env.py itself changes it (issue 18,
items 1 and 5): the shapes of real projects that set the naming convention in env.py (fractal-server's
`target_metadata.naming_convention = NAMING_CONVENTION` imported from a module, langflow's dict in env.py, a
`MetaData(naming_convention=...)` built there, `SQLModel.metadata.naming_convention = ...`), hypothesis/h's
metadata passed to context.configure() only online, and what adopt cannot evaluate."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

from migrator import env_adoption, env_notes
from migrator.errors import ConfigError
from migrator.metadata_capture import Captured, capture

CONVENTION = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
              "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}

# fractal-server's shape: the convention imported from a module of the app, set on SQLModel's metadata in env.py,
# the models imported after it (so that autogenerate sees their constraints named), one online runner.
SET_IN_ENV = """\
from logging.config import fileConfig

from alembic import context
from tracker.db import Base

from tracker.naming import NAMING_CONVENTION

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = Base.metadata
target_metadata.naming_convention = NAMING_CONVENTION
# the models after the convention, which names their constraints
from tracker import models  # noqa


def run_migrations_online() -> None:
    from tracker.session import engine

    with engine().connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def models_of(source: str, tree: ast.Module | None = None) -> env_adoption.Models | None:
    return env_adoption.find_models(tree or ast.parse(source), source)


def sources(statements: list[ast.stmt]) -> list[str]:
    return [ast.unparse(s) for s in statements]


def test_a_convention_env_py_sets_is_carried_with_the_statements_that_set_it() -> None:
    tree = ast.parse(SET_IN_ENV)
    models = models_of(SET_IN_ENV, tree)
    assert models is not None and models.expression == "target_metadata" and models.shown == "Base.metadata"
    assert sources(models.needed) == ["from tracker.db import Base", "from tracker.naming import NAMING_CONVENTION",
                                      "target_metadata = Base.metadata",
                                      "target_metadata.naming_convention = NAMING_CONVENTION"]
    # the probe runs them, and the other top-level statements that need no Alembic context, in the env.py's order
    assert sources(models.statements) == ["from logging.config import fileConfig", *sources(models.needed),
                                          "from tracker import models"]
    captured = Captured(naming_convention=CONVENTION, python="python3",
                        effects={"15": {"tables": ["projects", "tasks"], "convention": False}})
    found = env_adoption.metadata_block(models, captured)
    assert found.summary == ("target_metadata = Base.metadata with its naming convention (as env.py.orig line 13 "
                             "sets it)")
    assert found.block.split('installed."""\n')[1].split("\n\n\n")[0] == (
        "    from tracker.db import Base\n"
        "    from tracker.naming import NAMING_CONVENTION\n"
        "    target_metadata = Base.metadata\n"
        "    target_metadata.naming_convention = NAMING_CONVENTION\n"
        "    from tracker import models  # noqa: F401  (it adds the table(s) projects, tasks to the metadata)\n\n"
        "    return target_metadata")
    assert found.notes == []
    notes = env_notes.leftovers(tree, found.carried)
    assert [note for note in notes if "naming_convention" in note or "line 15" in note] == []


@pytest.mark.parametrize(("preparing", "needed"), [
    # langflow's shape: the convention as a dict in env.py itself
    ("from tracker.db import Base\nNAMING_CONVENTION = {'pk': 'pk_%(table_name)s'}\ntarget_metadata = Base.metadata\n"
     "target_metadata.naming_convention = NAMING_CONVENTION\n",
     ["from tracker.db import Base", "NAMING_CONVENTION = {'pk': 'pk_%(table_name)s'}",
      "target_metadata = Base.metadata", "target_metadata.naming_convention = NAMING_CONVENTION"]),
    # set on the models' metadata before target_metadata names it
    ("from sqlmodel import SQLModel\nfrom tracker.naming import NC\nSQLModel.metadata.naming_convention = NC\n"
     "target_metadata = SQLModel.metadata\n",
     ["from sqlmodel import SQLModel", "from tracker.naming import NC", "SQLModel.metadata.naming_convention = NC",
      "target_metadata = SQLModel.metadata"]),
    # a MetaData built in env.py, its convention changed in place
    ("import sqlalchemy as sa\nfrom tracker.naming import NC\ntarget_metadata = sa.MetaData(naming_convention=NC)\n"
     "target_metadata.naming_convention.update({'ck': 'ck_%(table_name)s_%(constraint_name)s'})\n",
     ["import sqlalchemy as sa", "from tracker.naming import NC", "target_metadata = sa.MetaData(naming_convention=NC)",
      "target_metadata.naming_convention.update({'ck': 'ck_%(table_name)s_%(constraint_name)s'})"]),
])
def test_every_way_env_py_sets_a_convention_is_part_of_the_metadata(preparing: str, needed: list[str]) -> None:
    source = f"from alembic import context\n{preparing}\ncontext.configure(target_metadata=target_metadata)\n"
    models = models_of(source)
    assert models is not None and sources(models.needed) == needed


def test_metadata_passed_only_online_is_read_and_the_offline_change_noted() -> None:
    """hypothesis/h's shape: no top-level target_metadata; the online run passes the models' metadata, the offline
    one none."""
    source = textwrap.dedent("""\
        from alembic import context
        from h import db, models  # noqa: F401

        def run_migrations_offline():
            context.configure(url="postgresql://", transaction_per_migration=True)

        def run_migrations_online():
            context.configure(connection=None, target_metadata=db.Base.metadata)

        if context.is_offline_mode():
            run_migrations_offline()
        else:
            run_migrations_online()
        """)
    models = models_of(source)
    assert models is not None and models.expression == "db.Base.metadata"
    assert sources(models.needed) == ["from h import db, models"]
    assert models.notes == ["env.py.orig line 5: context.configure() without target_metadata is now given "
                            "db.Base.metadata and its naming convention too (offline SQL included)"]
    block = env_adoption.metadata_block(models, Captured(naming_convention={}, python="python3")).block
    assert "    from h import db, models  # noqa: F401\n\n    return db.Base.metadata\n" in block


@pytest.mark.parametrize(("source", "refusal"), [
    ("from alembic import context\nfrom tracker.db import Base\ntarget_metadata = Base.metadata\n"
     "def run_migrations_online():\n    target_metadata.naming_convention = {'pk': 'pk_%(table_name)s'}\n"
     "    context.configure(target_metadata=target_metadata)\nrun_migrations_online()\n",
     "env.py line 5 (in run_migrations_online()): `target_metadata.naming_convention` sets a naming convention "
     "where adopt cannot evaluate it"),
    ("from alembic import context\nimport sqlalchemy as sa\nconfig = context.config\n"
     "target_metadata = sa.MetaData(schema=config.get_main_option('schema'))\n"
     "context.configure(target_metadata=target_metadata)\n",
     "env.py line 4: `target_metadata = sa.MetaData(schema=config.get_main_option('schema'))` prepares "
     "target_metadata with Alembic's context"),
    ("from alembic import context\nfrom a import A\nfrom b import B\n"
     "context.configure(target_metadata=A.metadata)\ncontext.configure(target_metadata=B.metadata)\n",
     "env.py passes context.configure() different metadata (A.metadata and B.metadata)"),
    ("from alembic import context\nfrom tracker.db import get\ndef run_migrations_online():\n"
     "    metadata = get()\n    context.configure(target_metadata=metadata)\nrun_migrations_online()\n",
     "env.py passes target_metadata=metadata, which adopt cannot import by itself"),
])
def test_a_metadata_adopt_cannot_evaluate_is_refused(source: str, refusal: str) -> None:
    with pytest.raises(ConfigError) as failed:
        models_of(source)
    assert refusal in str(failed.value) and str(failed.value).endswith("(nothing was written)")


# --- the probe, in a Python that imports the app ----------------------------------------------------------

APP = {
    "tracker/__init__.py": "",
    "tracker/db.py": "import sqlalchemy as sa\nfrom sqlalchemy.orm import DeclarativeBase\n\n\n"
                     "class Base(DeclarativeBase):\n    metadata = sa.MetaData()\n",
    "tracker/naming.py": f"NAMING_CONVENTION = {CONVENTION!r}\n",
    "tracker/models.py": "import sqlalchemy as sa\nfrom sqlalchemy.orm import Mapped, mapped_column\n\n"
                         "from tracker.db import Base\n\n\nclass Project(Base):\n    __tablename__ = 'projects'\n\n"
                         "    id: Mapped[int] = mapped_column(primary_key=True)\n"
                         "    name: Mapped[str] = mapped_column(sa.String(50), unique=True)\n",
    "tracker/settings.py": "DEBUG = False\n",
    # an app module that sets the convention when imported: the probe sees it, whatever the env.py's text says
    "tracker/conventions.py": "from tracker.db import Base\n\n"
                              "Base.metadata.naming_convention = {'pk': 'pk_%(table_name)s'}\n",
}


def write_app(root: Path) -> Path:
    for name, text in APP.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def probe(root: Path, source: str) -> tuple[env_adoption.Models, Captured]:
    models = models_of(source)
    assert models is not None
    request = models.probe_request([str(root)], str(root / "migrations" / "env.py"))
    return models, capture(root, request, "the models")


def test_the_probe_reads_the_convention_after_the_env_py_set_it(tmp_path: Path) -> None:
    models, captured = probe(write_app(tmp_path), SET_IN_ENV.replace("from tracker import models  # noqa\n",
                                                                     "from tracker import models, settings\n"))
    assert captured.naming_convention == CONVENTION and captured.tables == 1 and captured.python == sys.executable
    assert captured.effects == {"15": {"tables": ["projects"], "convention": False}}
    assert captured.failed == {}
    assert "from tracker import models, settings  # noqa: F401  (it adds the table(s) projects to the metadata)" \
        in env_adoption.metadata_block(models, captured).block


def test_an_import_that_sets_the_convention_is_carried(tmp_path: Path) -> None:
    source = ("import os\nfrom alembic import context\nfrom tracker.db import Base\nimport tracker.conventions\n"
              "import tracker.settings\nURL = os.environ['TRACKER_URL_NOT_SET_HERE']\ntarget_metadata = Base.metadata\n"
              "context.configure(target_metadata=target_metadata)\n")
    models, captured = probe(write_app(tmp_path), source)
    assert captured.naming_convention == {"pk": "pk_%(table_name)s"}
    assert captured.effects == {"4": {"tables": [], "convention": True}}
    assert captured.failed == {"6": "KeyError: 'TRACKER_URL_NOT_SET_HERE'"}
    env_adoption.refuse_failures(models, captured)  # not the app's: it cannot change the metadata
    found = env_adoption.metadata_block(models, captured)
    assert "    import tracker.conventions  # noqa: F401  (it sets the metadata's naming convention)" in found.block
    assert found.notes == [
        "env.py.orig line 5: `import tracker.settings` is not carried over: importing it adds no table to "
        "Base.metadata and leaves its naming convention as it is"]


def test_an_app_statement_that_fails_where_adopt_runs_it_is_refused(tmp_path: Path) -> None:
    """fractal-server's models import fails without the app's settings (POSTGRES_DB): adopt cannot tell what it
    would have done to the metadata."""
    source = ("from alembic import context\nfrom tracker.db import Base\nimport tracker.missing\n"
              "target_metadata = Base.metadata\ncontext.configure(target_metadata=target_metadata)\n")
    models, captured = probe(write_app(tmp_path), source)
    with pytest.raises(ConfigError) as failed:
        env_adoption.refuse_failures(models, captured)
    assert str(failed.value) == (
        "init --adopt: env.py line 3: `import tracker.missing` failed where adopt ran the env.py (ModuleNotFoundError: "
        "No module named 'tracker.missing'), so adopt cannot tell whether it changes the metadata Alembic uses (its "
        "tables, its naming convention); run init --adopt where it runs: the app's virtualenv active (VIRTUAL_ENV) "
        "and its settings in the environment (nothing was written)")
