"""Connections: wait for the database with bounded retries, fail at once when waiting cannot help.

In Kubernetes the migrator often starts before the database (or its Service, or its DNS name) is ready, so
refused connections, unresolvable names and "the database system is starting up" are retried with backoff
up to MIGRATOR_CONNECT_TIMEOUT. Wrong credentials, a missing database or an SSL mismatch never heal by
waiting: they fail on the first try.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from migrator.config import DatabaseConfig, Timeouts
from migrator.errors import DatabaseUnreachable
from migrator.logs import get_logger
from migrator.redaction import redact

# libpq reports these in words only (no SQLSTATE reaches the client before authentication completes).
PERMANENT_FAILURES = (
    "authentication failed", "no pg_hba.conf entry", "pg_hba.conf rejects", "does not support ssl",
    "ssl was required", "certificate", "ssl error", "sslmode", "invalid connection option",
    "invalid integer value", "channel binding",
)
_MISSING_ROLE_OR_DATABASE = re.compile(r'(role|database) "[^"]*" does not exist')
PERMANENT_SQLSTATES = {"28000", "28P01", "3D000", "42501"}
ATTEMPT_TIMEOUT_MAX = 10
ATTEMPT_TIMEOUT_MIN = 2  # libpq treats connect_timeout below 2 as 2
LOG_EVERY = 5.0


def reason(exc: BaseException) -> str:
    """libpq's multi-line message as one redacted line."""
    text = " ".join(str(exc).split()).removeprefix("connection failed: ")
    return redact(text) or type(exc).__name__


def is_permanent(exc: psycopg.Error) -> bool:
    """True when retrying cannot help: bad credentials, a missing role or database, an SSL mismatch."""
    if exc.sqlstate in PERMANENT_SQLSTATES:
        return True
    text = str(exc).lower()
    return bool(_MISSING_ROLE_OR_DATABASE.search(text)) or any(m in text for m in PERMANENT_FAILURES)


def connect(db: DatabaseConfig, connect_timeout: float, *, autocommit: bool = False,
            purpose: str = "migrations") -> psycopg.Connection[Any]:
    """A connection to `db`, retried with backoff for up to `connect_timeout` seconds."""
    log = get_logger()
    deadline = time.monotonic() + connect_timeout
    delay = 0.1
    last_log = 0.0
    while True:
        remaining = deadline - time.monotonic()
        attempt_timeout = int(min(max(remaining, ATTEMPT_TIMEOUT_MIN), ATTEMPT_TIMEOUT_MAX))
        try:
            return psycopg.connect(make_conninfo("", **db.params), connect_timeout=attempt_timeout,
                                   autocommit=autocommit)
        except psycopg.OperationalError as exc:
            if is_permanent(exc):
                raise DatabaseUnreachable(f"cannot connect to {db.description}: {reason(exc)}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnreachable(
                    f"database {db.description} unreachable after {connect_timeout:g}s: {reason(exc)} "
                    "(check the host and that the server is up; MIGRATOR_CONNECT_TIMEOUT sets the wait)"
                ) from None
            now = time.monotonic()
            if now - last_log >= LOG_EVERY:
                log.warning(f"waiting for database {db.description} ({purpose}): {reason(exc)}; "
                            f"retrying for up to {remaining:.0f}s more", database=db.description)
                last_log = now
            time.sleep(min(delay * random.uniform(0.8, 1.2), max(remaining, 0)))  # noqa: S311
            delay = min(delay * 2, 2.0)


CLIENT_CHECK_INTERVAL = "2s"
CLIENT_CHECK_SINCE = 140000  # client_connection_check_interval exists from PostgreSQL 14


def set_migration_timeouts(conn: psycopg.Connection[Any], timeouts: Timeouts) -> None:
    """Session settings for migrations.

    lock_timeout and statement_timeout, so a migration never queues production traffic for long; and, where
    the server has it, client_connection_check_interval, so that the statement of a migrator killed with
    SIGKILL (OOM, node loss) is cancelled within seconds instead of holding its locks until it ends.
    """
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (f"{round(timeouts.ddl_lock * 1000)}ms", f"{round(timeouts.statement * 1000)}ms"))
    if conn.info.server_version >= CLIENT_CHECK_SINCE:
        conn.execute("SELECT set_config('client_connection_check_interval', %s, false)", (CLIENT_CHECK_INTERVAL,))
    conn.commit()
