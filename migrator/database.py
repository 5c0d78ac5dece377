"""Connections: wait for the database with bounded retries, fail at once when waiting cannot help, and never
block on a server that stopped answering.

In Kubernetes the migrator often starts before the database (or its Service, or its DNS name) is ready, so
refused connections, unresolvable names and "the database system is starting up" are retried with backoff
up to MIGRATOR_CONNECT_TIMEOUT. Wrong credentials, a missing database, a missing password, an unknown server
setting or an SSL mismatch never heal by waiting: they fail on the first try.

Every connection is a `Connection`, whose every wait for the server passes through one method with a
client-side limit (see migrator.deadlines), and carries TCP keepalives and tcp_user_timeout so that a dead
peer is noticed by the kernel too. Migration sessions also tell the server to end them when they sit idle in a
transaction or when their client is gone, so that a stalled migrator cannot keep application traffic queued.
"""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from migrator import deadlines, hostnames, refusals, retries
from migrator.config import DatabaseConfig, Timeouts
from migrator.errors import ConfigError, ConnectionLost, DatabaseUnreachable, MigrationFailed, MigratorError
from migrator.logs import get_logger
from migrator.redaction import reason
from migrator.shutdown import SHUTDOWN

# libpq reports these in words only (no SQLSTATE reaches the client before authentication completes).
PERMANENT_FAILURES = (
    "authentication failed", "no pg_hba.conf entry", "pg_hba.conf rejects", "does not support ssl",
    "ssl was required", "certificate", "ssl error", "sslmode", "invalid connection option",
    "invalid integer value", "invalid port number", "channel binding", "no password supplied",
    "password is required", "unsupported startup parameter", "invalid value for parameter",
    "unrecognized configuration parameter",
)
_MISSING_ROLE_OR_DATABASE = re.compile(r'(role|database) "[^"]*" does not exist')
# 28xxx: authentication; 3D000: no such database; 42501: no permission to connect; 42704: unrecognized
# configuration parameter (options=-c ...); 22023: invalid parameter value; 08P01 with a bad startup packet.
PERMANENT_SQLSTATES = {"28000", "28P01", "3D000", "42501", "42704", "22023"}
ATTEMPT_TIMEOUT_MAX = 10
ATTEMPT_TIMEOUT_MIN = 2  # libpq treats connect_timeout below 2 as 2
LOG_EVERY = 5.0


class Connection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server is bounded on the client side.

    psycopg funnels every blocking exchange (execute, fetch, commit, rollback) through `wait`, so this is
    the one place a stalled server is noticed: `wait_limit` seconds (None: no per-wait limit, for migration
    statements that may legitimately run long; the monitor watches those) and `doing`, what the wait is for.
    `waiting_since` tells the monitor thread that the client is waiting for an answer, and since when. A
    connection shut down by the watchdog fails with psycopg's own OperationalError, as any lost connection;
    `lost(conn, exc)` turns it into a ConnectionLost that says why.
    """

    wait_limit: float | None = None
    doing: str = "talking to the server"
    waiting_since: float | None = None
    server_pid: int | None = None  # pg_backend_pid(), from the first answer (None until then)
    description: str = ""  # the database, as lines name it
    # How long a read of migrator's own tables waits for another session's lock on them, in all (None: the
    # lock timeout, MIGRATOR_LOCK_TIMEOUT), and per attempt (set for that statement alone).
    lock_wait: float | None = None
    lock_attempt: float = 1.0
    session_kept: bool = False  # the pooler check proved that this client's session is kept (require_session_pooling)

    @property
    def pooled(self) -> bool:
        """Reached through a connection pooler: the key libpq got at login is not the server's process id."""
        return self.server_pid is not None and self.server_pid != self.info.backend_pid

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = self.wait_limit
        armed = deadlines.WATCHDOG.arm(self, limit, self.doing) if limit is not None else None
        self.waiting_since = time.monotonic()
        try:
            with SHUTDOWN.waiting():  # a signal interrupts a wait for the server (psycopg cancels the statement)
                return super().wait(gen, interval, timeout)
        except psycopg.OperationalError as exc:
            # Whoever reports it later may no longer hold this connection: say why and during what, now.
            exc.migrator_context = (self.doing, deadlines.lost_reason(self))  # type: ignore[attr-defined]
            raise
        finally:
            self.waiting_since = None
            if armed is not None:
                deadlines.WATCHDOG.cancel(armed)

    def close(self) -> None:
        deadlines.untrack(self)
        super().close()


def lost(conn: psycopg.Connection[Any] | None, exc: BaseException, doing: str) -> ConnectionLost:
    """A ConnectionLost for an error on an established connection: during what, and why. The server's own words
    when its message reached the client (an error with an SQLSTATE: "terminating connection due to
    administrator command", "... due to idle-session timeout"), whoever noticed the loss first: the monitor
    may have shut the connection down a moment before the client read that message, and the line must not
    depend on which thread won. Otherwise why the watchdog shut the connection down (a deadline, the monitor,
    a signal), rather than libpq's guess ("server closed the connection unexpectedly")."""
    orig = getattr(exc, "orig", None) or exc
    context = getattr(orig, "migrator_context", None)
    why = deadlines.lost_reason(conn) if conn is not None else None
    if context is not None:
        doing, why = context[0], why or context[1]
    if getattr(orig, "sqlstate", None):
        why = None  # the server said why
    return ConnectionLost(f"lost the connection to the server while {doing}: {why or reason(exc)}")


def unhandled(exc: BaseException) -> MigratorError | None:
    """A database error no command handled: a lost connection (exit 3) or an SQL error (exit 1), one line;
    None when `exc` is not a database error."""
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, psycopg.Error):
        return None
    if is_connection_error(exc):
        return lost(None, orig, "talking to the database")
    return MigrationFailed(f"database error: {reason(orig)}")


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean the connection is gone (not an SQL error on a live connection)."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, psycopg.OperationalError) and orig.sqlstate is None:
        return True
    # 57P01-57P03: the server terminated the session (pg_terminate_backend, shutdown, crash recovery);
    # 08xxx: connection exceptions.
    code = getattr(orig, "sqlstate", None) or ""
    return code.startswith(("57P0", "08")) or getattr(exc, "connection_invalidated", False)


def is_permanent(exc: psycopg.Error) -> bool:
    """True when retrying cannot help: bad credentials, a missing role or database, an SSL mismatch."""
    if exc.sqlstate in PERMANENT_SQLSTATES:
        return True
    text = str(exc).lower()
    return bool(_MISSING_ROLE_OR_DATABASE.search(text)) or any(m in text for m in PERMANENT_FAILURES)


# A setting libpq rejects before connecting, or one the server refuses at startup (options=-c ...): a change to
# the configuration fixes it, waiting or retrying never does (exit 2).
_MISCONFIGURED = ("invalid connection option", "invalid sslmode value", "invalid integer value",
                  "invalid port number", "invalid gssencmode value", "invalid target_session_attrs value",
                  "invalid load_balance_hosts value", "invalid channel_binding value", "invalid sslnegotiation value",
                  "invalid require_auth", "unrecognized configuration parameter", "invalid value for parameter")


def is_misconfigured(exc: psycopg.Error) -> bool:
    if exc.sqlstate in ("42704", "22023"):
        return True
    text = str(exc).lower()
    return any(m in text for m in _MISCONFIGURED)


def keepalive_params(stall: float) -> dict[str, str]:
    """libpq settings that make the client's kernel notice a dead peer within about `stall` seconds.

    tcp_user_timeout bounds how long sent data may stay unacknowledged; keepalives probe an idle connection.
    (Neither helps against a peer whose kernel still answers: that is what the client-side limits are for.)
    """
    idle = max(int(stall / 3), 1)
    interval = max(int(stall / 6), 1)
    return {"keepalives": "1", "keepalives_idle": str(idle), "keepalives_interval": str(interval),
            "keepalives_count": "3", "tcp_user_timeout": str(int(stall * 1000))}


def connect(db: DatabaseConfig, timeouts: Timeouts, *, autocommit: bool = False, purpose: str = "migrations",
            connect_timeout: float | None = None, first_answer: bool = True, quiet: bool = False) -> Connection:
    """A connection to `db`, retried with backoff for up to `connect_timeout` (default MIGRATOR_CONNECT_TIMEOUT).

    Everything that makes a connection usable stays inside that one budget: resolving host names (a name server
    that does not answer, migrator.hostnames), refusals that may heal (the server not up yet, a connection limit
    or max_connections reached, migrator.refusals), and the connection's first answer, `SELECT pg_backend_pid()`:
    behind a pooler in session mode, a client waits for a free server connection there, after its login
    succeeded. `first_answer=False` leaves the first query to the caller (the pooler check sends its own);
    `quiet` logs no waiting lines (an extra connection says once what it did without)."""
    budget = timeouts.connect if connect_timeout is None else connect_timeout
    deadline = time.monotonic() + budget
    params = {**keepalive_params(timeouts.stall), **db.params}  # the URL's own settings win
    backoff = retries.connect_backoff()
    last_log = 0.0
    answered: _Retryable | None = None  # the last failure the server (or name server) answered with
    while True:
        try:
            conn = _attempt(db, params, deadline, autocommit=autocommit or first_answer)
            deadlines.track(conn)
            if first_answer:
                _first_answer(conn, db, budget, deadline)
                conn.autocommit = autocommit
        except _Retryable as exc:
            answered = answered if exc.no_answer else exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:  # an attempt cut short by the deadline says less than an earlier answer
                raise (answered if exc.no_answer and answered else exc).final(db, budget) from None
            now = time.monotonic()
            if now - last_log >= LOG_EVERY and not quiet:
                get_logger().warning(f"waiting for database {db.description} ({purpose}): {exc.why}; "
                                     f"retrying for up to {remaining:.0f}s more", database=db.description)
                last_log = now
            backoff.sleep(deadline)
            continue
        conn.wait_limit = timeouts.stall
        conn.description = db.description
        conn.lock_wait = timeouts.lock
        conn.lock_attempt = min(timeouts.stall / 3, LOCK_ATTEMPT)  # answered well before the stall deadline
        return conn


LOCK_ATTEMPT = 2.0


def execute_unblocked(conn: Connection, query: str | psycopg.sql.Composed, params: Any = None) -> psycopg.Cursor[Any]:
    """Run `query` (autocommit) with lock_timeout = conn.lock_attempt for its own implicit transaction only: a
    table locked by another session fails it with LockNotAvailable (55P03) instead of a wait that only the stall
    deadline ends. Sent with the query in one round trip; nothing outlives the statement (a pooler's next client
    sees no setting)."""
    if not conn.autocommit:
        return conn.execute(query, params)
    bound = psycopg.ClientCursor(conn).mogrify(query, params)
    cur = conn.execute(f"SELECT set_config('lock_timeout', '{round(conn.lock_attempt * 1000)}ms', true); {bound}")
    cur.nextset()
    return cur


class _Retryable(Exception):
    """A failed attempt that waiting may heal: `why` for the log, `final` for the last line."""

    def __init__(self, text: str, *, no_answer: bool = False, hint: str = "check the host and that the server is up"
                 ) -> None:
        self.text, self.no_answer, self.hint = text, no_answer, hint
        self.cause = refusals.cause(text)
        self.why = f"{text} ({self.cause})" if self.cause else text
        super().__init__(self.why)

    def final(self, db: DatabaseConfig, budget: float) -> DatabaseUnreachable:
        if self.cause is not None:
            unreachable = DatabaseUnreachable(f"database {db.description} refused connections for {budget:g}s: "
                                              f"{self.text}: {self.cause} (MIGRATOR_CONNECT_TIMEOUT sets the wait)")
        else:
            unreachable = DatabaseUnreachable(
                f"database {db.description} unreachable after {budget:g}s: {self.text} ({self.hint}; "
                "MIGRATOR_CONNECT_TIMEOUT sets the wait)")
        unreachable.no_answer = self.no_answer  # type: ignore[attr-defined]
        unreachable.reason = f"{self.text} ({self.cause or self.hint})"  # type: ignore[attr-defined]  # wait's line
        return unreachable


_NAMES = "check the host name, and that the name servers of /etc/resolv.conf answer"


def _attempt(db: DatabaseConfig, params: dict[str, str], deadline: float, *, autocommit: bool) -> Connection:
    """One connection attempt within `deadline`; _Retryable when waiting may help."""
    remaining = deadline - time.monotonic()
    attempt_timeout = int(min(max(remaining, ATTEMPT_TIMEOUT_MIN), ATTEMPT_TIMEOUT_MAX))
    try:
        with SHUTDOWN.waiting():  # resolving and connecting are waits for the network: a signal ends them
            conninfo = make_conninfo("", **hostnames.with_addresses(params, deadline))
            return Connection.connect(conninfo, connect_timeout=attempt_timeout, autocommit=autocommit)
    except hostnames.NoAnswer as exc:
        raise _Retryable(str(exc), no_answer=True, hint=_NAMES) from None
    except hostnames.NotResolved as exc:
        raise _Retryable(str(exc), hint=_NAMES) from None
    except psycopg.OperationalError as exc:
        _refuse_for_good(db, exc)
        raise _Retryable(reason(exc), no_answer=isinstance(exc, psycopg.errors.ConnectionTimeout)) from None


def _refuse_for_good(db: DatabaseConfig, exc: psycopg.Error) -> None:
    """Raise when waiting cannot help: a bad setting (exit 2), credentials or a missing database (exit 3)."""
    if is_misconfigured(exc):
        raise ConfigError(f"the connection settings of {db.description} are invalid: {reason(exc)} (check "
                          "the URL's query parameters and the PG* variables)") from None
    if is_permanent(exc):
        raise DatabaseUnreachable(f"cannot connect to {db.description}: {reason(exc)}") from None


def _first_answer(conn: Connection, db: DatabaseConfig, budget: float, deadline: float) -> None:
    """Wait for the connection's first answer within the connect budget, and note the server's process id."""
    conn.wait_limit = max(deadline - time.monotonic(), ATTEMPT_TIMEOUT_MIN)
    conn.doing = "waiting for the first answer"
    try:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    except psycopg.Error as exc:
        no_answer = getattr(exc, "migrator_context", (None, None))[1] is not None
        conn.close()
        if no_answer:
            raise _no_first_answer(db, budget) from None
        _refuse_for_good(db, exc)
        raise _Retryable(reason(exc)) from None
    conn.server_pid = int(row[0]) if row is not None else None


def _no_first_answer(db: DatabaseConfig, budget: float) -> DatabaseUnreachable:
    unreachable = DatabaseUnreachable(f"connected to {db.description}, but its first query got no answer within "
                                      f"{budget:g}s: {refusals.FULL_POOL}, or the server stopped answering "
                                      "(MIGRATOR_CONNECT_TIMEOUT sets the wait)")
    unreachable.no_answer = True  # type: ignore[attr-defined]
    return unreachable


ROLLBACK_WAIT = 5.0


def rolled_back(conn: Connection) -> bool:
    """True when the server confirmed that `conn` has no open transaction (after a failure or a signal);
    waits at most ROLLBACK_WAIT seconds for the answer."""
    if conn.closed or conn.broken:
        return False
    limit = conn.wait_limit
    conn.wait_limit = min(limit or ROLLBACK_WAIT, ROLLBACK_WAIT)
    try:
        conn.rollback()
    except (psycopg.Error, ConnectionLost):
        return False
    finally:
        conn.wait_limit = limit
    return not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
