"""What a project's migrations/env.py calls, so that `migrator` and the plain `alembic` command agree.

Under `migrator`, the runner hands over its own connection (lock_timeout set, statements described) in
`config.attributes["connection"]`. Under the plain `alembic` command there is none, and this module connects
from DATABASE_URL (or PG*) itself, with the same retries and settings but without the migration lock.
Offline (`--sql`, `migrator sql`) it renders PostgreSQL SQL without connecting.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from alembic import context

from migrator import config as settings_config
from migrator import database


def _options(target_metadata: Any, extra: dict[str, Any]) -> dict[str, Any]:
    config = context.config
    return {
        "target_metadata": target_metadata,
        "version_table": config.get_main_option("version_table") or "alembic_version",
        "version_table_schema": config.get_main_option("version_table_schema") or None,
        # One transaction per migration: a failure leaves earlier migrations applied and itself absent, and a
        # retry resumes where it stopped.
        "transaction_per_migration": True,
        **extra,
    }


def run_migrations(target_metadata: Any = None, **configure: Any) -> None:
    """Configure Alembic's context for this run and run the migrations; `configure` adds options."""
    options = _options(target_metadata, configure)
    if context.is_offline_mode():
        context.configure(url="postgresql+psycopg://", dialect_name="postgresql", literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_online(connection, options)
        return
    settings = settings_config.load_settings()
    db = settings_config.database_config(os.environ)
    raw = database.connect(db, settings.timeouts.connect)
    database.set_migration_timeouts(raw, settings.timeouts)
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=sa.NullPool)
    with engine.connect() as own:
        _run_online(own, options)


def _run_online(connection: sa.Connection, options: dict[str, Any]) -> None:
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
