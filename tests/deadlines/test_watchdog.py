"""The watchdog that shuts down the socket of a connection whose answer did not come in time.

A deadline either fires or is cancelled: once `cancel` returns, the watchdog never shuts that connection down
for it, and `cancel` says whether it did before. Why a connection was shut down belongs to that connection: a
new one never inherits it, even at the same address.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from migrator import deadlines


class FakePgconn:
    def __init__(self, fd: int) -> None:
        self.socket = fd


class SlowToShut:
    """Stands for a psycopg connection (`closed`, `pgconn.socket`) whose shutdown the test holds half-way: the
    watchdog reads `closed` first, and waits there until the test lets it go on."""

    def __init__(self, fd: int) -> None:
        self.pgconn = FakePgconn(fd)
        self.entered = threading.Event()
        self.release = threading.Event()

    @property
    def closed(self) -> bool:
        self.entered.set()
        assert self.release.wait(30), "the test never let the shutdown go on"
        return False


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def shut(peer: socket.socket) -> bool:
    """Whether the other end was shut down (reading it gives EOF at once)."""
    peer.setblocking(False)
    try:
        return peer.recv(1) == b""
    except BlockingIOError:
        return False


def test_cancel_during_a_firing_waits_for_it_and_reports_it(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    conn = SlowToShut(ours.fileno())
    watchdog = deadlines.Watchdog()
    deadline = watchdog.arm(conn, 0.01, "testing")
    assert conn.entered.wait(30), "the deadline did not fire"
    seen: dict[str, object] = {}

    def cancel() -> None:  # the call's answer arrived as its deadline fired: it cancels the deadline now
        seen["fired"] = watchdog.cancel(deadline)
        seen["shut when cancel returned"] = shut(peer)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    conn.release.set()
    canceller.join(30)
    assert seen == {"fired": True, "shut when cancel returned": True}


def test_a_cancelled_deadline_never_fires(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _peer = pair
    watchdog = deadlines.Watchdog()
    deadline = watchdog.arm(SlowToShut(ours.fileno()), 0.2, "testing")
    assert watchdog.cancel(deadline) is False
    late = watchdog.arm(SlowToShut(ours.fileno()), 0.01, "a later deadline, which the watchdog serves first")
    late.conn.release.set()
    assert late.conn.entered.wait(30)
    watchdog.cancel(late)
    assert deadline.fired is False


class Plain:
    """A connection-like object: only its identity matters to the reasons kept."""

    __slots__ = ("__weakref__", "closed")

    def __init__(self) -> None:
        self.closed = True  # shut_socket leaves a closed connection alone


def test_a_new_connection_does_not_inherit_an_old_ones_reason() -> None:
    old = Plain()
    deadlines.WATCHDOG.shut_down(old, "no answer from the server within 15s while reading the version table")
    address = id(old)
    del old
    new = Plain()  # CPython hands the freed memory of the same size to the next object of that size
    assert id(new) == address
    assert deadlines.lost_reason(new) is None
