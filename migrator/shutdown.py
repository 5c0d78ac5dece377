"""How the process stops: signals, the bound on stopping, and the one `finish` that writes the outcome.

A signal handler runs on the main thread between any two bytecodes, so raising from it anywhere would tear
through whatever runs there: the report of a failure, a log line half written, the bookkeeping of a step. So
the first SIGTERM or SIGINT only raises Interrupted where stopping is safe and useful: inside a wait for the
database (psycopg then cancels the running statement, and the step's transaction rolls back), inside a sleep,
and while a migration's or seed's own code runs. Anywhere else it sets a flag, and the next such place, or an
explicit `check()`, raises it. Migrator's own bookkeeping runs `deferred()`: a signal never interrupts it.

The process ends within SIGNAL_EXIT_BOUND seconds of the first signal, whatever the network or stderr do: a
thread started with the handlers gives the running statement SIGNAL_GRACE seconds to be cancelled and rolled
back the normal way, then shuts every connection down (migrator.deadlines); at the bound it ends the process.
A second signal cuts that short. The outcome is written once, by `finish`: the termination message first
(it never blocks), then its log line (which may wait for a stderr nobody reads). If the bound comes while
`finish` runs, the process ends with finish's code and message; if `finish` never began, the bound writes its
own last words, taking no lock that a blocked writer could hold.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import suppress
from threading import get_ident
from types import FrameType

from migrator import deadlines, errors, logs, termination
from migrator.errors import Interrupted

SIGNAL_GRACE = 3.0  # for the running statement to be cancelled and its transaction rolled back
SIGNAL_EXIT_BOUND = 10.0  # documented: the process ends at most this long after the first signal
SECOND_SIGNAL_EXIT = 1.0


class Shutdown:
    """The process's one shutdown path: signal handlers, the bound thread, and finish()."""

    def __init__(self) -> None:
        self.first = threading.Event()
        self.again = threading.Event()
        self.signal_name = ""
        self.exit_code = 0
        self.received_at = 0.0
        self.grace_passed = False  # the grace ended: every connection was shut down
        self._signalled = False  # first.is_set(), read where a signal may be raised: without a call
        self._delivered = False  # Interrupted was raised for the first signal
        self._waiting = 0  # the main thread waits for the database, or sleeps
        self._in_step = False  # a migration's or seed's own code runs (set by the migration session)
        self._deferred = 0  # migrator's own bookkeeping runs: never interrupted
        self._finish_lock = threading.Lock()
        self._finished: tuple[int, str | None] | None = None
        self._installed = False
        self._main = threading.main_thread().ident  # compared at every statement: an int, not current_thread()
        # Reusable context managers without state of their own: they run around every statement and every
        # wait for the server, where a generator-based one would build a generator each time. For the same
        # reason they compare thread idents and read _signalled inline.
        self._wait = _Waiting(self)
        self._deferral = _Deferral(self)

    # --- signals --------------------------------------------------------------------------------------

    def install(self) -> None:
        """Signal handlers and the bound thread (started now, so that a signal handler never starts one)."""
        if self._installed:
            return
        self._installed = True
        threading.Thread(target=self._bound, name="migrator-signal-bound", daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.first.is_set():
            self.again.set()  # the bound thread cuts the cleanup short
            return
        self.signal_name, self.exit_code = (("SIGTERM", errors.INTERRUPTED_SIGTERM) if signum == signal.SIGTERM
                                            else ("SIGINT", errors.INTERRUPTED_SIGINT))
        self.received_at = time.monotonic()
        self._signalled = True
        self.first.set()
        if self._interruptible():
            self._deliver()

    def _interruptible(self) -> bool:
        return (self._waiting > 0 or self._in_step) and self._deferred == 0

    def _deliver(self) -> None:
        self._delivered = True
        raise Interrupted(self.signal_name, self.exit_code)

    @property
    def signalled(self) -> bool:
        return self.first.is_set()

    def check(self) -> None:
        """A place where the run may stop: raise Interrupted for a signal that came and was not raised yet."""
        if self._signalled and not self._delivered and self._deferred == 0:
            self._deliver()

    def _on_main(self) -> bool:
        return get_ident() == self._main

    def waiting(self) -> _Waiting:
        """The main thread waits for the database (or sleeps): a signal interrupts the wait."""
        return self._wait

    def in_step(self, running: bool) -> None:
        """A migration's or seed's own code runs (True) or no longer does (False)."""
        if self._on_main():
            self._in_step = running

    def deferred(self) -> _Deferral:
        """Migrator's own bookkeeping: a signal waits until it is done (a pending one is raised on leaving it,
        when the code it returns to may be interrupted)."""
        return self._deferral

    def sleep(self, seconds: float) -> None:
        """Sleep, unless a signal came or comes meanwhile (then Interrupted)."""
        with self.waiting():
            time.sleep(max(seconds, 0.0))

    # --- the bound ------------------------------------------------------------------------------------

    def _bound(self) -> None:
        self.first.wait()
        if not self.again.wait(SIGNAL_GRACE):
            self.grace_passed = True
            deadlines.shut_down_all(f"no answer from the server within {SIGNAL_GRACE:g}s of {self.signal_name}")
        bound = self.received_at + SIGNAL_EXIT_BOUND
        if self.again.wait(max(bound - time.monotonic(), 0)):
            deadlines.shut_down_all(f"a second signal after {self.signal_name}")
            time.sleep(max(min(SECOND_SIGNAL_EXIT, bound - time.monotonic()), 0))
        self._last_resort()

    def _last_resort(self) -> None:
        """End the process now. If finish() began, its outcome stands (its termination message is written);
        else say that the run did not finish stopping, without waiting for stderr."""
        message = (f"interrupted by {self.signal_name}; the process did not finish stopping within "
                   f"{time.monotonic() - self.received_at:.0f}s and exits now, without confirmation of what the server "
                   "did with the running migration (`migrator status` shows it)")
        with self._finish_lock:
            finished = self._finished
            if finished is None:
                self._finished = (self.exit_code, message)
                termination.write(f"migrator failed (exit {self.exit_code}): {message}")
        if finished is not None:
            os._exit(finished[0])
        logs.emergency("error", message)
        os._exit(self.exit_code)

    # --- the outcome ----------------------------------------------------------------------------------

    def finish(self, code: int, summary: str | None, line: str | None = None, *, exc_info: bool = False) -> int:
        """Write the run's outcome once: `summary` to the termination log, then `line` as an error to the log
        (`exc_info`: with the exception being handled). Returns the exit code; a second call changes nothing
        and returns the first one's code."""
        with self._finish_lock:
            if self._finished is not None:
                return self._finished[0]
            if summary is not None:
                termination.write(summary)
            self._finished = (code, summary)
        with self.deferred():
            if line is not None:
                logs.get_logger().error(line, exit_code=code, exc_info=exc_info)
            elif self.first.is_set() and not self._delivered:
                logs.get_logger().info(f"{self.signal_name} came as the run ended; it had nothing left to "
                                       "interrupt")
            for stream in (sys.stdout, sys.stderr):
                with suppress(Exception):
                    stream.flush()
        return code


class _Waiting:
    """Shutdown.waiting(): counted on the main thread only; a signal that came before is raised on entry."""

    __slots__ = ("_shutdown",)

    def __init__(self, shutdown: Shutdown) -> None:
        self._shutdown = shutdown

    def __enter__(self) -> None:
        shutdown = self._shutdown
        if get_ident() != shutdown._main:
            return
        shutdown._waiting += 1
        if shutdown._signalled:
            try:
                shutdown.check()
            except BaseException:
                shutdown._waiting -= 1
                raise

    def __exit__(self, *exc: object) -> None:
        if get_ident() == self._shutdown._main:
            self._shutdown._waiting -= 1


class _Deferral:
    """Shutdown.deferred(): counted on the main thread only; on a normal exit, a pending signal is raised
    when the code it returns to may be interrupted (an exception leaving it goes on as it is)."""

    __slots__ = ("_shutdown",)

    def __init__(self, shutdown: Shutdown) -> None:
        self._shutdown = shutdown

    def __enter__(self) -> None:
        if get_ident() == self._shutdown._main:
            self._shutdown._deferred += 1

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        shutdown = self._shutdown
        if get_ident() != shutdown._main:
            return
        shutdown._deferred -= 1
        if exc_type is None and shutdown._signalled and shutdown._interruptible():
            shutdown.check()


SHUTDOWN = Shutdown()
