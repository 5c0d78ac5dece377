"""Who is in the way: the backends that hold a lock we wait for, described for a log line.

Used for the migration lock's holder and for the sessions that block a migration's DDL, so that an
operator reading the log knows which pod or client to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from migrator.redaction import redact

QUERY_PREVIEW = 80
_SELECT = """SELECT a.pid, coalesce(a.application_name, ''), a.state, coalesce(host(a.client_addr), 'local'),
                   extract(epoch FROM now() - a.xact_start)::float8, a.query
            FROM pg_stat_activity a """
_BLOCKING = _SELECT + "WHERE a.pid = ANY(pg_blocking_pids(%s))"
_ADVISORY_HOLDERS = (
    _SELECT + """JOIN pg_locks l ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"""  # noqa: S608 (constants only; values are bound)
)


@dataclass(frozen=True)
class Backend:
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


def describe_all(backends: list[Backend]) -> str:
    return "; ".join(b.describe() for b in backends) or "no visible backend (it may have just finished)"


def blocking_backends(conn: psycopg.Connection[Any], pid: int) -> list[Backend]:
    """The backends that `pid` is waiting for right now."""
    rows = conn.execute(_BLOCKING, (pid,)).fetchall()
    return [Backend(*row) for row in rows]


def advisory_lock_holders(conn: psycopg.Connection[Any], key: int) -> list[Backend]:
    """The backends holding the session advisory lock `key` in the current database."""
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    rows = conn.execute(_ADVISORY_HOLDERS, (classid, objid)).fetchall()
    return [Backend(*row) for row in rows]
