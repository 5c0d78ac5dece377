"""The migration lock: one session advisory lock per database, schema and version table.

It is held by the very session that runs the migrations, so that it shares their fate: when that session
ends (pg_terminate_backend, idle_session_timeout, a reset, a failover, SIGKILL of the client) the lock and
the migration's open transaction end together, and nothing can go on without the lock. A pooler that does not
keep sessions is refused before the lock is taken (server_session.require_session_pooling).

It is taken by polling `pg_try_advisory_lock` in autocommit mode, so waiting never happens inside a
transaction (a `CREATE INDEX CONCURRENTLY` waits for every older transaction; it runs on this same session,
which it does not wait for). Ownership is proven again before every migration and seed (`OWNED`, sent with
the previous step's COMMIT or in the step's own first round trip), and the unlock's result is checked: False
means the lock was no longer ours, which the caller reports.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import psycopg

from migrator import retries, server_session
from migrator.blocking import advisory_lock_holders, describe_all
from migrator.config import DatabaseConfig, Timeouts
from migrator.database import Connection
from migrator.errors import LockLost, LockTimeout, MigratorError
from migrator.logs import get_logger
from migrator.server_session import ServerSession
from migrator.shutdown import SHUTDOWN

NAMESPACE = b"migrator/v1"
LOG_EVERY = 10.0
# True when the session running it holds the lock and is still the backend `pid` (a pooler did not switch it).
# The migration session holds the lock twice over (advisory locks count, `held`), so the proof takes one count
# back and adds it again: both on this backend alone, never letting go of the lock, and without a scan of
# pg_locks (whose cost grows with max_connections and with the locks a step holds). When the lock was released
# meanwhile (pg_advisory_unlock_all(), DISCARD ALL), the unlock finds nothing and the proof is false.
OWNED = ("CASE WHEN pg_backend_pid() <> %(pid)s THEN false WHEN pg_advisory_unlock(%(key)s::bigint) "
         "THEN pg_try_advisory_lock(%(key)s::bigint) ELSE false END")


def lock_key(database: str, schema: str, table: str) -> int:
    """A signed 64-bit key, stable across processes and PostgreSQL versions (unlike hashtext)."""
    digest = hashlib.blake2b(b"\0".join([NAMESPACE, database.encode(), schema.encode(), table.encode()]),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def acquire(conn: Connection, key: int, timeout: float, what: str,
            satisfied: Callable[[], bool] | None = None, *, pid: int | None = None, counts: int = 1) -> bool:
    """Poll for the lock on `conn` (autocommit); True once held, False when `satisfied()` says it is no
    longer needed (another migrator already did the work). LockTimeout after `timeout` seconds.

    With `pid`, the lock is taken only on that server backend, `counts` times over in the same statement: a
    statement that a pooler ran elsewhere takes nothing and never waits for the lock (LockLost)."""
    log = get_logger()
    started = time.monotonic()
    deadline = started + timeout
    last_log = -LOG_EVERY
    backoff = retries.lock_poll_backoff()
    conn.doing = "waiting for the migration lock"
    while not _try_lock(conn, key, pid, counts):
        if satisfied is not None and satisfied():
            return False
        waited = time.monotonic() - started
        if waited >= timeout:
            holders = describe_all(advisory_lock_holders(conn, key))
            raise LockTimeout(f"migration lock on {what} not acquired after {timeout:g}s, held by {holders} "
                              "(MIGRATOR_LOCK_TIMEOUT sets the wait)")
        if waited - last_log >= LOG_EVERY:
            holders = describe_all(advisory_lock_holders(conn, key))
            log.info(f"waiting for the migration lock on {what}, held by {holders}", waited=round(waited, 1))
            last_log = waited
        backoff.sleep(deadline)
    log.debug(f"migration lock on {what} acquired", waited=round(time.monotonic() - started, 3))
    return True


def _try_lock(conn: Connection, key: int, pid: int | None, counts: int) -> bool:
    if pid is None:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])
    more = " AND pg_try_advisory_lock(%(key)s::bigint)" * (counts - 1)  # held already: these always succeed
    row = conn.execute(f"SELECT CASE WHEN pg_backend_pid() <> %(pid)s THEN NULL WHEN pg_try_advisory_lock("
                       f"%(key)s::bigint) THEN true{more} ELSE false END", {"pid": pid, "key": key}).fetchone()
    if row is None or row[0] is None:
        raise LockLost(f"the migration session's statements ran on a server backend other than {pid}: a pooler "
                       "switched the session, so no lock was taken")
    return bool(row[0])


def release(conn: Connection, key: int, counts: int = 1) -> bool:
    """Unlock, `counts` times over; True when this session held every count, False when it did not (a statement
    released the lock, or one of its counts, meanwhile: the caller says so)."""
    row = conn.execute("SELECT " + ", ".join(["pg_advisory_unlock(%(key)s)"] * counts), {"key": key}).fetchone()
    return row is not None and all(row)


class Held(NamedTuple):
    """The lock this process holds: on which server session, under which key."""

    server: ServerSession
    key: int


@contextmanager
def held(db: DatabaseConfig, timeouts: Timeouts, conn: Connection, *, version_table: str, schema: str | None,
         satisfied: Callable[[], bool] | None = None) -> Iterator[Held | None]:
    """Take the migration lock on `conn` (autocommit), twice over so that OWNED can prove it cheaply, and yield
    it, or None when `satisfied()` said while waiting that another migrator already did the work. The unlock's
    result is checked on the way out.

    Nothing here imports SQLAlchemy or Alembic: replicas that wait and then find the work done never load
    them (a second of CPU each, which several pods starting on one node would pay at once)."""
    server = server_session.identify(conn, schema, version_table)
    server_session.require_primary(server, db)
    server_session.require_session_pooling(conn, server, db, timeouts)
    key = lock_key(server.database, server.schema, version_table)
    # Twice over, in one statement on the identified backend: OWNED takes the second count back and adds it again.
    if not acquire(conn, key, timeouts.lock, db.description, satisfied, pid=server.pid, counts=2):
        yield None
        return
    failed = True
    try:
        yield Held(server, key)
        failed = False
    finally:
        _end(conn, key, db.description, failed)


def _end(conn: Connection, key: int, description: str, failed: bool) -> None:
    """Release the lock and say so truthfully; a failure already being reported is not masked."""
    if conn.closed or conn.broken:
        return  # the session is gone, and its lock with it
    with SHUTDOWN.deferred():  # bookkeeping: a signal does not interrupt the release half-way
        still_held = _release_at_end(conn, key, failed)
    if still_held is False and not failed:
        raise LockLost(f"the migration lock on {description} was no longer held by this session when the run "
                       "ended (a statement such as pg_advisory_unlock_all() or DISCARD ALL released it): another "
                       "migrator may have run meanwhile; check `migrator history`")


def _release_at_end(conn: Connection, key: int, failed: bool) -> bool | None:
    """Unlock both counts; None when that failed while another failure is being reported."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        conn.doing = "releasing the migration lock"
        return release(conn, key, counts=2)
    except (psycopg.Error, MigratorError):
        if failed:
            return None
        raise
