"""A fault-injection TCP proxy on 127.0.0.1: real sockets that stall, reset or refuse on command.

A PostgreSQL client pointed at the proxy talks to the real server through it. The faults are the network's:

- `stall()`: stop forwarding, in both directions, while every socket stays open. Nothing is read or written
  any more, so the kernels on both sides keep acknowledging (until the buffers fill): the peer looks alive to
  TCP and keepalives, but no answer ever comes (a frozen proxy, a partitioned node). New connections are
  still accepted and stall at once. `resume()` forwards again, including whatever queued meanwhile.
- `reset()`: close connections with RST (SO_LINGER 0) towards both the client and the server.
- `refuse()`: stop accepting (connections are refused); `accept()` listens again on the same port.

Each control acts on every connection, or on one `Link` (found by the client-side port the server sees in
pg_stat_activity.client_port: `link_for_server_port`).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

POLL = 0.05  # how often a forwarding thread looks at its controls while idle
CHUNK = 65536


def _rst_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN: SO_LINGER on, timeout 0."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class Link:
    """One proxied connection: the accepted client socket and the proxy's socket to the server."""

    def __init__(self, client: socket.socket, server: socket.socket, stalled: bool) -> None:
        self.client, self.server = client, server
        self.server_port = server.getsockname()[1]  # pg_stat_activity.client_port of the backend
        self.accepted_at = time.monotonic()
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._stalled = stalled
        self._reset = False
        self._thread = threading.Thread(target=self._run, name=f"proxy-link-{self.server_port}", daemon=True)
        self._thread.start()

    def stall(self) -> None:
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def reset(self) -> None:
        """RST both ways; returns once both sockets are closed."""
        with self._cond:
            self._reset = True
            self._cond.notify_all()
        self.closed.wait(5)

    @property
    def stalled(self) -> bool:
        return self._stalled

    def _run(self) -> None:
        try:
            self._forward()
        finally:
            with self._cond:
                if self._reset:
                    _rst_close(self.client)
                    _rst_close(self.server)
                else:
                    for sock in (self.client, self.server):
                        with contextlib.suppress(OSError):
                            sock.close()
            self.closed.set()

    def _forward(self) -> None:
        peer = {self.client: self.server, self.server: self.client}
        while True:
            with self._cond:
                # Stalled: read nothing, write nothing, close nothing; the sockets stay open.
                while self._stalled and not self._reset:
                    self._cond.wait()
                if self._reset:
                    return
            readable, _, _ = select.select([self.client, self.server], [], [], POLL)
            for sock in readable:
                with self._cond:
                    if self._stalled or self._reset:
                        break  # a control changed between select and recv: honour it first
                try:
                    data = sock.recv(CHUNK)
                except OSError:  # the peer reset: pass the reset on
                    self._reset = True
                    return
                if not data:
                    return  # an orderly close on one side: close both
                try:
                    peer[sock].sendall(data)
                except OSError:
                    self._reset = True
                    return


class FaultProxy:
    """A TCP proxy from 127.0.0.1:`port` to `target`, with fault controls. Use as a context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.links: list[Link] = []
        self._lock = threading.Lock()
        self._stalled = False
        self._closing = False
        self._listener: socket.socket | None = None
        self.port = 0
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self.accept()

    # --- controls ---------------------------------------------------------------------------------------

    def stall(self, link: Link | None = None) -> None:
        """Stop forwarding on `link`, or on every connection, the new ones included."""
        if link is not None:
            link.stall()
            return
        with self._lock:
            self._stalled = True
            links = list(self.links)
        for each in links:
            each.stall()

    def resume(self, link: Link | None = None) -> None:
        if link is not None:
            link.resume()
            return
        with self._lock:
            self._stalled = False
            links = list(self.links)
        for each in links:
            each.resume()

    def reset(self, link: Link | None = None) -> None:
        """RST `link`, or every open connection."""
        for each in [link] if link is not None else self.open_links():
            each.reset()

    def refuse(self) -> None:
        """Stop accepting: new connections are refused (the port is closed)."""
        self._accepting.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def accept(self) -> None:
        """Listen (again, on the same port) and accept connections."""
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(POLL)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept_loop, args=(listener,), name="proxy-accept",
                                        daemon=True)
        self._thread.start()

    def open_links(self) -> list[Link]:
        with self._lock:
            return [link for link in self.links if not link.closed.is_set()]

    def first_accepted(self, timeout: float = 30) -> float:
        """When the first connection was accepted (time.monotonic), waiting up to `timeout` s for one."""
        wait_until(lambda: self.links, timeout, "a connection to the proxy")
        return self.links[0].accepted_at

    def link_for_server_port(self, port: int) -> Link:
        """The connection whose server side uses `port` (pg_stat_activity.client_port of its backend)."""
        for link in self.open_links():
            if link.server_port == port:
                return link
        raise LookupError(f"no open proxied connection uses local port {port}")

    def close(self) -> None:
        self._closing = True
        self.refuse()
        self.reset()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the accepting thread ---------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._accepting.is_set() and not self._closing:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed (refuse)
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst_close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self.links.append(Link(client, server, stalled=self._stalled))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `predicate()` until true; the time it took. AssertionError naming `what` after `timeout` s."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
