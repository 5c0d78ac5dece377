"""Deadlines that hold when the peer stops answering, and the bound on stopping after a signal.

A psycopg call blocks until the server's bytes arrive. A peer that stalls with the socket open (a frozen proxy,
a partitioned node whose kernel still acknowledges) never sends them, libpq's own timeouts cover only
connecting, and TCP keepalives are answered by the stalled peer's kernel. So every wait on the server runs
under a deadline kept by one watchdog thread: when a deadline passes, the watchdog shuts the connection's
socket down, which wakes the blocked call with an error at once (no answer from the server is needed), and
`lost_reason` tells the caller why. The same shutdown ends every connection when the process must stop
(migrator.shutdown, after a signal).

A deadline either fires or is cancelled, never both: `cancel` waits for a firing in progress and says whether
it fired, so that a call whose answer arrived as its deadline passed knows that its connection was shut down.
Why a connection was shut down is kept with the connection itself (weakly), never by an address that a new
connection could reuse.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class Deadline:
    """One armed deadline: `fired` once the watchdog shut its connection down, `cancelled` once its call ended."""

    when: float
    seq: int
    conn: Any = field(compare=False)
    what: str = field(compare=False)
    seconds: float = field(compare=False)
    fired: bool = field(default=False, compare=False)
    cancelled: bool = field(default=False, compare=False)


class Watchdog:
    """One daemon thread that shuts down the sockets of connections whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[Deadline] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        # conn -> why its socket was shut down; weak, so that a connection that is gone takes its reason along
        self._reasons: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def arm(self, conn: Any, seconds: float, what: str) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, next(self._seq), conn, what, seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="migrator-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, deadline)
            if self._heap[0] is deadline:
                self._cond.notify()
        return deadline

    def cancel(self, deadline: Deadline) -> bool:
        """The call is over: the deadline can no longer fire. True when it fired before (its connection was
        shut down, maybe just as the answer arrived)."""
        with self._cond:  # a firing in progress finishes first: it holds the lock while it shuts the socket
            deadline.cancelled = True  # popped lazily
            return deadline.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                deadline = heapq.heappop(self._heap)
                if not deadline.cancelled:
                    deadline.fired = True
                    self._shut(deadline.conn, f"no answer from the server within {deadline.seconds:g}s while "
                                              f"{deadline.what}")

    def shut_down(self, conn: Any, reason: str) -> None:
        """Shut `conn`'s socket down now (from any thread): its blocked or next call fails at once."""
        with self._cond:
            self._shut(conn, reason)

    def _shut(self, conn: Any, reason: str) -> None:
        if _weakrefable(conn):
            self._reasons.setdefault(conn, reason)
        shut_socket(conn)

    def reason(self, conn: Any) -> str | None:
        return self._reasons.get(conn) if _weakrefable(conn) else None

    def forget(self, conn: Any) -> None:
        with self._cond:
            if _weakrefable(conn):
                self._reasons.pop(conn, None)


def _weakrefable(conn: Any) -> bool:
    try:
        weakref.ref(conn)
    except TypeError:
        return False
    return True


def shut_socket(conn: Any) -> None:
    """shutdown(2) on a psycopg connection's socket: wakes a blocked read in another thread with EOF."""
    try:
        if conn.closed:
            return
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except Exception:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


WATCHDOG = Watchdog()


@contextmanager
def deadline(conn: Any, seconds: float, what: str) -> Iterator[Deadline]:
    """Run the block's calls on `conn` under a deadline; past it, the connection is shut down."""
    armed = WATCHDOG.arm(conn, seconds, what)
    try:
        yield armed
    finally:
        WATCHDOG.cancel(armed)


def lost_reason(conn: Any) -> str | None:
    """Why the watchdog shut `conn` down (a deadline, a signal, the monitor), or None if it did not."""
    return WATCHDOG.reason(conn)


# --- the bound on stopping after a signal ----------------------------------------------------------------

_tracked: dict[int, Any] = {}  # connections to shut down when the process must stop
_tracked_lock = threading.Lock()


def track(conn: Any) -> None:
    with _tracked_lock:
        _tracked[id(conn)] = conn


def untrack(conn: Any) -> None:
    with _tracked_lock:
        _tracked.pop(id(conn), None)
    WATCHDOG.forget(conn)


def shut_down_all(reason: str) -> None:
    with _tracked_lock:
        conns = list(_tracked.values())
    for conn in conns:
        WATCHDOG.shut_down(conn, reason)
