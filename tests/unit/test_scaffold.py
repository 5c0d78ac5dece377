"""What `migrator init --adopt` carries over from the env.py shapes real Alembic projects have (and
Flask-Migrate's own templates, read from the installed flask-migrate package)."""

from __future__ import annotations

import ast
import importlib.resources
import textwrap
from pathlib import Path

import pytest

from migrator import env_adoption, scaffold
from migrator.errors import ConfigError
from migrator.metadata_capture import Captured
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


def models_of(source: str) -> env_adoption.Models | None:
    return env_adoption.find_models(ast.parse(textwrap.dedent(source)), source)


def imports(statements: list[ast.Import | ast.ImportFrom]) -> list[str]:
    return [ast.unparse(s) for s in statements]


def test_the_async_template_imports_the_models_and_lists_the_rest() -> None:
    models = models_of(ASYNC_TEMPLATE)
    assert models is not None and models.expression == "Base.metadata"
    assert imports(models.needed) == ["from core.db import Base"]
    assert imports(models.others) == ["from apps import settings", "from apps.todos.models import Todo"]
    notes = env_adoption.leftovers(ast.parse(ASYNC_TEMPLATE))
    assert notes == [
        "env.py.orig line 17: `config.set_main_option('sqlalchemy.url', settings.SQLALCHEMY_DATABASE_URL)` is not "
        "carried over: it set an Alembic option at run time",
        "env.py.orig line 28 (in run_async_migrations()): `async_engine_from_config(config.get_section(config.con"
        "fig_ini_section, {}), p...` is not carried over: it connected with an async engine (asyncio); "
        "migrator connects with psycopg 3 from DATABASE_URL (or PG*)"]


def test_the_sqlmodel_template() -> None:
    models = models_of(SQLMODEL_TEMPLATE)
    assert models is not None and models.expression == "SQLModel.metadata"
    assert imports(models.needed) == ["from app.models import SQLModel"]
    assert imports(models.others) == ["from app.core.config import settings"]
    tree = ast.parse(SQLMODEL_TEMPLATE)
    assert env_adoption.leftovers(tree) == [
        "env.py.orig line 8: `sys.path.append(os.path.dirname(os.path.dirname(__file__)))` is not carried over: "
        "migrator's run_migrations() does not do this"]
    options = env_adoption.carry_options(tree, {})
    assert options.carried == {"compare_type": True} and options.notes == []


@pytest.mark.parametrize(("source", "expression", "needed"), [
    ("from myapp.models import *\ntarget_metadata = Base.metadata\n", "Base.metadata", ["from myapp.models import *"]),
    ("import myapp.models\ntarget_metadata = myapp.models.Base.metadata\n", "myapp.models.Base.metadata",
     ["import myapp.models"]),
    ("from a import A\nfrom b import B as Other\ntarget_metadata = [A.metadata, Other.metadata]\n",
     "[A.metadata, Other.metadata]", ["from a import A", "from b import B as Other"]),
    ("from sqlalchemy import MetaData\nfrom .models import Base\ntarget_metadata: MetaData = Base.metadata\n",
     "Base.metadata", ["from .models import Base"]),
])
def test_plain_expressions_over_imported_names_are_imported(source: str, expression: str, needed: list[str]) -> None:
    models = models_of(source)
    assert models is not None and models.expression == expression and imports(models.needed) == needed


@pytest.mark.parametrize(("source", "refusal"), [
    ("from sqlalchemy.orm import declarative_base\nBase = declarative_base()\ntarget_metadata = Base.metadata\n",
     "env.py line 3: target_metadata = Base.metadata is not a name or attribute of what the env.py imports"),
    ("from myapp import db\ntarget_metadata = db.get_metadata()\n",
     "env.py line 2: target_metadata = db.get_metadata() is not a name or attribute"),
    ("target_metadata = Base.metadata\nfrom myapp.models import Base\n",
     "env.py line 1: target_metadata = Base.metadata is not a name"),
    ("from myapp import db\ncontext.configure(target_metadata=db.metadata_for('x'))\n",
     "env.py passes target_metadata=db.metadata_for('x'), which adopt cannot import by itself"),
])
def test_metadata_adopt_cannot_import_is_refused_with_the_change_to_make(source: str, refusal: str) -> None:
    with pytest.raises(ConfigError) as failed:
        models_of(source)
    assert refusal in str(failed.value) and "(nothing was written)" in str(failed.value)
    assert "`target_metadata = <module>." in str(failed.value)


def test_none_needs_no_models() -> None:
    assert models_of("target_metadata = None\n") is None
    assert models_of("from alembic import context\ncontext.configure(url='x')\n") is None


def test_only_imports_that_add_tables_are_carried_and_every_other_is_noted() -> None:
    models = models_of(ASYNC_TEMPLATE)
    captured = Captured(naming_convention={"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s"},
                        python="python3", registers={"from apps import settings": [],
                                                     "from apps.todos.models import Todo": ["todos"]})
    found = env_adoption.metadata_block(models, captured)
    assert "    from apps.todos.models import Todo  # noqa: F401  (it adds the table(s) todos to the metadata)" \
        in found.block.splitlines()
    assert "settings" not in found.block and "may register" not in found.block
    assert found.notes == ["env.py.orig line 10: `from apps import settings` is not carried over: importing it adds "
                           "no table to Base.metadata"]
    namespace: dict[str, object] = {}
    exec(compile("from typing import Any\n" + found.block, "env.py", "exec"), namespace)
    assert namespace["NAMING_CONVENTION"] == captured.naming_convention


def test_what_the_original_functions_did_is_listed() -> None:
    source = textwrap.dedent("""\
        from alembic import context
        from sqlalchemy import create_engine, text

        def run_migrations_online():
            engine = create_engine(URL, echo=True, connect_args={"sslmode": "require"})
            with engine.connect() as connection:
                connection.execute(text("CREATE SCHEMA IF NOT EXISTS app"))
                connection.execute(text("SET search_path TO app"))
                context.configure(connection=connection, target_metadata=None)
                with context.begin_transaction():
                    context.run_migrations()
        """)
    notes = env_adoption.leftovers(ast.parse(source))
    assert notes == [
        "env.py.orig line 5 (in run_migrations_online()): `create_engine(URL, echo=True, connect_args={'sslmode': "
        "'require'})` is not carried over: it created the engine with echo=, connect_args= (MIGRATOR_LOG_LEVEL=debug "
        "logs the SQL); migrator connects from DATABASE_URL (or PG*), with libpq's parameters in the URL",
        "env.py.orig line 7 (in run_migrations_online()): `connection.execute(text('CREATE SCHEMA IF NOT EXISTS "
        "app'))` is not carried over: it ran SQL on the migration connection before the migrations; migrator does "
        "not: put it in a migration, or run it once by hand",
        "env.py.orig line 8 (in run_migrations_online()): `connection.execute(text('SET search_path TO app'))` is "
        "not carried over: it ran SQL on the migration connection before the migrations; migrator does not: put it "
        "in a migration, or run it once by hand"]


def test_options_carry_constants_and_refuse_an_unknown_version_table() -> None:
    tree = ast.parse("context.configure(compare_type=True, render_as_batch=False, include_object=keep,\n"
                     "                  version_table_schema='meta', literal_binds=True)\n")
    options = env_adoption.carry_options(tree, {"version_table": "my_versions"})
    assert options.carried == {"compare_type": True, "render_as_batch": False, "version_table": "my_versions",
                               "version_table_schema": "meta"}
    assert options.versions == {"version_table": "my_versions", "version_table_schema": "meta"}
    assert options.notes == ["context.configure(include_object=keep) is not carried over (not one constant): "
                             "see env.py.orig"]
    with pytest.raises(ConfigError, match=r"sets version_table to name: migrator must read the same table .* write "
                                          r"it in env.py as a string, then run init --adopt again"):
        env_adoption.carry_options(ast.parse("context.configure(version_table=name)\n"), {})


@pytest.mark.parametrize(("expression", "versions"), [
    ("os.environ.get('APP_SCHEMA', 'public')", {"version_table_schema_env": "APP_SCHEMA",
                                                "version_table_schema": "public"}),
    ("os.getenv('APP_SCHEMA')", {"version_table_schema_env": "APP_SCHEMA"}),
    ("os.environ['APP_SCHEMA']", {"version_table_schema_env": "APP_SCHEMA"}),
])
def test_a_version_table_schema_from_the_environment_names_the_variable(expression: str,
                                                                         versions: dict[str, str]) -> None:
    options = env_adoption.carry_options(ast.parse(f"context.configure(version_table_schema={expression})\n"), {})
    assert options.versions == versions and options.carried == {}


def test_a_version_table_schema_computed_otherwise_is_refused_with_the_how_to() -> None:
    with pytest.raises(ConfigError) as failed:
        env_adoption.carry_options(ast.parse("context.configure(version_table_schema=settings.SCHEMA)\n"), {})
    assert str(failed.value) == (
        "init --adopt: the env.py sets version_table_schema to settings.SCHEMA: migrator must read the same table "
        "before it runs env.py, and cannot tell which; write it in env.py as a string, or read it from an "
        "environment variable as os.environ.get(\"NAME\", \"default\"), which adopt carries into migrator.toml as "
        "version_table_schema_env, then run init --adopt again (nothing was written)")


def flask_migrate_template(name: str) -> str:
    """An env.py template as the installed flask-migrate package ships it."""
    return (importlib.resources.files("flask_migrate") / "templates" / name / "env.py").read_text()


@pytest.mark.parametrize("template", ["flask", "aioflask"])
def test_flask_migrate_single_database_templates_load_the_app(template: str) -> None:
    source = flask_migrate_template(template)
    models = env_adoption.find_models(ast.parse(source), source)
    assert models is not None and models.flask
    assert models.probe_request(["/app"]) == {"flask": True, "sys_path": ["/app"]}
    captured = Captured(naming_convention={"pk": "pk_%(table_name)s"}, python="python3", app="shop",
                        configure_args={"compare_type": True, "render_as_batch": True}, other_args=["include_object"])
    options = env_adoption.carry_options(ast.parse(source), {}, captured)
    assert options.carried == {"compare_type": True, "render_as_batch": True}
    assert options.notes == ["Migrate(...)'s include_object (in the app) is not carried over (not a constant): it "
                             "only changes what autogenerate compares or writes; pass it to run_migrations() in "
                             "env.py for `flask db migrate`"]


@pytest.mark.parametrize("template", ["flask-multidb", "aioflask-multidb"])
def test_flask_migrate_multi_database_templates_are_refused_with_what_to_do(template: str) -> None:
    source = flask_migrate_template(template)
    with pytest.raises(ConfigError, match=r"Flask-Migrate's multi-database env.py .* give each database a "
                                          r"script directory of its own .* or keep `flask db upgrade` "
                                          r"\(nothing was written\)"):
        env_adoption.find_models(ast.parse(source), source)


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
                     "'postgresql://app:***@db/app')` is not carried over: it set an Alembic option at run time"]
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


def test_revisions_that_import_the_app_are_named(tmp_path: Path) -> None:
    """A real history (manytask's) autogenerated a column type of the models into three revisions."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "037c4373e638_add_fields.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\nimport manytask\n\nrevision = '037c4373e638'\n")
    (versions / "a7c68744b7a5_init.py").write_text("import sqlalchemy as sa\nfrom alembic import op\n")
    models = models_of("from manytask.models import Base\nfrom dotenv import dotenv_values\n"
                       "target_metadata = Base.metadata\n")
    assert env_adoption.revisions_importing_the_app(versions, models) == [
        "versions/037c4373e638_add_fields.py line 3: `import manytask` imports the app, which the migration image "
        "does not hold: migrating stops there (exit 2); write what it uses into the revision (e.g. a column type's "
        "implementation)"]
