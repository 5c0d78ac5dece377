"""What a project's migrations/env.py calls, so that `migrator` and the plain `alembic` command agree.

Under `migrator`, the runner hands over its own connection (the locked migration session, statements
described, every migration recorded) in `config.attributes["connection"]`. Under the plain `alembic` command
there is none: this module connects from DATABASE_URL (or PG*) itself, refuses a pooler that does not keep
sessions, takes the same migration lock as migrator, applies the same session settings, and releases the
lock afterwards; it does not write migrator's history or logs. Offline (`--sql`, `migrator sql`) it renders
PostgreSQL SQL without connecting, as Alembic's standard offline env.py does.

What the migrations' SQL depends on must not depend on where they run: Alembic names the constraints and
indexes of `op.create_table` & co. after the metadata's naming_convention, so an env.py names its models through
a function (called here) and passes that convention as a literal (`migrator init --adopt` captures it). Where the
models cannot be imported (the migration image holds no app code) the literal stands in for them; where they can,
the two must agree; a run never goes on with neither.
"""

from __future__ import annotations

import logging.config
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import context

from migrator import config as settings_config
from migrator import database, lock, logs, server_session
from migrator.alembic_internals import CONFIGURED_BY_MIGRATOR, ENV_FLAG, autogenerating
from migrator.errors import ConfigError, LockLost, MigratorError

MIGRATOR_TABLES = frozenset({"migrator_history", "migrator_seeds"})


def _options(target_metadata: Any, extra: dict[str, Any]) -> dict[str, Any]:
    config = context.config
    if config.attributes.get(CONFIGURED_BY_MIGRATOR):
        table, schema = config.get_main_option("version_table"), config.get_main_option("version_table_schema")
    else:  # the plain `alembic` command: the same version table migrator uses (migrator.toml, then alembic.ini)
        table, schema = _version_table_of_repo(config.get_main_option("script_location"))
    return {
        "target_metadata": target_metadata,
        "version_table": table or "alembic_version",
        "version_table_schema": schema or None,
        # Autogenerate must not propose to drop migrator's own tables (it leaves Alembic's version table alone).
        "include_name": _without_migrator_tables(extra.pop("include_name", None)),
        # One transaction per migration: a failure leaves earlier migrations applied and itself absent, and a
        # retry resumes where it stopped.
        "transaction_per_migration": True,
        **extra,
    }


def _version_table_of_repo(script_location: str | None) -> tuple[str, str | None]:
    """The version table (and schema) of the repo in migrator.toml whose scripts these are."""
    from pathlib import Path  # noqa: PLC0415

    from migrator.repos import load_repos  # noqa: PLC0415

    here = Path(script_location).resolve() if script_location else None
    try:
        repos = load_repos(Path.cwd())
    except MigratorError:  # no usable migrator.toml here: Alembic's own default
        return "alembic_version", None
    for repo in repos:
        if here is None or repo.script_location == here:
            return repo.version_table, repo.version_table_schema
    return "alembic_version", None


def _without_migrator_tables(include_name: Any) -> Any:
    def include(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "table" and name in MIGRATOR_TABLES:
            return False
        return bool(include_name(name, type_, parent_names)) if include_name is not None else True
    return include


def _configure(**options: Any) -> None:
    context.config.attributes[ENV_FLAG] = True  # tells migrator's EnvironmentContext this env.py delegates
    context.configure(**options)


NamingConvention = dict[str, str]


def run_migrations(target_metadata: Any = None, *, naming_convention: NamingConvention | None = None,
                   file_config: bool = False, **configure: Any) -> None:
    """Configure Alembic's context for this run and run the migrations.

    `target_metadata`: the models' MetaData (or a list), or a function returning it, for autogenerate.
    `naming_convention`: that metadata's naming convention as a literal, which the migrations' SQL depends on;
    used where the function fails, checked against the metadata where it does not.
    `file_config`: under the plain alembic command, configure logging from alembic.ini (fileConfig), as the
    original env.py did, so that Alembic prints what it printed before; migrator keeps its own logs.
    `configure`: more context.configure() options.
    """
    if _under_migrator():
        _run(target_metadata, naming_convention, file_config, configure)
        return
    try:
        _run(target_metadata, naming_convention, file_config, configure)
    except MigratorError as exc:  # the plain alembic command: one line, not a traceback
        raise SystemExit(f"migrator: {exc}") from None


def _under_migrator() -> bool:
    return bool(context.config.attributes.get(CONFIGURED_BY_MIGRATOR))


def _run(target_metadata: Any, naming_convention: NamingConvention | None, file_config: bool,
         configure: dict[str, Any]) -> None:
    options = _options(_metadata(target_metadata, naming_convention), configure)
    if file_config and not _under_migrator() and context.is_offline_mode():
        _project_logging()
    if context.is_offline_mode():
        # paramstyle "named", as Alembic's own offline template: a literal % is rendered as %, not %%.
        _configure(url="postgresql+psycopg://", dialect_name="postgresql", literal_binds=True,
                   dialect_opts={"paramstyle": "named"}, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_online(connection, options)
        return
    _run_standalone(options, file_config)


def _metadata(source: Any, captured: NamingConvention | None) -> Any:
    """The target_metadata of this run: the models' when they load, else one with the captured convention."""
    if callable(source):
        try:
            loaded = source()
        except Exception as exc:
            return _without_models(exc, captured)
    else:
        loaded = source
    if captured is not None and loaded is not None and _convention(loaded) != captured:
        raise ConfigError(f"{_env_py()}: run_migrations(naming_convention=...) differs from the models' metadata, "
                          f"whose convention names the constraints and indexes the migrations create: pass "
                          f"naming_convention={_convention(loaded)!r}")
    if loaded is None and captured is not None:
        return _stand_in(captured, "")
    return loaded


STAND_IN = "migrator_stand_in"  # in MetaData.info: no tables, only the captured naming convention
WHY_NOT_LOADED = "migrator_models_failed"  # in MetaData.info: why target_metadata() failed, when it did


def _stand_in(captured: NamingConvention, why: str) -> sa.MetaData:
    return sa.MetaData(naming_convention=captured, info={STAND_IN: True, WHY_NOT_LOADED: why})


def models(target_metadata: Any) -> Any:
    """The models' metadata a run was configured with, None when it is the stand-in that carries only the
    captured naming convention (nothing to compare the database with: the models did not load)."""
    return None if getattr(target_metadata, "info", {}).get(STAND_IN) else target_metadata


def why_not_loaded(target_metadata: Any) -> str:
    """Why the run has the stand-in instead of the models: target_metadata()'s error, or '' when it gave none."""
    return str(getattr(target_metadata, "info", {}).get(WHY_NOT_LOADED, ""))


def _without_models(exc: Exception, captured: NamingConvention | None) -> Any:
    why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if autogenerating():  # autogenerate must compare the real models, never a stand-in without tables
        raise ConfigError(f"{_env_py()}: autogenerate needs your models, and target_metadata() failed ({why})")
    if captured is None:
        raise ConfigError(f"{_env_py()}: target_metadata() failed ({why}), and run_migrations() has no "
                          "naming_convention to use instead: the constraint and index names the migrations create "
                          "depend on it, so nothing was run; pass naming_convention={...} (your metadata's, as "
                          "`dict(Base.metadata.naming_convention)` prints it where the app is installed), or make "
                          "the models importable")
    structlog.get_logger("migrator").debug(f"models not loaded ({why}): using env.py's naming_convention")
    return _stand_in(captured, why)


def _convention(metadata: Any) -> dict[Any, Any]:
    """The convention Alembic applies for `metadata`: its own, or SQLAlchemy's default for a list of them."""
    found = getattr(metadata, "naming_convention", None)
    return dict(found if found is not None else sa.MetaData().naming_convention)


def _env_py() -> Path:
    return Path(context.script.dir) / "env.py"


def _project_logging() -> None:
    """alembic.ini's logging configuration, as a stock env.py's fileConfig() applies it."""
    if context.config.config_file_name is not None:
        logging.config.fileConfig(context.config.config_file_name)


def _run_online(connection: sa.Connection, options: dict[str, Any]) -> None:
    _configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()


def _run_standalone(options: dict[str, Any], file_config: bool) -> None:
    """The plain `alembic` command: connect, lock as migrator does, run, unlock."""
    if not structlog.is_configured():  # migrator's own lines to stderr, as under `migrator`; stdout is Alembic's
        logs.configure(*settings_config.log_options())
    if file_config:  # after logs.configure, which routes the stdlib loggers through migrator's renderer
        _project_logging()
    settings = settings_config.load_settings()
    db = settings_config.database_config(os.environ)
    raw = database.connect(db, settings.timeouts, autocommit=True, purpose="alembic")
    try:
        server = server_session.identify(raw, options["version_table_schema"], options["version_table"])
        server_session.require_primary(server, db)
        server_session.require_session_pooling(raw, server, db, settings.timeouts)
        key = lock.lock_key(server.database, server.schema, options["version_table"])
        lock.acquire(raw, key, settings.timeouts.lock, db.description)
        wanted = server_session.session_settings(settings.timeouts, server.server_version)
        query, params = server_session.set_config_sql(wanted)
        raw.execute(query, params)
        raw.autocommit = False
        raw.wait_limit = settings.timeouts.statement + settings.timeouts.stall if settings.timeouts.statement else None
        engine = sa.create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=sa.pool.StaticPool,
                                  pool_reset_on_return=None)
        with engine.connect() as own:
            _run_online(own, options)
            # A migration that committed part of itself through SQLAlchemy (op.get_bind().commit()) leaves the
            # rest, version stamp included, in a transaction Alembic no longer tracks: commit it, as migrator does.
            if own.in_transaction():
                own.commit()
        raw.wait_limit = settings.timeouts.stall
        raw.autocommit = True
        if not lock.release(raw, key):
            raise LockLost(f"the migration lock on {db.description} was no longer held when the run ended")
    except MigratorError as exc:
        raise SystemExit(f"migrator: {exc}") from None
    finally:
        raw.close()
