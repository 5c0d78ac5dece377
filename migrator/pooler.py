"""Whether a connection pooler keeps the migration session, proven before any lock or setting.

The migration lock and the session's settings live in one server session. A pooler in transaction or
statement mode hands that server session to other clients between our transactions (they would inherit the
lock and the settings) and gives us another one, so it is refused (exit 2). A pooler shows itself at once: the
key libpq got at login is not the server's process id (`pg_backend_pid()`, the first answer).

Whether it keeps sessions cannot be read from the pooler (PgBouncer's SHOW is for its admin users), and must not
depend on which server connection the pool hands out, which a stampede of clients decides. So the check asks
what only a kept session can do, with a second client of the pooler:

1. The second client's first query runs while this session is idle. If it lands on this session's server
   connection, the pooler shares sessions: refused. Then statements of the two clients alternate
   (ALTERNATIONS rounds): in a pool that shares sessions, one of them mostly lands where the other's ran, or
   this session's statements move, and that is a refusal too, before anything is registered.
2. Otherwise this session listens on a channel of its own and the second client notifies it. The server delivers
   the notification to this session's server connection, which passes it to its client while the client is
   idle only if the pooler keeps the two linked: a transaction pool has unlinked them (PgBouncer drops it: "got
   packet 'A' from server when not linked"). So a notification received while idle proves the session is kept,
   whatever server connections the pool hands out. Not received within NOTIFY_WAIT, one more query confirms: a
   kept session delivers it with that answer at the latest.
3. If the second client gets no server connection within FIRST_WAIT (a session pool smaller than the number of
   replicas), this session's own next query must be answered while the second client still waits: a
   transaction pool would queue it behind the second client (PgBouncer serves waiting clients in order), a
   kept session answers at once. One connection from the pool is then enough.

Nothing the check does stays behind: it sets nothing and locks nothing; the LISTEN is issued only on this
session's own server connection (a DO block that checks the backend's pid). Should a pool that shares sessions
pass the first steps and keep that LISTEN, the refusal removes it: clients, each holding a transaction open on
the server connection it got (so that the next one gets another), sweep the pool until one lands there
(`clean_up`, at most CLEANUP_CLIENTS, within MIGRATOR_STALL_TIMEOUT); only a server connection held by another
client's transaction for all that time keeps it, on a channel nothing notifies again, until the pooler
closes that connection.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from migrator import deadlines
from migrator.config import DatabaseConfig, Timeouts
from migrator.errors import ConfigError, ConnectionLost, DatabaseUnreachable, MigratorError
from migrator.logs import get_logger
from migrator.redaction import reason

FIRST_WAIT = 1.0  # the second client's first answer, before the queue test (3.)
QUEUE_GRACE = 1.0  # after this session's answer, how long the second client must still be waiting
NOTIFY_WAIT = 2.0  # the notification to an idle kept session: it comes within milliseconds
ALTERNATIONS = 2  # rounds of statements of both clients before the LISTEN
CLEANUP_CLIENTS = 8  # clients that may hold a server connection of the pool at once, to reach one
PIN_WAIT = 0.5  # for each of them to get a server connection

REFUSAL = ("{db} is reached through a connection pooler that does not keep the session ({why}): transaction or "
           "statement pooling would share the migration lock and settings with other clients. Connect the "
           "migrator directly to PostgreSQL, or through PgBouncer in session mode")


Connect = Callable[[float, bool], Any]  # (connect_timeout, quiet) -> a new autocommit client of the database


class SharesSessions(Exception):
    """The check's proof that the pooler does not keep sessions: why."""


@dataclass
class _Pending:
    """A query of the second client, running in a thread so that this session can act while it waits."""

    conn: Any
    query: str
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    error: BaseException | None = None

    def start(self) -> _Pending:
        threading.Thread(target=self._run, name="migrator-pooler-check", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            cur = self.conn.execute(self.query)
            while cur.description is None and cur.nextset():
                pass
            row = cur.fetchone()
            self.pid = int(row[0]) if row is not None else None
        except BaseException as exc:  # reported by the thread that waits for it
            self.error = exc
        finally:
            self.done.set()

    def answer(self, timeout: float) -> int | None:
        """The pid it ran on, None while it still waits; raises what it raised."""
        if not self.done.wait(timeout):
            return None
        if self.error is not None:
            raise self.error
        return self.pid


def require_session_pooling(conn: Any, pid: int, db: DatabaseConfig, timeouts: Timeouts, connect: Connect) -> None:
    """Return when `conn` is a direct connection or a kept session of a pooler; ConfigError (exit 2) otherwise.
    `connect(connect_timeout, quiet)` opens another client of the same database (migrator.database's connect,
    passed in so that this module sits below it)."""
    if conn.info.backend_pid == pid:
        return  # a direct connection: libpq's key is the server's pid
    try:
        other = connect(min(timeouts.connect, 10), False)
    except DatabaseUnreachable as exc:
        raise DatabaseUnreachable(f"{db.description} is reached through a connection pooler, and a second client "
                                  f"to check that it keeps sessions was refused: {exc}") from None
    other.doing = "checking whether the pooler keeps sessions"
    other.wait_limit = None  # its waits are bounded here (answer(timeout)), and ended by close()
    check = _Check(conn, other, pid, timeouts, connect)
    try:
        how = check.run()
    except SharesSessions as exc:
        check.clean_up(db)
        raise ConfigError(REFUSAL.format(db=db.description, why=exc)) from None
    except psycopg.Error as exc:
        if exc.sqlstate is not None and not conn.broken:
            check.clean_up(db)
            raise ConfigError(REFUSAL.format(db=db.description, why=f"it rejected the check's query: "
                                                                     f"{reason(exc)}")) from None
        raise ConnectionLost(f"{db.description} is reached through a connection pooler, and no answer came within "
                             f"{timeouts.stall:g}s while checking that it keeps sessions: the server, or a full "
                             "pool of a pooler in transaction mode") from None
    finally:
        check.close()
    get_logger().info(f"connected to {db.description} through a pooler that keeps sessions ({how})")


class _Check:
    """One run of the check: this session (`conn`, server pid `pid`) and a second client (`other`)."""

    def __init__(self, conn: Any, other: Any, pid: int, timeouts: Timeouts, connect: Connect) -> None:
        self.connect = connect
        self.conn, self.other, self.pid, self.timeouts = conn, other, pid, timeouts
        self.channel = f"migrator_pooler_check_{secrets.token_hex(8)}"
        self.listening = False
        self.received = False
        self.pending: _Pending | None = None
        conn.add_notify_handler(self._on_notify)  # notifications that arrive with an answer

    def _on_notify(self, note: psycopg.Notify) -> None:
        if note.channel == self.channel:
            self.received = True

    def run(self) -> str:
        first = _Pending(self.other, "SELECT pg_backend_pid()").start()
        self.pending = first
        landed = first.answer(FIRST_WAIT)
        if landed is None:
            return self._queue_test(first)
        return self._notify_test(landed)

    def _queue_test(self, first: _Pending) -> str:
        """The second client waits for a server connection: this session's query must not wait behind it."""
        self._own_pid_is_ours()
        landed = first.answer(QUEUE_GRACE)
        if landed is None:
            return "it answered this session while another client waited for a server connection"
        return self._notify_test(landed)

    def _notify_test(self, landed: int) -> str:
        if landed == self.pid:
            raise SharesSessions("it gave another client this session's server connection")
        self._alternate()
        self._listen()
        notify = sql.SQL("UNLISTEN {ch}; SELECT pg_backend_pid(), pg_notify({name}, '')").format(
            ch=sql.Identifier(self.channel), name=sql.Literal(self.channel)).as_string(self.other)
        second = _Pending(self.other, notify).start()
        self.pending = second
        notified_from = second.answer(self.timeouts.stall)
        if notified_from is None:
            raise psycopg.OperationalError("no answer to the second client")  # reported as no answer
        if notified_from == self.pid:
            self.listening = False  # its UNLISTEN ran there
            raise SharesSessions("it gave another client this session's server connection")
        if self._notified(NOTIFY_WAIT):
            return "a notification reached this session while it was idle"
        self._own_pid_is_ours()  # a kept session delivers a notification with its next answer at the latest
        if self._notified(0):
            return "a notification reached this session with its next answer"
        raise SharesSessions("a notification to this session's server connection never reached it")

    def _alternate(self) -> None:
        """Statements of the two clients in turn, before anything is registered: a pool that shares sessions
        mostly shows itself here already (a statement of one lands where the other's ran, or this session's
        moves), so that the LISTEN, which such a pool would keep, is rarely reached on one."""
        for _ in range(ALTERNATIONS):
            self._own_pid_is_ours()
            probe = _Pending(self.other, "SELECT pg_backend_pid()").start()
            self.pending = probe
            landed = probe.answer(self.timeouts.stall)
            if landed is None:
                raise psycopg.OperationalError("no answer to the second client")  # reported as no answer
            if landed == self.pid:
                raise SharesSessions("it gave another client this session's server connection")

    def _listen(self) -> None:
        """LISTEN on this session's server connection only (nothing on a connection of the pool's)."""
        listen = sql.SQL("DO $$BEGIN IF pg_backend_pid() = {pid} THEN LISTEN {ch}; END IF; END$$; "
                         "SELECT pg_backend_pid()").format(pid=sql.Literal(self.pid), ch=sql.Identifier(self.channel))
        if self._pid_of(listen) != self.pid:
            raise SharesSessions("this session's statements ran on different server connections")
        self.listening = True

    def _own_pid_is_ours(self) -> None:
        if self._pid_of(sql.SQL("SELECT pg_backend_pid()")) != self.pid:
            raise SharesSessions("this session's statements ran on different server connections")

    def _pid_of(self, query: sql.Composable) -> int | None:
        cur = self.conn.execute(query)
        while cur.description is None and cur.nextset():
            pass
        row = cur.fetchone()
        return int(row[0]) if row is not None else None

    def _notified(self, timeout: float) -> bool:
        """Whether this session received the check's notification, waiting up to `timeout` s while idle."""
        deadline = time.monotonic() + timeout
        with self.conn.lock:
            pgconn = self.conn.pgconn
            while True:
                pgconn.consume_input()
                while (note := pgconn.notifies()) is not None:
                    self.received = self.received or note.relname.decode() == self.channel
                if self.received:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                select.select([pgconn.socket], [], [], remaining)

    def clean_up(self, db: DatabaseConfig) -> None:
        """After a refusal, with this session's former server connection left listening: reach it, and UNLISTEN.

        A transaction pool hands out the server connection freed last, so one client's statements keep landing
        on the same few. Instead, clients (this session first, then new ones) each hold a transaction open on
        the server connection they got, so that the next one gets another, until one lands there: at most
        CLEANUP_CLIENTS, within MIGRATOR_STALL_TIMEOUT. A client that gets no server connection within PIN_WAIT
        ends the attempt (the sweep must not hold a busy pool's connections while it waits for more). Every
        transaction is rolled back after."""
        if not self.listening:
            return
        deadline = time.monotonic() + self.timeouts.stall
        pins: list[_Pending] = []
        try:
            client = self.conn
            while len(pins) < CLEANUP_CLIENTS and time.monotonic() < deadline:
                pins.append(_Pending(client, "BEGIN; SELECT pg_backend_pid()").start())
                landed = pins[-1].answer(min(PIN_WAIT, max(deadline - time.monotonic(), 0)))
                if landed is None:
                    return
                if landed == self.pid:
                    client.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(self.channel)))
                    client.execute("COMMIT")
                    self.listening = False
                    return
                client = self._new_client(db, deadline)
        except (psycopg.Error, MigratorError):
            return
        finally:
            _end_pins(pins, self.conn)

    def _new_client(self, db: DatabaseConfig, deadline: float) -> Any:
        client = self.connect(max(deadline - time.monotonic(), 1), True)
        client.wait_limit = max(deadline - time.monotonic(), 1)
        return client


    def close(self) -> None:
        """End the second client; a query of it still waiting in the pooler's queue ends with it."""
        pending = self.pending
        if pending is not None and not pending.done.is_set():
            deadlines.WATCHDOG.shut_down(self.other, "pooler check finished")
            pending.done.wait(self.timeouts.stall)
        if self.listening and not self.conn.broken:
            with contextlib.suppress(psycopg.Error, MigratorError):  # a failing session reports its own error
                self.conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(self.channel)))
            self.listening = False
        self.conn.remove_notify_handler(self._on_notify)
        self.other.close()


def _end_pins(pins: list[_Pending], own: Any) -> None:
    """End the cleanup's transactions and close the clients it opened. A client still waiting for a server
    connection is shut down (it holds none); one that holds a transaction rolls it back first (a client that
    leaves with a transaction open makes the pooler close that server connection)."""
    for pin in pins:
        client = pin.conn
        if not pin.done.is_set():
            deadlines.WATCHDOG.shut_down(client, "pooler check finished")
            pin.done.wait(1)
        else:
            with contextlib.suppress(psycopg.Error, MigratorError):
                if client.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    client.execute("ROLLBACK")
        if client is not own:
            client.close()
