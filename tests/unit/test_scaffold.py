"""What `migrator init --adopt` carries over from the env.py shapes real Alembic projects have (and
Flask-Migrate's own templates, read from the installed flask-migrate package)."""

from __future__ import annotations

import ast
import importlib.resources
import re
import textwrap
from pathlib import Path

import pytest

from migrator import alembic_ini, env_adoption, env_notes, revision_imports, scaffold
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


def sources(statements: list[ast.stmt]) -> list[str]:
    return [ast.unparse(s) for s in statements]


def test_the_async_template_imports_the_models_and_lists_the_rest() -> None:
    models = models_of(ASYNC_TEMPLATE)
    assert models is not None and models.expression == "target_metadata" and models.shown == "Base.metadata"
    assert sources(models.needed) == ["from core.db import Base", "target_metadata = Base.metadata"]
    # what the probe runs: the top-level statements before the migrations, without those that need Alembic's context
    assert sources(models.statements) == [
        "import asyncio", "from logging.config import fileConfig", "from sqlalchemy import pool",
        "from sqlalchemy.engine import Connection", "from sqlalchemy.ext.asyncio import async_engine_from_config",
        "from apps import settings", "from apps.todos.models import Todo", "from core.db import Base",
        "target_metadata = Base.metadata"]
    notes = env_notes.leftovers(ast.parse(ASYNC_TEMPLATE))
    assert notes == [
        "env.py.orig line 17: `config.set_main_option('sqlalchemy.url', settings.SQLALCHEMY_DATABASE_URL)` is not "
        "carried over: it set an Alembic option at run time",
        "env.py.orig line 28 (in run_async_migrations()): `async_engine_from_config(config.get_section(config.con"
        "fig_ini_section, {}), p...` is not carried over: it connected with an async engine (asyncio); "
        "migrator connects with psycopg 3 from DATABASE_URL (or PG*)"]


def test_the_sqlmodel_template() -> None:
    models = models_of(SQLMODEL_TEMPLATE)
    assert models is not None and models.shown == "SQLModel.metadata"
    assert sources(models.needed) == ["from app.models import SQLModel", "target_metadata = SQLModel.metadata"]
    tree = ast.parse(SQLMODEL_TEMPLATE)
    assert env_notes.leftovers(tree) == [
        "env.py.orig line 8: `sys.path.append(os.path.dirname(os.path.dirname(__file__)))` is not carried over: "
        "migrator's run_migrations() does not do this"]
    options = env_adoption.carry_options(tree, {})
    assert options.carried == {"compare_type": True} and options.notes == []


@pytest.mark.parametrize(("source", "shown", "needed"), [
    ("from myapp.models import *\ntarget_metadata = Base.metadata\n", "Base.metadata",
     ["from myapp.models import *", "target_metadata = Base.metadata"]),
    ("import myapp.models\ntarget_metadata = myapp.models.Base.metadata\n", "myapp.models.Base.metadata",
     ["import myapp.models", "target_metadata = myapp.models.Base.metadata"]),
    ("from a import A\nfrom b import B as Other\ntarget_metadata = [A.metadata, Other.metadata]\n",
     "[A.metadata, Other.metadata]",
     ["from a import A", "from b import B as Other", "target_metadata = [A.metadata, Other.metadata]"]),
    ("from sqlalchemy import MetaData\nfrom .models import Base\ntarget_metadata: MetaData = Base.metadata\n",
     "Base.metadata", ["from sqlalchemy import MetaData", "from .models import Base",
                       "target_metadata: MetaData = Base.metadata"]),
    # a Base declared in env.py itself, and metadata an app function returns: run as the env.py runs them
    ("from sqlalchemy.orm import declarative_base\nBase = declarative_base()\ntarget_metadata = Base.metadata\n",
     "Base.metadata", ["from sqlalchemy.orm import declarative_base", "Base = declarative_base()",
                       "target_metadata = Base.metadata"]),
    ("from myapp import db\ntarget_metadata = db.get_metadata()\n", "db.get_metadata()",
     ["from myapp import db", "target_metadata = db.get_metadata()"]),
])
def test_the_statements_binding_the_metadata_are_carried(source: str, shown: str, needed: list[str]) -> None:
    models = models_of(source)
    assert models is not None and models.shown == shown and sources(models.needed) == needed


@pytest.mark.parametrize(("source", "refusal"), [
    ("target_metadata = Base.metadata\nfrom myapp.models import Base\n",
     "env.py: `target_metadata = Base.metadata` uses Base, which the env.py does not bind at the top level before it"),
    ("from myapp import db\ncontext.configure(target_metadata=db.metadata_for('x'))\n",
     "env.py passes target_metadata=db.metadata_for('x'), which adopt cannot import by itself"),
])
def test_metadata_adopt_cannot_evaluate_is_refused_with_the_change_to_make(source: str, refusal: str) -> None:
    with pytest.raises(ConfigError) as failed:
        models_of(source)
    assert refusal in str(failed.value) and "(nothing was written)" in str(failed.value)


def test_none_needs_no_models() -> None:
    assert models_of("target_metadata = None\n") is None
    assert models_of("from alembic import context\ncontext.configure(url='x')\n") is None


def test_only_imports_that_add_tables_are_carried_and_every_other_is_noted() -> None:
    models = models_of(ASYNC_TEMPLATE)
    captured = Captured(naming_convention={"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s"},
                        python="python3", effects={"11": {"tables": ["todos"], "convention": False}})
    found = env_adoption.metadata_block(models, captured)
    assert "    from apps.todos.models import Todo  # noqa: F401  (it adds the table(s) todos to the metadata)" \
        in found.block.splitlines()
    assert "    from core.db import Base" in found.block.splitlines() and "    return Base.metadata" in found.block
    assert "settings" not in found.block and "may register" not in found.block
    assert found.notes == ["env.py.orig line 10: `from apps import settings` is not carried over: importing it adds "
                           "no table to Base.metadata and leaves its naming convention as it is"]
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
    notes = env_notes.leftovers(ast.parse(source))
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
    assert models.probe_request(["/app"], "/app/migrations/env.py") == {"flask": True, "sys_path": ["/app"]}
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


def test_what_revisions_import_that_the_image_does_not_hold_is_named(tmp_path: Path) -> None:
    """Real histories import the app (manytask: a column type of its models; fractal-server: its naming convention)
    and packages of the app's environment (fractal-server: sqlmodel, in 19 files)."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "manytask").mkdir()
    for name in ("a1_init.py", "b2_types.py", "c3_more.py", "d4_again.py"):
        (versions / name).write_text("import sqlalchemy as sa\nfrom alembic import op\nimport sqlmodel.sql.sqltypes\n")
    (versions / "e5_app.py").write_text("import json\nfrom alembic import op\n\n\ndef upgrade():\n"
                                        "    from manytask.models import Kind\n    import migrations.helpers\n")
    inside = tmp_path / "tracker"  # fractal-server's layout: alembic.ini in the package, which its revisions import
    (inside / "migrations" / "versions").mkdir(parents=True)
    (inside / "migrations" / "versions" / "f6_drop.py").write_text("from tracker.naming import NAMING_CONVENTION\n")
    assert revision_imports.missing_in_image(inside / "migrations", inside, [str(inside)]) == [
        "1 revision file(s) import tracker, the app's own code, which the migration image does not hold "
        "(migrations/versions/f6_drop.py line 1): migrating with the image alone fails at the first of them; write "
        "what they use into the revisions (e.g. a column type's implementation)"]
    # manytask's layout: the script directory inside the app's package; the image holds only the former
    (inside / "migrations" / "versions" / "g7_type.py").write_text(
        "import tracker\nfrom tracker.migrations import helpers\nimport tracker.migrations.helpers\n")
    assert revision_imports.missing_in_image(inside / "migrations", tmp_path, [str(tmp_path)]) == [
        "2 revision file(s) import tracker, the app's own code, which the migration image does not hold "
        "(tracker/migrations/versions/f6_drop.py line 1, tracker/migrations/versions/g7_type.py line 1): migrating "
        "with the image alone fails at the first of them; write what they use into the revisions (e.g. a column type's "
        "implementation)"]
    assert revision_imports.missing_in_image(tmp_path / "migrations", tmp_path, [str(tmp_path)]) == [
        "1 revision file(s) import manytask, the app's own code, which the migration image does not hold "
        "(migrations/versions/e5_app.py line 6): migrating with the image alone fails at the first of them; write "
        "what they use into the revisions (e.g. a column type's implementation)",
        "4 revision file(s) import sqlmodel, a package of the app's environment, which the migration image does not "
        "hold (migrations/versions/a1_init.py line 3, migrations/versions/b2_types.py line 3, "
        "migrations/versions/c3_more.py line 3 and 1 more): migrating with the image alone fails at the first of them; "
        "write what they use into the revisions, or install sqlmodel into the migration image (migrator.Dockerfile)"]


def test_the_image_packages_are_those_of_the_image_requirements() -> None:
    text = (ROOT / "image" / "migrator" / "requirements.txt").read_text()
    names = {re.sub(r"\[.*", "", line.split("==")[0]).replace("-", "_").lower()
             for line in text.splitlines() if "==" in line and not line.startswith((" ", "#"))}
    assert names | {"migrator"} == revision_imports.IMAGE_PACKAGES


def test_an_ini_without_script_location_is_refused_with_the_line_to_add(tmp_path: Path) -> None:
    """indico's shape: alembic.ini beside env.py, its script_location set by the project's own CLI in code."""
    (tmp_path / "alembic.ini").write_text("[alembic]\nfile_template = %%(year)d_%%(rev)s_%%(slug)s\n")
    (tmp_path / "env.py").write_text("from alembic import context\n")
    with pytest.raises(ConfigError) as failed:
        scaffold.init(tmp_path, adopt=True)
    assert str(failed.value) == (
        f"init --adopt: {tmp_path / 'alembic.ini'} sets no script_location (its tool may set it in code): add "
        "`script_location = %(here)s` to its [alembic] section, then run init --adopt again (nothing was written)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alembic.ini", "env.py"]


def test_each_call_left_out_is_noted_once_with_what_it_did() -> None:
    """hypothesis/h's logging set-up (a call on a call's result) and fractal-server's engine from the app."""
    source = textwrap.dedent("""\
        import logging
        from alembic import context

        def configure_logging():
            logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)

        def run_migrations_online():
            from app.db import DB

            engine = DB.engine_sync()
            with engine.connect() as connection:
                context.configure(connection=connection, target_metadata=None)
        """)
    assert env_notes.leftovers(ast.parse(source)) == [
        "env.py.orig line 5 (in configure_logging()): `logging.getLogger('sqlalchemy.engine').setLevel(logging.INFO)` "
        "is not carried over: migrator's run_migrations() does not do this",
        "env.py.orig line 10 (in run_migrations_online()): `DB.engine_sync()` is not carried over: it made the engine "
        "the migrations ran on, the app's way; migrator connects from DATABASE_URL (or PG*), with libpq's parameters "
        "in the URL"]


def test_an_ini_of_named_sections_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Netflix/dispatch's shape: `alembic --name core` and `--name tenant`, no script_location in [alembic]."""
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nfile_template = %%(rev)s\n\n[core]\nscript_location = app:revisions/core\n\n"
                   "[tenant]\nscript_location = app:revisions/tenant\n")
    with pytest.raises(ConfigError) as failed:
        scaffold.init(tmp_path, adopt=True)
    assert str(failed.value) == (
        f"init --adopt: {ini} names its script directories in the sections [core], [tenant] (`alembic --name`), "
        "not in [alembic]: migrator adopts the script directory of an [alembic] section: give one its own ini with "
        "that section, adopt it with --config, and list the others as [[repos]] in migrator.toml (nothing was "
        "written)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alembic.ini"]


def test_each_top_level_statement_left_out_says_what_it_set() -> None:
    """ff-backend's env.py: the URL computed from the app's settings, attributes set on Alembic's Config."""
    source = textwrap.dedent("""\
        from alembic import context
        from app.config import settings

        config = context.config
        URL = str(settings.DATABASE_URL)
        if "+" in URL:
            URL = URL.split("+")[0]
        config.set_main_option("sqlalchemy.url", URL)
        config.compare_type = True
        UNUSED = 1
        """)
    assert env_notes.leftovers(ast.parse(source)) == [
        "env.py.orig line 5: `URL = str(settings.DATABASE_URL)` is not carried over: it set URL, which lines 6, 7, 8 "
        "read",
        "env.py.orig line 6: `if '+' in URL:` is not carried over: it set URL, which line 8 reads",
        "env.py.orig line 8: `config.set_main_option('sqlalchemy.url', URL)` is not carried over: it set an Alembic "
        "option at run time",
        "env.py.orig line 9: `config.compare_type = True` is not carried over: it set config.compare_type on "
        "Alembic's Config object of that run",
        "env.py.orig line 10: `UNUSED = 1` is not carried over: it set UNUSED, which the env.py does not read"]


def test_an_ini_elsewhere_names_locations_relative_to_where_alembic_runs(tmp_path: Path) -> None:
    """`alembic -c conf/alembic.ini` resolves a relative script_location against the working directory (the
    project), %(here)s against the ini's directory; migrator reads migrator.toml's alembic_ini the same way."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "alembic.ini").write_text("[alembic]\nscript_location = app/migrations\n"
                                                   "version_locations = %(here)s/extra\n")
    ini = alembic_ini.read(tmp_path, "conf/alembic.ini")
    assert ini is not None and ini.script_location == tmp_path / "app" / "migrations"
    assert ini.version_locations == (tmp_path / "conf" / "extra",)
