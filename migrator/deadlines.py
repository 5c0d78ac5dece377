"""Deadlines that hold when the peer stops answering, and the bound on stopping after a signal.

A psycopg call blocks until the server's bytes arrive. A peer that stalls with the socket open (a frozen proxy,
a partitioned node whose kernel still acknowledges) never sends them, libpq's own timeouts cover only
connecting, and TCP keepalives are answered by the stalled peer's kernel. So every wait on the server runs
under a deadline kept by one watchdog thread: when a deadline passes, the watchdog shuts the connection's
socket down, which wakes the blocked call with an error at once (no answer from the server is needed), and
`lost_reason` tells the caller why. The same shutdown ends every connection when the process must stop.

After SIGTERM or SIGINT the process ends within SIGNAL_EXIT_BOUND seconds whatever the network does: the
running statement gets SIGNAL_GRACE seconds to be cancelled and rolled back the normal way; then every socket
is shut down; at the bound the process writes its last line and exits with the signal's code.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SIGNAL_GRACE = 3.0  # for the running statement to be cancelled and its transaction rolled back
SIGNAL_EXIT_BOUND = 10.0  # documented: the process ends at most this long after the first signal
SECOND_SIGNAL_EXIT = 1.0


@dataclass(order=True)
class Deadline:
    """One armed deadline; `fired` once the watchdog acted on it."""

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
        self._reasons: dict[int, str] = {}  # id(conn) -> why its socket was shut down

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

    def cancel(self, deadline: Deadline) -> None:
        deadline.cancelled = True  # popped lazily; no lock needed for a flag only this side sets

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
        self._reasons.setdefault(id(conn), reason)
        shut_socket(conn)

    def reason(self, conn: Any) -> str | None:
        return self._reasons.get(id(conn))

    def forget(self, conn: Any) -> None:
        with self._cond:
            self._reasons.pop(id(conn), None)


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


class SignalBound:
    """Ends the process within SIGNAL_EXIT_BOUND seconds of the first signal, whatever the main thread does.

    The signal handler only sets events (it runs on the main thread, which may hold any lock); the work is
    done by a thread started before any signal can arrive.
    """

    def __init__(self) -> None:
        self.first = threading.Event()
        self.again = threading.Event()
        self.signal_name = ""
        self.exit_code = 0
        self.received_at = 0.0
        self.last_words: Callable[[str, int], None] = lambda _message, _code: None
        self._thread = threading.Thread(target=self._run, name="migrator-signal-bound", daemon=True)

    def start(self, last_words: Callable[[str, int], None]) -> None:
        self.last_words = last_words
        self._thread.start()

    def signalled(self, name: str, code: int) -> bool:
        """Record a signal; True for the first one."""
        if self.first.is_set():
            self.again.set()
            return False
        self.signal_name, self.exit_code, self.received_at = name, code, time.monotonic()
        self.first.set()
        return True

    def _run(self) -> None:
        self.first.wait()
        if not self.again.wait(SIGNAL_GRACE):
            shut_down_all(f"{self.signal_name}: stopped waiting for the server after {SIGNAL_GRACE:g}s")
        bound = self.received_at + SIGNAL_EXIT_BOUND
        if self.again.wait(max(bound - time.monotonic(), 0)):
            shut_down_all(f"a second signal after {self.signal_name}")
            time.sleep(max(min(SECOND_SIGNAL_EXIT, bound - time.monotonic()), 0))
        try:
            self.last_words(f"interrupted by {self.signal_name}; the process did not finish stopping within "
                            f"{time.monotonic() - self.received_at:.0f}s and exits now, without confirmation of "
                            "what the server did with the running migration (`migrator status` shows it)",
                            self.exit_code)
        finally:
            sys.stderr.flush()
            os._exit(self.exit_code)


SIGNALS = SignalBound()
