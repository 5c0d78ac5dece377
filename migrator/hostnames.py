"""Host names resolved under the caller's deadline, so that a name server that does not answer cannot stretch
MIGRATOR_CONNECT_TIMEOUT, `wait --timeout` or the bound on stopping after a signal.

libpq resolves a host name with a blocking getaddrinfo() inside its connect call. With Kubernetes' resolver
defaults (ndots:5 and several search domains) and a DNS server that does not answer, that one call lasts 20 to
30 s, beyond every bound, and the process cannot act on a signal meanwhile. So migrator resolves the names
itself, in a daemon thread, waits for the answer only until the deadline (a signal's handler runs during the
wait), and hands libpq the addresses as `hostaddr`, next to the names in `host`: libpq then resolves nothing,
and still uses the names for SSL certificate verification, .pgpass and its messages.

A lookup that outlives its deadline finishes in its thread; the next attempt for the same name waits for that
lookup instead of starting another, so a name server that never answers costs one thread per name.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

DEFAULT_PORT = "5432"


class NotResolved(Exception):
    """The name server answered: the name has no address (yet). Worded as libpq words it."""


class NoAnswer(Exception):
    """No answer about a name before the deadline."""


@dataclass
class _Lookup:
    """One getaddrinfo() call running in its own thread."""

    host: str
    port: str
    done: threading.Event = field(default_factory=threading.Event)
    addresses: list[str] = field(default_factory=list)
    error: str | None = None

    def run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, socket.AF_UNSPEC, socket.SOCK_STREAM)
            self.addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # libpq's order, no repeats
        except (OSError, UnicodeError) as exc:
            self.error = str(exc.args[-1] if isinstance(exc, socket.gaierror) and exc.args else exc)
        finally:
            self.done.set()


_running: dict[tuple[str, str], _Lookup] = {}
_running_lock = threading.Lock()


def _lookup(host: str, port: str) -> _Lookup:
    """The lookup in flight for (host, port), or a new one."""
    with _running_lock:
        lookup = _running.get((host, port))
        if lookup is None or lookup.done.is_set():
            lookup = _Lookup(host, port)
            _running[(host, port)] = lookup
            threading.Thread(target=lookup.run, name=f"migrator-resolve-{host}", daemon=True).start()
        return lookup


def addresses(host: str, port: str, deadline: float) -> list[str]:
    """The addresses of `host`, waiting at most until `deadline` (time.monotonic)."""
    lookup = _lookup(host, port)
    if not lookup.done.wait(max(deadline - time.monotonic(), 0)):
        raise NoAnswer(f'no answer from the name server about host name "{host}"')
    with _running_lock:
        if _running.get((host, port)) is lookup:
            del _running[(host, port)]  # the next attempt asks again: DNS answers change (a failover)
    if lookup.error is not None or not lookup.addresses:
        raise NotResolved(f'could not translate host name "{host}" to address: {lookup.error or "no address"}')
    return lookup.addresses


def needs_lookup(host: str) -> bool:
    """False for what libpq does not resolve: a Unix socket directory, an abstract socket, an IP address."""
    if not host or host.startswith(("/", "@")):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def with_addresses(params: dict[str, str], deadline: float) -> dict[str, str]:
    """`params` with `hostaddr` set for every host name, resolved by `deadline`; unchanged when there is nothing
    to resolve (Unix sockets, IP addresses, a hostaddr given by the user).

    A name with several addresses becomes as many entries (host, hostaddr and port lists stay aligned, as libpq
    requires), so libpq still tries each address in turn. Of several hosts, one that does not resolve is left
    out, as libpq skips it; NotResolved when none resolves, NoAnswer when the deadline passed first."""
    hosts = params.get("host", "").split(",")
    if params.get("hostaddr") or not any(needs_lookup(h) for h in hosts):
        return params
    ports = params.get("port", "").split(",")
    ports = ports if len(ports) == len(hosts) else [ports[0]] * len(hosts)
    out_hosts: list[str] = []
    out_addrs: list[str] = []
    out_ports: list[str] = []
    failure: NotResolved | None = None
    for host, port in zip(hosts, ports, strict=True):
        found = [""]  # an empty hostaddr: libpq uses `host` as it is (a socket directory, an address)
        if needs_lookup(host):
            try:
                found = addresses(host, port or DEFAULT_PORT, deadline)
            except NotResolved as exc:
                failure = failure or exc
                continue
        for address in found:
            out_hosts.append(host)
            out_addrs.append(address)
            out_ports.append(port)
    if not out_hosts:
        assert failure is not None
        raise failure
    resolved = {**params, "host": ",".join(out_hosts), "hostaddr": ",".join(out_addrs)}
    if any(out_ports):
        resolved["port"] = ",".join(out_ports)
    return resolved
