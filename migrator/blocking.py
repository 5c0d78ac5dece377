"""Who is in the way: the sessions and prepared transactions that hold a lock we wait for, described for a log line.

Used for the migration lock's holder, for what blocks a migration's DDL, and for what keeps migrator from
reading its version table, so that an operator reading the log knows which pod, client or prepared transaction
to look at, and what to do about it.

A prepared transaction (PREPARE TRANSACTION, two-phase commit) has no session: pg_stat_activity does not show
it, pg_blocking_pids reports it as process id 0, and it never ends by itself. It is found in pg_prepared_xacts
through the locks it holds (pg_locks rows without a pid), and named with the command that ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg

from migrator.errors import LockTimeout
from migrator.logs import get_logger
from migrator.redaction import redact

QUERY_PREVIEW = 80
_SELECT = """SELECT a.pid, coalesce(a.application_name, ''), a.state, coalesce(host(a.client_addr), 'local'),
                   extract(epoch FROM now() - a.xact_start)::float8, a.query
            FROM pg_stat_activity a """
# Process id 0 among the blockers stands for prepared transactions: one row with pid 0 says so.
_BLOCKING = (_SELECT + "WHERE a.pid = ANY(pg_blocking_pids(%(pid)s)) UNION ALL SELECT 0, '', NULL, '', NULL, NULL "
             "WHERE 0 = ANY(pg_blocking_pids(%(pid)s))")
_ADVISORY_HOLDERS = (
    _SELECT + """JOIN pg_locks l ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"""  # noqa: S608 (constants only; values are bound)
)
_TABLE_HOLDERS = _SELECT + """WHERE a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'relation'
    AND l.relation = to_regclass(%(table)s) AND l.granted AND l.mode = 'AccessExclusiveLock'
    AND l.pid <> pg_backend_pid())"""  # noqa: S608 (constants only; values are bound)
# The prepared transactions whose locks (pg_locks rows without a pid) match `%(where)s`, found through their
# transaction id lock, the one row of theirs that carries their xid.
_PREPARED = """SELECT p.gid, p.owner, p.database, extract(epoch FROM now() - p.prepared)::float8
    FROM pg_prepared_xacts p
    WHERE p.transaction IN (
        SELECT x.transactionid FROM pg_locks x WHERE x.locktype = 'transactionid' AND x.pid IS NULL
          AND x.virtualtransaction IN (SELECT held.virtualtransaction FROM pg_locks held
                                       WHERE held.pid IS NULL AND held.granted AND %(where)s))
    ORDER BY p.prepared"""
# ... holding the very lock `pid` waits for (the same lock target).
_PREPARED_BLOCKING = _PREPARED.replace("%(where)s", """EXISTS (SELECT 1 FROM pg_locks wanted
    WHERE wanted.pid = %(pid)s AND NOT wanted.granted
      AND (held.locktype, held.database, held.relation, held.page, held.tuple, held.virtualxid, held.transactionid,
           held.classid, held.objid, held.objsubid)
          IS NOT DISTINCT FROM
          (wanted.locktype, wanted.database, wanted.relation, wanted.page, wanted.tuple, wanted.virtualxid,
           wanted.transactionid, wanted.classid, wanted.objid, wanted.objsubid))""")
# ... holding a table in ACCESS EXCLUSIVE mode.
_PREPARED_ON_TABLE = _PREPARED.replace(
    "%(where)s", "held.locktype = 'relation' AND held.relation = to_regclass(%(table)s) "
                 "AND held.mode = 'AccessExclusiveLock'")


class Backend(NamedTuple):
    """One PostgreSQL backend, as pg_stat_activity shows it."""

    pid: int
    application_name: str
    state: str | None
    client: str
    xact_seconds: float | None
    query: str | None

    def describe(self) -> str:
        who = self.application_name or "no application_name"
        parts = [f"pid {self.pid} ({who} from {self.client})", self.state or "unknown state"]
        if self.xact_seconds is not None:
            parts.append(f"transaction open for {self.xact_seconds:.0f}s")
        if self.query:
            query = " ".join(self.query.split())
            parts.append("last query: " + (query if len(query) <= QUERY_PREVIEW else query[:QUERY_PREVIEW] + "..."))
        return redact(", ".join(parts))


class Prepared(NamedTuple):
    """A prepared transaction, as pg_prepared_xacts shows it: it holds its locks until it is decided."""

    gid: str
    owner: str
    database: str
    age_seconds: float

    def describe(self) -> str:
        gid = "'" + self.gid.replace("'", "''") + "'"
        return (f"prepared transaction {gid} (owner {self.owner}, database {self.database}, prepared "
                f"{self.age_seconds:.0f}s ago), which holds its locks until COMMIT PREPARED {gid} or ROLLBACK "
                f"PREPARED {gid} decides it (in database {self.database})")


class Unknown(NamedTuple):
    """Blockers that could not be looked at: `why`."""

    why: str

    def describe(self) -> str:
        return f"sessions not known ({self.why})"


Blocker = Backend | Prepared | Unknown


def describe_all(blockers: Sequence[Blocker]) -> str:
    return "; ".join(b.describe() for b in blockers) or "no visible backend (it may have just finished)"


def blocking_backends(conn: psycopg.Connection[Any], pid: int) -> list[Blocker]:
    """The sessions and prepared transactions that `pid` is waiting for right now."""
    rows = conn.execute(_BLOCKING, {"pid": pid}).fetchall()
    found: list[Blocker] = [Backend(*row) for row in rows if row[0] != 0]
    if len(found) < len(rows):  # blocked by prepared transactions too
        found += [Prepared(*row) for row in conn.execute(_PREPARED_BLOCKING, {"pid": pid}).fetchall()]
    return found


def advisory_lock_holders(conn: psycopg.Connection[Any], key: int) -> list[Blocker]:
    """The backends holding the session advisory lock `key` in the current database."""
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    rows = conn.execute(_ADVISORY_HOLDERS, (classid, objid)).fetchall()
    return [Backend(*row) for row in rows]


def table_lock_holders(conn: psycopg.Connection[Any], table: str) -> list[Blocker]:
    """The sessions and prepared transactions holding `table` (a quoted, qualified name) in ACCESS EXCLUSIVE
    mode, the one mode that blocks a plain SELECT."""
    found: list[Blocker] = [Backend(*row) for row in conn.execute(_TABLE_HOLDERS, {"table": table}).fetchall()]
    found += [Prepared(*row) for row in conn.execute(_PREPARED_ON_TABLE, {"table": table}).fetchall()]
    return found


T = TypeVar("T")
LOG_EVERY = 10.0


def unless_locked(conn: Any, table: str, read: Callable[[], T]) -> T:
    """`read()` (whose statements wait at most conn.lock_attempt for a lock), again while another session or a
    prepared transaction holds `table` locked, for up to conn.lock_wait seconds; then LockTimeout (exit 4)
    naming the holder and what ends it, instead of a wait that the stall deadline would call "no answer"."""
    started = time.monotonic()
    budget = conn.lock_wait if conn.lock_wait is not None else 0.0
    last_log = -LOG_EVERY
    while True:
        try:
            return read()
        except psycopg.errors.LockNotAvailable:
            holders = describe_all(table_lock_holders(conn, table))
        waited = time.monotonic() - started
        if not budget:
            raise LockTimeout(f"the table {table} on {conn.description} is locked by {holders}") from None
        if waited >= budget:
            raise LockTimeout(f"the table {table} on {conn.description} is still locked after {budget:g}s "
                              f"(MIGRATOR_LOCK_TIMEOUT) by {holders}: migrator cannot read it; end that transaction, "
                              "or run again once it ended") from None
        if waited - last_log >= LOG_EVERY:
            get_logger().info(f"waiting for the table {table} on {conn.description}, locked by {holders}",
                              waited=round(waited, 1))
            last_log = waited
