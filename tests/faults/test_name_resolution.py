"""A name server that never answers: name resolution stays inside every bound of the migrator.

With Kubernetes' resolver defaults (ndots:5, three search domains) glibc asks the silent server about four names,
twice each, five seconds a try: getaddrinfo() alone takes about 40 s. The migrator resolves in a thread of its
own under its deadline, so MIGRATOR_CONNECT_TIMEOUT, `wait --timeout` and SIGTERM keep their bounds, and the
lines say what happened.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.dns import SilentNameServer, in_private_resolver, require_private_mounts
from tests.faults.helpers import MARGIN, SIGNAL_BOUND, Migrator

HOST = "db.example.internal"
URL = f"postgresql://app:pw-not-used@{HOST}:5432/app"
DESCRIPTION = f"app@{HOST}:5432/app"
TIMEOUT = 5.0
STARTUP = 3.0  # the interpreter's start-up on a busy 2-core machine, counted from the process start


@pytest.fixture
def name_server() -> Iterator[SilentNameServer]:
    require_private_mounts()
    server = SilentNameServer()
    yield server
    server.close()


@pytest.fixture
def silent(name_server: SilentNameServer, tmp_path: Path) -> list[str]:
    """The argv prefix of a process whose resolver asks a name server that never answers."""
    return in_private_resolver(name_server.resolv_conf(tmp_path))


def error_line(err: str) -> str:
    """The error line without its timestamp."""
    [line] = [line for line in err.splitlines() if "[error]" in line]
    return re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", line)


def test_connect_timeout_holds(fault_project: Path, silent: list[str]) -> None:
    run = Migrator(["migrate"], cwd=fault_project, url=URL, prefix=silent, MIGRATOR_CONNECT_TIMEOUT=f"{TIMEOUT:g}")
    result = run.finish(STARTUP + TIMEOUT + MARGIN)
    assert result.code == 3, result.err
    assert result.err.splitlines()[0] == result.last, "one line: no retry can start after the deadline"
    assert error_line(result.err) == (
        f'[error] database {DESCRIPTION} unreachable after 5s: no answer from the name server about host name '
        f'"{HOST}" (check the host name, and that the name servers of /etc/resolv.conf answer; '
        "MIGRATOR_CONNECT_TIMEOUT sets the wait)")


def test_wait_timeout_holds(fault_project: Path, silent: list[str]) -> None:
    run = Migrator(["wait", "--timeout", f"{TIMEOUT:g}"], cwd=fault_project, url=URL, prefix=silent,
                   MIGRATOR_CONNECT_TIMEOUT="60")
    result = run.finish(STARTUP + TIMEOUT + MARGIN)
    assert result.code == 5, result.err
    assert error_line(result.err) == (
        f"[error] {DESCRIPTION} not ready after 5s: database unreachable: no answer from the name server about host "
        f'name "{HOST}" (check the host name, and that the name servers of /etc/resolv.conf answer)')


def test_sigterm_while_resolving(fault_project: Path, name_server: SilentNameServer, silent: list[str]) -> None:
    run = Migrator(["migrate"], cwd=fault_project, url=URL, prefix=silent, MIGRATOR_CONNECT_TIMEOUT="60")
    assert name_server.first_query.wait(30), "the migrator never asked the name server"
    sent = run.signal(signal.SIGTERM)
    result = run.finish(SIGNAL_BOUND + MARGIN, since=sent)
    assert result.code == 143, result.err
    assert error_line(result.err) == "[error] interrupted by SIGTERM; no migration or seed was running"
