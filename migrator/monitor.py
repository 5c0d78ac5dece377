"""Watching the migration session from a second connection, while migrations or seeds run.

Two jobs, once a second (more often under a short lock_timeout):
- Who is in the way. When PostgreSQL cancels a statement for lock_timeout the wait is over and
  pg_blocking_pids is empty; the session in the way can only be seen while the wait lasts.
- Whether the migration session is alive and answering. A statement may legitimately run for an hour (an
  index build), so its client cannot put a time limit on the answer; this connection can tell the cases
  apart: the server still runs it (fine), the session is gone (its lock went with it), the server finished
  it long ago but the answer never arrived, or the server itself stopped answering. In the last three cases
  the monitor shuts the migration connection down (migrator.deadlines), so the blocked client fails at once
  with the reason, instead of waiting for a network that may never come back.

The monitor is an extra: one connection is enough to migrate. Its connection is made in its own thread, so the
migrations never wait for it; when no slot is free (a role's CONNECTION LIMIT, max_connections, a full session
pool), the run goes on without it and says so once. A monitor that never got an answer knows nothing about
the server, and never ends the migration session; once told to stop, it ends nothing either.
"""

from __future__ import annotations

import contextvars
import threading
import time

import psycopg

from migrator import deadlines
from migrator.blocking import Blocker, Unknown, blocking_backends
from migrator.config import DatabaseConfig, Timeouts
from migrator.database import Connection, connect
from migrator.errors import MigratorError
from migrator.logs import get_logger
from migrator.progress import Reporter

_STATE = "SELECT state FROM pg_stat_activity WHERE pid = %s"
# The states in which the server no longer works on a statement. Anything else (active, or `disabled` and NULL
# under track_activities = off) is not evidence of a lost answer.
_IDLE_STATES = {"idle", "idle in transaction", "idle in transaction (aborted)"}
UNWATCHED = ("the migrations go on without it: blockers of a migration are not named, and a migration session "
             "that stops answering during a statement is noticed by TCP keepalives and MIGRATOR_STATEMENT_TIMEOUT "
             "only (every other wait keeps its client-side bound)")


class Monitor:
    """A daemon thread with its own autocommit connection, watching the backend `pid` of `watched`."""

    def __init__(self, db: DatabaseConfig, timeouts: Timeouts, watched: Connection, pid: int) -> None:
        self.db, self.timeouts, self.watched, self.pid = db, timeouts, watched, pid
        self.interval = min(max(timeouts.ddl_lock / 3, 0.1), 1.0)
        self.last_blockers: list[Blocker] = []
        self.progress = Reporter(timeouts, pid)  # a long statement's progress, read at this thread's looks
        self._seen_at = 0.0
        self._stop = threading.Event()
        self._acting = threading.Lock()  # the stop flag and a shut-down of the migration session exclude each other
        self._conn: Connection | None = None
        # In the creator's context: its lines (progress, warnings) carry the fields bound there, a tenant's name.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="migrator-monitor", daemon=True)

    def _connect(self) -> Connection:
        # The server the migration session is on, not another host of a multi-host URL.
        info = self.watched.info
        pinned = {**self.db.params, "host": info.host, "port": str(info.port)}
        pinned.pop("hostaddr", None)
        if info.hostaddr:
            pinned["hostaddr"] = info.hostaddr
        conn = connect(DatabaseConfig(pinned, self.db.description), self.timeouts, autocommit=True,
                       purpose="monitor", connect_timeout=min(self.timeouts.connect, self.timeouts.stall), quiet=True)
        conn.doing = "watching the migration session"
        return conn

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._acting:
            self._stop.set()
            conn = self._conn
        if conn is None:
            return  # never connected, or still connecting: the thread closes what it gets
        deadlines.WATCHDOG.shut_down(conn, "the monitor stopped")  # wakes a query the thread is blocked in
        self._thread.join(timeout=self.timeouts.stall + 1)
        if not self._thread.is_alive():
            conn.close()

    def blockers_since(self, since: float) -> list[Blocker]:
        """The blockers last seen, if seen after `since` (time.monotonic); unknown without a connection."""
        if self._seen_at >= since:
            return self.last_blockers
        return [Unknown("no monitoring connection to look at them")] if self._conn is None else []

    def _run(self) -> None:
        if not self._start():
            return
        last_answer = time.monotonic()  # the connection's first answer
        unanswered_since: float | None = None
        while not self._stop.wait(self.interval):
            try:
                state = self._look()
            except (psycopg.Error, MigratorError) as exc:
                if not _no_answer(exc):
                    last_answer = time.monotonic()  # the server answered, with an error: it is there
                if time.monotonic() - last_answer > self.timeouts.stall:
                    self._give_up(f"no answer from the server for {self.timeouts.stall:g}s (the monitoring "
                                  "connection got none either)")
                    return
                if not self._reconnect():
                    return
                continue
            last_answer = time.monotonic()
            if state is None:
                self._give_up("the migration session no longer exists on the server (terminated, "
                              "idle_session_timeout, a restart or a failover); the lock ended with it")
                return
            unanswered_since = self._unanswered(state, unanswered_since)
            if unanswered_since is not None and time.monotonic() - unanswered_since > self.timeouts.stall:
                self._give_up(f"the server finished the running statement {self.timeouts.stall:g}s ago but its "
                              "answer never arrived")
                return

    def _start(self) -> bool:
        """The monitoring connection, or False (said once) when the server or pooler has no room for it."""
        try:
            conn = self._connect()
        except MigratorError as exc:
            if not self._stop.is_set():
                why = getattr(exc, "reason", exc)  # the refusal and its setting, without the connect wait's advice
                get_logger().warning(f"no monitoring connection to {self.db.description} ({why}); {UNWATCHED}")
                self.progress.unwatched()
            return False
        return self._keep(conn)

    def _keep(self, conn: Connection) -> bool:
        """Use `conn`, unless the run ended while it was being made."""
        with self._acting:
            if not self._stop.is_set():
                self._conn = conn
                return True
        conn.close()
        return False

    def _look(self) -> str | None:
        if self._conn is None:  # the last reconnect got no answer in time
            lost = psycopg.OperationalError("no monitoring connection")
            lost.migrator_context = ("watching the migration session", "no answer")  # type: ignore[attr-defined]
            raise lost
        seen = blocking_backends(self._conn, self.pid)
        if seen:
            self.last_blockers, self._seen_at = seen, time.monotonic()
        row = self._conn.execute(_STATE, (self.pid,)).fetchone()
        if row is not None:
            self.progress.look(self._conn)
        return None if row is None else str(row[0] or "")

    def _unanswered(self, state: str, since: float | None) -> float | None:
        """Since when the client has been waiting for an answer the server no longer works on."""
        waiting = self.watched.waiting_since
        if waiting is None or state not in _IDLE_STATES or time.monotonic() - waiting < self.interval:
            return None
        return since if since is not None else time.monotonic()

    def _reconnect(self) -> bool:
        """A new monitoring connection; False when the server refuses one (then monitoring stops, and the
        migration goes on: a refusal is an answer, not a stall)."""
        if self._conn is not None:
            deadlines.WATCHDOG.shut_down(self._conn, "monitor reconnecting")
            self._conn.close()
            self._conn = None
        if self._stop.is_set():
            return False
        try:
            conn = self._connect()
        except MigratorError as exc:
            if _no_answer(exc):
                return not self._stop.is_set()  # counts toward the stall, tried again next round
            get_logger().warning(f"the monitoring connection was lost and the server refuses a new one ({exc}): "
                                 f"{UNWATCHED}")
            self.progress.unwatched()
            return False
        return self._keep(conn)

    def _give_up(self, why: str) -> None:
        """Shut the migration session down, unless the run already told the monitor to stop: the session is
        then in other hands (releasing the lock, reading the version), and a finished run is not undone."""
        with self._acting:
            if self._stop.is_set():
                return
            deadlines.WATCHDOG.shut_down(self.watched, why)
        get_logger().debug(f"the monitor shut the migration session down: {why}")


def _no_answer(exc: BaseException) -> bool:
    """True when the error says the server did not answer in time (a deadline, a connect timeout), as
    opposed to an answer that was an error (terminated, too many connections, refused)."""
    return bool(getattr(exc, "no_answer", False) or getattr(exc, "migrator_context", (None, None))[1])
