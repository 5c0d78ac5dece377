"""The migration session: the one locked connection that runs every migration and seed of a command.

Like Ecto.Migrator: one session (migrator.database.Connection) takes the migration lock and runs every
migration and seed, so the lock shares its fate (migrator.lock). Each step starts from migrator's settings
(lock_timeout, statement_timeout, idle_in_transaction_session_timeout, keepalives) with the lock proven held:
nothing a previous migration SET leaks into the next, and no step runs without the lock. The reset and the
proof travel right after the previous step's COMMIT, in its round trip, together with the step's history row;
the first step of a run, and any step after a failure, sends them on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as psql

from migrator import lock, server_session
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection
from migrator.errors import ConfigError, LockLost
from migrator.logs import get_logger
from migrator.server_session import ServerSession
from migrator.shutdown import SHUTDOWN
from migrator.steps import Step
from migrator.tables import history
from migrator.targets import Target

if TYPE_CHECKING:
    import sqlalchemy as sa

    from migrator.monitor import Monitor


@dataclass
class MigrationSession:
    """The locked session migrations and seeds run on, with its SQLAlchemy connection."""

    db: DatabaseConfig
    settings: Settings
    conn: Connection
    server: ServerSession
    key: int
    history_schema: str
    engine: sa.Engine | None = None
    sa_conn: sa.Connection | None = None
    monitor: Monitor | None = None
    search_path: str | None = None  # a schema tenant's (migrator.tenants): part of every step's settings
    # The reset and lock proof (server clock, lock held) that the previous step's COMMIT carried, for the next
    # step; None when the next step must send its own.
    prepared: tuple[datetime, bool] | None = None
    history_checksums: bool = False  # the history table has its checksum columns (prepare_history)
    _current: Step | None = field(default=None, init=False, repr=False)

    @property
    def current(self) -> Step | None:
        """The step running now: its own code (a migration's, a seed's) may be stopped by a signal."""
        return self._current

    @current.setter
    def current(self, step: Step | None) -> None:
        self._current = step
        SHUTDOWN.in_step(step is not None)

    @functools.cached_property
    def reset_sql(self) -> str:
        """What every step starts from: every session setting back to the session's defaults (a migration's
        SET search_path, SET ROLE or session_replication_role included), then migrator's settings, the
        server's clock, and whether this session still holds the lock. The same text for every step of the
        session: composed once."""
        settings = server_session.session_settings(self.settings.timeouts, self.server.server_version)
        if self.search_path is not None:  # after RESET ALL, so that a migration's SET search_path cannot leak
            settings["search_path"] = self.search_path
        calls = psql.SQL(", ").join(psql.SQL("set_config({}, {}, false)").format(psql.Literal(k), psql.Literal(v))
                                    for k, v in settings.items())
        owned = psql.SQL(lock.OWNED % {"pid": self.server.pid, "key": self.key})  # integers only
        return psql.SQL("RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE; SELECT clock_timestamp(), {}, {}"
                        ).format(owned, calls).as_string(self.conn)

    def start_step(self, step: Step) -> None:
        """Start `step` from a reset session whose lock is proven: the reset the previous step's COMMIT carried
        (nothing ran on the session since), or else a round trip of its own, in autocommit right before the
        step's transaction begins, so that a rollback inside the step cannot undo it. The caller makes sure no
        transaction is open."""
        conn = self.conn
        conn.doing = f"running {'' if step.is_seed else 'migration '}{step.label}"
        prepared, self.prepared = self.prepared, None
        if prepared is None or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = True
            try:
                prepared = _reset_row(conn.execute(self.reset_sql))
            finally:
                if not conn.broken:  # on a lost session, that would raise over the server's reason
                    conn.autocommit = False
        started, owned = prepared
        if not owned:
            raise LockLost(f"the migration lock on {self.db.description} is no longer held by this session "
                           f"(released by a statement such as pg_advisory_unlock_all() or DISCARD ALL, or the "
                           f"session changed under a pooler); stopped before {step.label}")
        step.server_started = started
        self.current = step

    def commit_with(self, statement: str) -> None:
        """Commit the running step with its last `statement` (its history row), then reset the session and
        prove the lock for the next step, in one round trip: the bookkeeping costs a step no round trip of its
        own. The reset follows the COMMIT (PostgreSQL runs and commits it as an implicit transaction), so that
        what the migration SET LOCAL still governs its own COMMIT (synchronous_commit). Alembic's commit then
        finds the transaction ended, and psycopg sends nothing for it."""
        self.prepared = _reset_row(self.conn.execute(f"{statement}; COMMIT; {self.reset_sql}"))


@contextmanager
def locked(target: Target, settings: Settings, conn: Connection,
           satisfied: Callable[[], bool] | None = None) -> Iterator[MigrationSession | None]:
    """The migration session on `conn` once it holds the lock (migrator.lock), or None when `satisfied()` said
    while waiting that another migrator did the work."""
    db, repo = target.db, target.repo
    with lock.held(db, settings.timeouts, conn, version_table=repo.version_table, schema=repo.version_table_schema,
                   satisfied=satisfied) as held:
        yield None if held is None else MigrationSession(db, settings, conn, held.server, held.key, held.server.schema,
                                                         search_path=target.search_path)


def _reset_row(cur: psycopg.Cursor[Any]) -> tuple[datetime, bool]:
    """The reset's SELECT row (clock, lock held), past the RESETs' results before it."""
    # The result's status, not cur.description: that builds the columns' descriptions at each reading.
    while cur.pgresult is None or cur.pgresult.status != psycopg.pq.ExecStatus.TUPLES_OK:
        if not cur.nextset():
            raise AssertionError("the session reset returned no row")
    row = cur.fetchone()
    assert row is not None
    return row[0], bool(row[1])


def prepare_history(session: MigrationSession, version_table: str) -> list[history.OpenRow]:
    """Create the history table when missing, or add the checksum columns it predates (in autocommit, before
    any step); its open rows."""
    conn, schema = session.conn, session.history_schema
    try:
        history.ensure(conn, schema)
    except psycopg.errors.InvalidSchemaName:
        raise ConfigError(f"the schema {schema!r} of the version table does not exist on {session.db.description}: "
                          "create it (CREATE SCHEMA), or correct version_table_schema in migrator.toml") from None
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError(f"cannot create the migration history table {schema}.{history.TABLE} on "
                          f"{session.db.description}: permission denied; grant the migrator's role CREATE on "
                          f"schema {schema} (PostgreSQL 15 and later no longer grant it on public by "
                          "default), or create the table once as its owner") from None
    session.history_checksums = history.has_checksums(conn, schema) or _add_checksums(session, schema)
    return history.open_rows(conn, schema, version_table)


def _add_checksums(session: MigrationSession, schema: str) -> bool:
    """A history table made before checksums existed gets their columns (migrator.validation)."""
    if history.evolve(session.conn, schema, round(session.settings.timeouts.ddl_lock * 1000)):
        return True
    get_logger().warning(f"{schema}.{history.TABLE} is busy (a lock held longer than MIGRATOR_DDL_LOCK_TIMEOUT): "
                         "its checksum columns are added on a later run; checksums are neither recorded nor "
                         "compared in this one")
    return False
