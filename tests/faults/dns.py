"""A name server that never answers, reached through the resolver the migrator really uses.

glibc's getaddrinfo() reads /etc/resolv.conf and asks the name servers it lists, on port 53 (a resolv.conf
cannot name another port). So the test binds a UDP socket on port 53 of a free loopback address (any of
127.0.0.0/8 on Linux), reads every query sent to it and never replies, and runs the migrator in a private mount
namespace (`unshare -m`, root only) where a resolv.conf of the test's is bind-mounted over /etc/resolv.conf:
Kubernetes' defaults (ndots:5 and the pod's search domains), pointing at that socket. Nothing outside the
namespace sees the change.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import threading
from pathlib import Path

import pytest

# A pod's resolv.conf in namespace `default` of a cluster whose domain is cluster.local (kubelet's defaults).
POD_SEARCH = "default.svc.cluster.local svc.cluster.local cluster.local"


def require_private_mounts() -> None:
    if os.geteuid() != 0:
        pytest.skip("a private resolv.conf needs a mount namespace (unshare -m), which needs root")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")


class SilentNameServer:
    """UDP port 53 on a loopback address of its own: queries are read (and counted), never answered."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
            try:
                self.sock.bind((self.address, 53))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free loopback address with port 53 for the silent name server")
        self.sock.settimeout(0.2)
        self.queries = 0
        self.first_query = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._read, name="silent-dns", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closing:
            try:
                self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            self.first_query.set()

    def resolv_conf(self, directory: Path) -> Path:
        path = directory / "resolv.conf"
        path.write_text(f"nameserver {self.address}\nsearch {POD_SEARCH}\noptions ndots:5\n")
        return path

    def close(self) -> None:
        self._closing = True
        self._thread.join(2)
        self.sock.close()


def in_private_resolver(resolv_conf: Path) -> list[str]:
    """The argv prefix that runs a command with `resolv_conf` as its /etc/resolv.conf (the command's own pid:
    the shell execs it)."""
    return ["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv_conf)]
