"""The migration lock: one session advisory lock per database, schema and version table.

Held on a dedicated autocommit connection and taken by polling `pg_try_advisory_lock`, so that waiting
never happens inside a transaction, the migrations' own connection stays free to commit per migration and
to run `CREATE INDEX CONCURRENTLY` (which waits for every open transaction, and would wait forever on a
lock held inside one). A process that dies loses its session and with it the lock.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from migrator.blocking import advisory_lock_holders, describe_all
from migrator.errors import LockTimeout
from migrator.logs import get_logger

NAMESPACE = b"migrator/v1"
POLL_MIN, POLL_MAX = 0.05, 0.25
LOG_EVERY = 10.0


def lock_key(database: str, schema: str, table: str) -> int:
    """A signed 64-bit key, stable across processes and PostgreSQL versions (unlike hashtext)."""
    digest = hashlib.blake2b(b"\0".join([NAMESPACE, database.encode(), schema.encode(), table.encode()]),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def current_schema(conn: psycopg.Connection[Any], schema: str | None) -> tuple[str, str]:
    """(database, schema) as the server resolves them: the version table's schema is search_path's first."""
    row = conn.execute("SELECT current_database(), coalesce(%s, current_schema(), 'public')", (schema,)).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


@contextmanager
def migration_lock(conn: psycopg.Connection[Any], key: int, timeout: float, what: str,
                   satisfied: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Hold the advisory lock `key` on `conn` (autocommit) for the block; LockTimeout after `timeout` s.

    Yields True when held. While waiting, `satisfied()` is asked at every poll: when the holder has already
    done our work (the database reached head), waiting on is pointless and the block gets False, unlocked.
    """
    if not acquire(conn, key, timeout, what, satisfied):
        yield False
        return
    try:
        yield True
    finally:
        release(conn, key)


def acquire(conn: psycopg.Connection[Any], key: int, timeout: float, what: str,
            satisfied: Callable[[], bool] | None = None) -> bool:
    """Poll for the lock; True once held, False when `satisfied()` says it is no longer needed."""
    log = get_logger()
    started = time.monotonic()
    last_log = -LOG_EVERY
    poll = POLL_MIN
    while not _try_lock(conn, key):
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
        time.sleep(min(poll * random.uniform(0.5, 1.5), max(timeout - waited, 0)))  # noqa: S311
        poll = min(poll * 1.5, POLL_MAX)
    get_logger().debug(f"migration lock on {what} acquired", waited=round(time.monotonic() - started, 3))
    return True


def _try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def release(conn: psycopg.Connection[Any], key: int) -> None:
    """Unlock; a broken connection has released it already, with its session."""
    if conn.closed:
        return
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error:
        conn.close()
