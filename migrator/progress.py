"""Progress of a long migration statement, from the server's own views, read on the monitor's connection.

A statement that runs longer than MIGRATOR_PROGRESS_AFTER (5 s) gets a line every MIGRATOR_PROGRESS_INTERVAL
(10 s) until it ends, after its own statement line:

    ... create index users_email_index: building index (scanning table) 41% (12,345 of 30,000 blocks);
        25s elapsed, about 36s left in this phase

What the line says comes from PostgreSQL, read in one round trip on the monitor's autocommit connection (never
on the migration session, which is busy running the statement):
- the progress view of the command the backend runs: pg_stat_progress_create_index (CREATE INDEX
  [CONCURRENTLY], REINDEX), pg_stat_progress_cluster (CLUSTER, VACUUM FULL), pg_stat_progress_vacuum and
  pg_stat_progress_analyze: the server's phase, and the counter that phase advances, done of total;
- the lock it waits for (pg_locks) and the sessions that hold it (pg_blocking_pids, described by
  migrator.blocking), also in the waiting phases of a concurrent index build;
- the table locks it holds that stop other sessions (an ALTER TABLE that rewrites a table has no progress view:
  then this, with the time elapsed, is what is known), and how many sessions wait for a lock on those tables.

The estimate of the time left is the current phase's own, at its average rate since this reporter first saw
the phase; the line says why there is none when there is none. Each view is read whole (to_jsonb), so that a
column one PostgreSQL version lacks or renames (PostgreSQL 17 renamed pg_stat_progress_vacuum's dead-tuple
columns and added indexes_total) is simply absent, never an error; a view a version lacks is not queried.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg

from migrator.blocking import Backend, Blocker, blocking_backends, describe_all
from migrator.logs import get_logger

if TYPE_CHECKING:
    from migrator.config import Timeouts

PREFIX = "... "  # a progress line continues the statement line above it


class View(NamedTuple):
    """A progress view, the PostgreSQL version that has it, and the counter each of its phases advances."""

    name: str
    key: str
    since: int  # server_version_num
    # (a part of the phase's name, the done column, the total column or None, the unit), first match wins; a
    # rule whose total is 0 or absent in the row falls through to the next; a done column of None: no counter.
    rules: tuple[tuple[str, str | None, str | None, str], ...]


VIEWS = (
    # PostgreSQL resets the counters when a phase begins; a sorting phase already shows the tuples it will load,
    # with none done, so it is given no counter rather than a misleading 0%.
    View("pg_stat_progress_create_index", "create_index", 120000, (
        ("waiting for", "lockers_done", "lockers_total", "lockers"),
        ("sorting", None, None, ""),
        ("loading tuples", "tuples_done", "tuples_total", "tuples"),
        ("", "blocks_done", "blocks_total", "blocks"),
        ("", "tuples_done", "tuples_total", "tuples"),
    )),
    View("pg_stat_progress_cluster", "cluster", 120000, (
        ("seq scanning heap", "heap_blks_scanned", "heap_blks_total", "blocks"),
        ("index scanning heap", "heap_tuples_scanned", None, "tuples scanned"),
        ("writing new heap", "heap_tuples_written", None, "tuples written"),
        ("rebuilding index", "index_rebuild_count", None, "indexes rebuilt"),
    )),
    View("pg_stat_progress_vacuum", "vacuum", 90600, (
        ("scanning heap", "heap_blks_scanned", "heap_blks_total", "blocks"),
        ("vacuuming heap", "heap_blks_vacuumed", "heap_blks_total", "blocks"),
        ("indexes", "indexes_processed", "indexes_total", "indexes"),  # PostgreSQL 17+
    )),
    View("pg_stat_progress_analyze", "analyze", 130000, (
        ("acquiring inherited sample rows", "child_tables_done", "child_tables_total", "child tables"),
        ("acquiring sample rows", "sample_blks_scanned", "sample_blks_total", "blocks"),
        ("computing extended statistics", "ext_stats_computed", "ext_stats_total", "extended statistics"),
    )),
)

# Table locks that stop other sessions' ordinary queries, strongest first, and what they stop.
STOPPING_LOCKS = {
    "AccessExclusiveLock": "every query on it waits",
    "ExclusiveLock": "all but plain reads of it wait",
    "ShareRowExclusiveLock": "writes to it wait",
    "ShareLock": "writes to it wait",
}
HELD_SHOWN = 3  # tables named in a line; more become "and N more"
_TABLE_KINDS = {"r", "p", "m"}  # tables, partitioned tables, materialized views (not their indexes or TOAST)
# SQLSTATE classes of an answer that progress cannot be read here: 42 (no such view or column, no permission),
# 0A (not supported).
_REFUSED = ("42", "0A")
_IDLE_STATES = {"idle", "idle in transaction", "idle in transaction (aborted)"}

_LOCKS = """locks AS (SELECT locktype, database, relation, pid, mode, granted FROM pg_locks),
mine AS (SELECT * FROM locks WHERE pid = %(pid)s AND (NOT granted OR (locktype = 'relation' AND mode = ANY(%(modes)s))))
"""  # referenced twice below: PostgreSQL takes one snapshot of the lock table for the whole report
_LOCKS_JSON = """(SELECT jsonb_agg(jsonb_build_object(
        'mode', m.mode, 'granted', m.granted, 'locktype', m.locktype, 'relation', m.relation::regclass::text,
        'relkind', c.relkind, 'waiters', (SELECT count(*) FROM locks w WHERE NOT w.granted AND w.pid <> m.pid
                                          AND w.database = m.database AND w.relation = m.relation)))
    FROM mine m LEFT JOIN pg_class c ON c.oid = m.relation)"""


@functools.lru_cache(maxsize=4)
def report_sql(server_version: int) -> str:
    """The one query of a report: the backend's state, its progress view row (views this version has), its locks."""
    # A backend runs one command with progress at a time: at most one of the views has its row.
    views = [f"(SELECT to_jsonb(p) || jsonb_build_object('view', '{v.key}') FROM {v.name} p "  # noqa: S608
             "WHERE p.pid = a.pid)" for v in VIEWS if server_version >= v.since]  # (constants only)
    progress = f"coalesce({', '.join(views)})" if views else "NULL::jsonb"
    return (f"WITH {_LOCKS}SELECT a.state, a.wait_event_type = 'Lock', {progress}, {_LOCKS_JSON} "  # noqa: S608
            "FROM pg_stat_activity a WHERE a.pid = %(pid)s")  # (constants only; values are bound)


class Counter(NamedTuple):
    """What the current phase has done of its total (None: the server reports no total for it)."""

    done: int
    total: int | None
    unit: str

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(self.done * 100 // self.total, 100)

    def text(self) -> str:
        if self.total is None:
            return f"({self.unit}: {self.done:,})"
        return f"{self.percent}% ({self.done:,} of {self.total:,} {self.unit})"


def counter(row: Mapping[str, Any]) -> Counter | None:
    """The counter the row's phase advances, by its view's rules; None when the phase has none."""
    view = next((v for v in VIEWS if v.key == row.get("view")), None)
    phase = str(row.get("phase") or "")
    for part, done, total, unit in view.rules if view else ():
        if part not in phase:
            continue
        if done is None:
            return None
        if done not in row or (total is not None and not row.get(total)):
            continue  # a column this version lacks, or a total the server has not set in this phase
        return Counter(int(row[done] or 0), int(row[total]) if total else None, unit)
    return None


def phase_text(phase: str) -> str:
    """`building index: scanning table` as `building index (scanning table)`, inside a line that has its colon."""
    head, sep, sub = phase.partition(": ")
    return f"{head} ({sub})" if sep else phase


def seconds_text(seconds: float) -> str:
    """2.5s, 25s, 3m05s, 1h02m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Snapshot(NamedTuple):
    """What the server showed of the migration session at one look."""

    state: str | None
    waiting: bool  # for a heavyweight lock (wait_event_type Lock)
    progress: Mapping[str, Any] | None
    locks: tuple[Mapping[str, Any], ...]
    blockers: tuple[Blocker, ...] = ()

    def waiting_for(self) -> str | None:
        """The lock it waits for, in words; None when it waits for none."""
        lock = next((lock for lock in self.locks if not lock["granted"]), None) if self.waiting else None
        if lock is None:
            return None
        kind, mode, relation = lock["locktype"], lock["mode"], lock["relation"]
        if kind == "relation":
            return f"{mode} on {relation}"
        if kind == "virtualxid":
            return "an older transaction to end"
        if kind == "transactionid":
            return "another transaction to end (it holds a row this statement needs)"
        if kind == "tuple":
            return f"a row lock on {relation}"
        return f"{mode} ({kind} lock)"

    def held(self) -> list[Mapping[str, Any]]:
        """The table locks it holds that stop other sessions, strongest first."""
        order = list(STOPPING_LOCKS)
        held = [lock for lock in self.locks
                if lock["granted"] and lock["relkind"] in _TABLE_KINDS and lock["mode"] in STOPPING_LOCKS]
        strongest: dict[str, Mapping[str, Any]] = {}
        for lock in sorted(held, key=lambda lock: (order.index(lock["mode"]), lock["relation"])):
            strongest.setdefault(lock["relation"], lock)
        return list(strongest.values())


@dataclass
class Running:
    """The statement the migration session runs, as its hooks told, and what this reporter saw of it."""

    statement: str
    fields: Mapping[str, Any]
    started: float = field(default_factory=time.monotonic)
    reported: float | None = None
    phase: tuple[str, str] | None = None  # (view, phase) of the phase the estimate is about
    phase_start: tuple[float, int] | None = None  # (when, done) of the first look at that phase

    def estimate(self, row: Mapping[str, Any] | None, count: Counter | None, now: float) -> tuple[float | None, str]:
        """(seconds left in the current phase, the words for it): the phase's average rate since first seen."""
        key = (str(row.get("view")), str(row.get("phase"))) if row is not None else None
        first = self.phase_start if key == self.phase else None
        if first is None:  # a new phase, or one without a counter so far
            self.phase, self.phase_start = key, (now, count.done) if count is not None else None
        if count is None:
            return None, "no estimate (PostgreSQL counts nothing in this phase)"
        if count.total is None:
            return None, "no estimate (PostgreSQL reports no total for this phase)"
        if first is None:
            return None, "no estimate yet (first look at this phase)"
        rate = (count.done - first[1]) / (now - first[0]) if now > first[0] else 0.0
        if rate <= 0:
            return None, "no estimate yet (no progress in this phase since the first look)"
        left = max(count.total - count.done, 0) / rate
        return left, f"about {seconds_text(left)} left in this phase"


class Report(NamedTuple):
    """One progress line: its text for the console, its fields for JSON."""

    running: Running
    snapshot: Snapshot
    elapsed: float
    eta: float | None
    eta_text: str

    @property
    def row(self) -> Mapping[str, Any] | None:
        return self.snapshot.progress

    def line(self) -> str:
        parts = [self._status(), self._held()]
        if self.snapshot.waiting:
            parts.append("blocked by " + describe_all(list(self.snapshot.blockers)))
        sep = "; " if self.snapshot.waiting else ", "  # a description of blockers has commas of its own
        timing = f"{seconds_text(self.elapsed)} elapsed, {self._eta_words()}"
        return f"{PREFIX}{self.running.statement}: {', '.join(p for p in parts if p)}{sep}{timing}"

    def _status(self) -> str:
        row, waiting_for = self.row, self.snapshot.waiting_for()
        if row is None:
            return f"waiting for {waiting_for}" if waiting_for else "running"
        phase = str(row.get("phase") or "running")
        status = phase_text(phase)
        count = counter(row)
        if count is not None:
            status += " " + count.text()
        if row.get("partitions_total"):
            status += f", {row.get('partitions_done') or 0:,} of {row['partitions_total']:,} partitions done"
        if waiting_for and not phase.startswith("waiting for"):
            status += f", waiting for {waiting_for}"
        return status

    def _held(self) -> str:
        held = self.snapshot.held()
        texts = []
        for lock in held[:HELD_SHOWN]:
            waiters = int(lock.get("waiters") or 0)
            queue = f", {waiters} session{'s' if waiters != 1 else ''} waiting for a lock on it" if waiters else ""
            texts.append(f"{lock['mode']} on {lock['relation']} ({STOPPING_LOCKS[lock['mode']]}{queue})")
        if len(held) > HELD_SHOWN:
            texts.append(f"{len(held) - HELD_SHOWN} more")
        return "holds " + " and ".join(texts) if texts else ""

    def _eta_words(self) -> str:
        if self.snapshot.waiting:
            return "no estimate (it waits for other sessions)"
        if self.row is not None:
            return self.eta_text
        if self.snapshot.state == "disabled":
            return "no estimate (track_activities is off for this session: the server reports no progress)"
        return "no estimate (PostgreSQL reports no progress for this statement)"

    def fields(self) -> dict[str, Any]:
        """The JSON fields: the same facts as the line, as values."""
        row = self.row or {}
        count = counter(row) if self.row is not None else None
        return {
            "statement": self.running.statement,
            "command": row.get("command"),
            "phase": row.get("phase"),
            "done": count.done if count else None,
            "total": count.total if count else None,
            "unit": count.unit if count else None,
            "percent": count.percent if count else None,
            "elapsed": round(self.elapsed, 1),
            "eta": None if self.eta is None or self.snapshot.waiting else round(self.eta, 1),
            "waiting_for": self.snapshot.waiting_for(),
            # Sessions by their process id; a prepared transaction has none (the line names it).
            "blocked_by": [b.pid for b in self.snapshot.blockers if isinstance(b, Backend)],
            "holds": [f"{lock['mode']} on {lock['relation']}" for lock in self.snapshot.held()],
        }


class Reporter:
    """Reports the running statement's progress, when it is due, at each look of the monitor thread."""

    def __init__(self, timeouts: Timeouts, pid: int) -> None:
        self.after, self.interval, self.pid = timeouts.progress_after, timeouts.progress_interval, pid
        self._running: Running | None = None
        self._off = self.interval == 0

    def unwatched(self) -> None:
        """The monitor has no connection (none free, or refused): no progress lines; said once, at debug."""
        unwatched()

    def began(self, statement: str, fields: Mapping[str, Any]) -> None:
        """Called on the migration thread as the statement is sent."""
        self._running = Running(statement, dict(fields))

    def ended(self) -> None:
        """Called on the migration thread when the statement's answer (or error) arrived."""
        self._running = None

    def look(self, conn: psycopg.Connection[Any]) -> None:
        """On the monitor thread: one report when one is due. An error that says the server answered but
        cannot show progress (a view or column it lacks, no permission) turns reports off, said once at debug;
        any other error is the monitor's to handle (it reconnects, or notices a stall)."""
        running, now = self._running, time.monotonic()
        if running is None or self._off or not self._due(running, now):
            return
        try:
            snapshot = self._read(conn)
        except psycopg.Error as exc:
            if not (exc.sqlstate or "").startswith(_REFUSED):
                raise
            self._off = True
            get_logger().debug(f"no progress lines for long statements: the server refused the query ({exc})")
            return
        # The statement may have ended while the server answered: its line would describe the next one.
        if self._running is not running or snapshot.state is None or snapshot.state in _IDLE_STATES:
            return
        now = time.monotonic()
        count = counter(snapshot.progress) if snapshot.progress is not None else None
        eta, eta_text = running.estimate(snapshot.progress, count, now)
        report = Report(running, snapshot, now - running.started, eta, eta_text)
        running.reported = now
        get_logger().info(report.line(), **running.fields, **report.fields())

    def _due(self, running: Running, now: float) -> bool:
        if running.reported is None:
            return now - running.started >= self.after
        return now - running.reported >= self.interval

    def _read(self, conn: psycopg.Connection[Any]) -> Snapshot:
        row = conn.execute(report_sql(conn.info.server_version),
                           {"pid": self.pid, "modes": list(STOPPING_LOCKS)}).fetchone()
        if row is None:
            return Snapshot(None, False, None, ())
        state, waiting, progress, locks = row
        blockers = tuple(blocking_backends(conn, self.pid)) if waiting else ()
        return Snapshot(state, bool(waiting), progress, tuple(locks or ()), blockers)


@functools.lru_cache(maxsize=1)  # said once per process
def unwatched() -> None:
    """No monitoring connection (none free, or refused): no progress lines; said once, at debug."""
    get_logger().debug("no progress lines for long statements: no monitoring connection (progress is read on it)")
