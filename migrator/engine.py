"""SQLAlchemy over the migration session, for the steps of one command: an engine on the session's one psycopg
connection whose statements the statement hooks see, and the monitor watching the session meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
import sqlalchemy as sa

from migrator.monitor import Monitor
from migrator.session import MigrationSession
from migrator.shutdown import SHUTDOWN
from migrator.statement_hooks import StatementHooks


def _engine(session: MigrationSession, hooks: StatementHooks) -> sa.Engine:
    """A SQLAlchemy engine over the session's one psycopg connection, its statements seen by `hooks`."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: session.conn, poolclass=sa.pool.StaticPool,
                              pool_reset_on_return=None)
    # The session owns the connection: SQLAlchemy closes a connection it invalidates (after a signal, or an
    # error it takes for a disconnect), which would lose the lock and the chance to confirm the rollback.
    engine.dialect.do_close = lambda _dbapi_connection: None  # type: ignore[method-assign,assignment]
    sa.event.listen(engine, "before_cursor_execute", _before(hooks.before))
    sa.event.listen(engine, "after_cursor_execute", _deferred(hooks.after))
    sa.event.listen(engine, "handle_error", _deferred(hooks.failed))
    sa.event.listen(engine, "commit", _deferred(hooks.committing))
    sa.event.listen(engine, "rollback", _deferred(hooks.rolling_back))
    return engine


def _deferred(hook: Callable[..., None]) -> Callable[..., None]:
    """The hook runs as migrator's bookkeeping: a signal does not interrupt it half-way."""
    def call(*args: Any) -> None:
        with SHUTDOWN.deferred():
            hook(*args)
    return call


def _before(hook: Callable[..., None]) -> Callable[..., None]:
    """Before each statement: a signal that came meanwhile stops the step here, before the statement is sent."""
    deferred = _deferred(hook)

    def call(*args: Any) -> None:
        SHUTDOWN.check()
        deferred(*args)
    return call


@contextmanager
def running(session: MigrationSession, hooks: StatementHooks) -> Iterator[sa.Connection]:
    """The session's SQLAlchemy connection, with the monitor watching, for the steps of one command."""
    session.conn.autocommit = False
    session.engine = _engine(session, hooks)
    session.sa_conn = session.engine.connect()
    timeouts = session.settings.timeouts
    # Statements may run long (index builds): the monitor watches them; with statement_timeout set, the
    # client also gives up a little after the server should have.
    session.conn.wait_limit = timeouts.statement + timeouts.stall if timeouts.statement else None
    session.conn.doing = "running migrations"
    with Monitor(session.db, timeouts, session.conn, session.server.pid) as monitor:
        session.monitor = monitor
        try:
            yield session.sa_conn
        finally:
            with SHUTDOWN.deferred():
                session.monitor = None
                session.prepared = None  # a later command's first step proves the lock itself
                session.conn.wait_limit = timeouts.stall
                _back_to_autocommit(session)


def _back_to_autocommit(session: MigrationSession) -> None:
    """After the steps: SQLAlchemy lets go of the connection, which reads and unlocks in autocommit again.
    On a failing or lost connection this does what it can; the failure itself is reported by the caller."""
    conn = session.conn
    if session.sa_conn is not None:
        with suppress(Exception):
            session.sa_conn.close()
        session.sa_conn = None
    if conn.closed or conn.broken:
        return
    with suppress(psycopg.Error):
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
