"""Where a signal that came meanwhile is raised, on the Shutdown object itself (no process, no handler installed):
never inside migrator's bookkeeping (`deferred()`), on leaving it when a migration's own code runs again, and on
entering a wait for the server (`waiting()`). The signal tests drive whole runs; the window inside a piece of
bookkeeping is too short to hit from outside, so its rule is pinned here."""

from __future__ import annotations

import signal
import threading

import pytest

from migrator.errors import Interrupted
from migrator.shutdown import Shutdown


def a_signal(shutdown: Shutdown) -> None:
    shutdown._on_signal(signal.SIGTERM, None)


def bookkeeping(shutdown: Shutdown, done: list[str]) -> None:
    """A piece of migrator's bookkeeping during which a signal comes."""
    with shutdown.deferred():
        a_signal(shutdown)
        done.append("the end of the bookkeeping")  # not interrupted inside it


def test_a_signal_during_bookkeeping_is_raised_on_leaving_it_while_a_migration_runs() -> None:
    shutdown = Shutdown()
    shutdown.in_step(True)
    done: list[str] = []
    with pytest.raises(Interrupted):
        bookkeeping(shutdown, done)
    assert done == ["the end of the bookkeeping"]


def test_a_signal_during_nested_bookkeeping_waits_for_the_outermost() -> None:
    shutdown = Shutdown()
    shutdown.in_step(True)
    done: list[str] = []

    def outer() -> None:
        with shutdown.deferred():
            bookkeeping(shutdown, done)
            done.append("the outer bookkeeping went on")  # the inner one returned to bookkeeping: no raise

    with pytest.raises(Interrupted):
        outer()
    assert done == ["the end of the bookkeeping", "the outer bookkeeping went on"]


def test_outside_a_migration_the_signal_waits_for_the_next_stopping_place() -> None:
    shutdown = Shutdown()
    with shutdown.deferred():
        a_signal(shutdown)
    assert shutdown.signalled  # set, not raised: no migration's code runs
    with pytest.raises(Interrupted), shutdown.waiting():
        pytest.fail("a wait must not begin after a signal")


def test_an_error_leaving_bookkeeping_goes_on_as_it_is() -> None:
    shutdown = Shutdown()
    shutdown.in_step(True)

    def failing_bookkeeping() -> None:
        with shutdown.deferred():
            a_signal(shutdown)
            raise ValueError("the bookkeeping's own error")

    with pytest.raises(ValueError, match="the bookkeeping's own error"):
        failing_bookkeeping()


def test_other_threads_are_not_counted() -> None:
    shutdown = Shutdown()
    counts: list[tuple[int, int]] = []

    def elsewhere() -> None:
        with shutdown.deferred(), shutdown.waiting():
            counts.append((shutdown._deferred, shutdown._waiting))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert counts == [(0, 0)]
