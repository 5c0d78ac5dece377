"""What `migrator init --adopt` carries over from the env.py shapes real Alembic projects have."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from migrator import scaffold
from migrator.errors import ConfigError
from tests.alembic_projects import ALEMBIC_INI, STOCK_ENV, write_stock_project
from tests.conftest import ROOT

# Alembic's async template with the app's models wired in above target_metadata, some only to register them.
ASYNC_TEMPLATE = """\
import asyncio
from logging.config import fileConfig

from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from alembic import context

from apps import settings
from apps.todos.models import Todo
from core.db import Base

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
config.set_main_option("sqlalchemy.url", settings.SQLALCHEMY_DATABASE_URL)
target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    connectable = async_engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                           poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

# FastAPI's full-stack template: sys.path changed at the top, SQLModel's metadata, settings for the URL.
SQLMODEL_TEMPLATE = """\
import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

sys.path.append(os.path.dirname(os.path.dirname(__file__)))

config = context.config
fileConfig(config.config_file_name)

from app.models import SQLModel  # noqa
from app.core.config import settings # noqa

target_metadata = SQLModel.metadata


def run_migrations_offline():
    context.configure(url=settings.URL, target_metadata=target_metadata, literal_binds=True, compare_type=True)
"""


def metadata_of(source: str) -> scaffold.Metadata:
    return scaffold.carry_metadata(ast.parse(textwrap.dedent(source)))


def test_the_async_template_keeps_every_app_import_and_marks_the_unused_ones() -> None:
    found = metadata_of(ASYNC_TEMPLATE)
    assert found.summary == "target_metadata = Base.metadata"
    assert found.notes == []
    assert found.block.splitlines()[1:5] == [
        "try:  # your models' metadata, for autogenerate (carried over from env.py.orig)",
        "    from apps import settings  # noqa: F401  (as in env.py.orig: it may register models)",
        "    from apps.todos.models import Todo  # noqa: F401  (as in env.py.orig: it may register models)",
        "    from core.db import Base"]
    assert "    target_metadata: Any = Base.metadata" in found.block.splitlines()
    assert "except ImportError:" in found.block
    compile("from typing import Any\n" + found.block, "env.py", "exec")
    notes = scaffold.leftovers(ast.parse(ASYNC_TEMPLATE))
    assert notes == ["env.py.orig line 17: `config.set_main_option('sqlalchemy.url', "
                     "settings.SQLALCHEMY_DATABASE_URL)` is not carried over"]


def test_the_sqlmodel_template() -> None:
    found = metadata_of(SQLMODEL_TEMPLATE)
    assert found.summary == "target_metadata = SQLModel.metadata"
    assert "    from app.models import SQLModel\n" in found.block
    assert "    from app.core.config import settings  # noqa: F401" in found.block
    assert "import os" not in found.block and "sys" not in found.block
    tree = ast.parse(SQLMODEL_TEMPLATE)
    assert scaffold.leftovers(tree) == [
        "env.py.orig line 8: `sys.path.append(os.path.dirname(os.path.dirname(__file__)))` is not carried over"]
    options = scaffold.carry_options(tree, {})
    assert options.carried == {"compare_type": True} and options.notes == []


@pytest.mark.parametrize(("source", "summary", "carried"), [
    ("from myapp.models import *\ntarget_metadata = Base.metadata\n", "target_metadata = Base.metadata",
     ["from myapp.models import *"]),
    ("import myapp.models\ntarget_metadata = myapp.models.Base.metadata\n",
     "target_metadata = myapp.models.Base.metadata", ["import myapp.models"]),
    ("from a import A\nfrom b import B as Other\ntarget_metadata = [A.metadata, Other.metadata]\n",
     "target_metadata = [A.metadata, Other.metadata]", ["from a import A", "from b import B as Other"]),
    ("from sqlalchemy import MetaData\nfrom .models import Base\ntarget_metadata: MetaData = Base.metadata\n",
     "target_metadata = Base.metadata", ["from .models import Base"]),
])
def test_plain_expressions_over_imported_names_are_carried(source: str, summary: str, carried: list[str]) -> None:
    found = metadata_of(source)
    assert found.summary == summary and found.notes == []
    lines = [line.strip() for line in found.block.splitlines() if line.startswith("    from ")
             or line.startswith("    import ")]
    assert lines == carried


@pytest.mark.parametrize(("source", "note"), [
    ("from sqlalchemy.orm import declarative_base\nBase = declarative_base()\ntarget_metadata = Base.metadata\n",
     "line 3: target_metadata = Base.metadata could not be carried over safely"),
    ("from myapp import db\ntarget_metadata = db.get_metadata()\n",
     "line 2: target_metadata = db.get_metadata() could not be carried over safely"),
    ("from myapp import db\nif db:\n    target_metadata = db.metadata\n",
     "sets no target_metadata at its top level"),
    ("target_metadata = Base.metadata\nfrom myapp.models import Base\n",
     "line 1: target_metadata = Base.metadata could not be carried over safely"),
])
def test_anything_else_is_none_with_a_note(source: str, note: str) -> None:
    found = metadata_of(source)
    assert found.block == "" and found.summary == "target_metadata=None"
    [said] = found.notes
    assert note in said


def test_none_is_carried_silently() -> None:
    assert metadata_of("target_metadata = None\n") == scaffold.Metadata()


def test_options_carry_constants_and_refuse_an_unknown_version_table() -> None:
    tree = ast.parse("context.configure(compare_type=True, render_as_batch=False, include_object=keep,\n"
                     "                  version_table_schema='meta', literal_binds=True)\n")
    options = scaffold.carry_options(tree, {"version_table": "my_versions"})
    assert options.carried == {"compare_type": True, "render_as_batch": False, "version_table": "my_versions",
                               "version_table_schema": "meta"}
    assert options.versions == {"version_table": "my_versions", "version_table_schema": "meta"}
    assert options.notes == ["context.configure(include_object=keep) is not carried over (not one constant): "
                             "see env.py.orig"]
    with pytest.raises(ConfigError, match="sets version_table to name: migrator must read the same"):
        scaffold.carry_options(ast.parse("context.configure(version_table=name)\n"), {})


def test_the_example_project_uses_the_template_init_writes() -> None:
    packaged = scaffold.TEMPLATES / "script.py.mako"
    assert packaged.read_bytes() == (ROOT / "migrations" / "script.py.mako").read_bytes()


def test_adopt_notes_never_print_a_password(tmp_path: Path) -> None:
    project = write_stock_project(tmp_path)
    env_py = project / "alembic" / "env.py"
    env_py.write_text(STOCK_ENV.replace("target_metadata = Base.metadata\n", "target_metadata = Base.metadata\n"
                                        'config.set_main_option("sqlalchemy.url", "postgresql://app:s3cret-pw@db/app")\n'
                                        'config.set_main_option("x", "postgresql://application-database-user-xyz:'
                                        's3cret-pw@db/app")\n'))
    (project / "alembic.ini").write_text(ALEMBIC_INI.replace("driver://user:pass@localhost/dbname",
                                                             "postgresql://app:p%%40ss@db/app"))
    report = scaffold.init(project, adopt=True)
    notes = [line for line in report if "set_main_option('sqlalchemy.url'" in line]
    assert notes == ["note: env.py.orig line 17: `config.set_main_option('sqlalchemy.url', "
                     "'postgresql://app:***@db/app')` is not carried over"]
    assert [line for line in report if "application-database-user-xyz:***" in line]  # shortened after masking
    assert not [line for line in report if "s3cr" in line or "p%40ss" in line or "p%%40ss" in line]


def test_adopt_keeps_the_original_byte_for_byte(tmp_path: Path) -> None:
    project = write_stock_project(tmp_path)
    env_py = project / "alembic" / "env.py"
    original = STOCK_ENV.replace("\n", "\r\n").encode()
    env_py.write_bytes(original)
    scaffold.init(project, adopt=True)
    assert (project / "alembic" / "env.py.orig").read_bytes() == original
    assert "from migrator.alembic_env import run_migrations" in env_py.read_text()
