"""Fixtures for the fault-injection tests: the TCP server, a fault proxy in front of it, PgBouncer, a project.

These tests need Debian's PostgreSQL (TCP, scram passwords) and PgBouncer; without them they skip with the
reason (and CI's strict mode turns that skip into a failure: .ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import add_revision, fresh_database
from tests.faults.helpers import BASE, BASE_MIGRATION, LIVE, via
from tests.faults.pgbouncer import PGBOUNCER, PgBouncer
from tests.faults.proxy import FaultProxy
from tests.postgres import DebianServer

# The fixtures that other test folders reuse: their conftest.py star-imports exactly these.
__all__ = ["_no_migrator_survives", "fault_project", "own_server", "proxied", "proxy", "url"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault injection (stalls, resets, restarts, signals, PgBouncer)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(autouse=True)
def _no_migrator_survives() -> Iterator[None]:
    """A test that fails half-way leaves no migrator process running into the next test."""
    yield
    while LIVE:
        LIVE.pop().kill()


@pytest.fixture
def proxy(tcp_server: DebianServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the TCP server; every connection through it is reset at the end."""
    with FaultProxy("127.0.0.1", tcp_server.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def url(tcp_database_url: str) -> str:
    """A fresh database on the TCP server, reached directly (the test's own view of the server)."""
    return tcp_database_url


@pytest.fixture
def proxied(url: str, proxy: FaultProxy) -> str:
    """The same database, reached through the fault proxy (what the migrator is given)."""
    return via(url, proxy.port)


@pytest.fixture
def fault_project(project: Path) -> Path:
    """A project with one base migration (tables `items` and `ran_log`) and no seeds; tests add the rest."""
    for path in (project / "migrations" / "versions").glob("*.py"):
        path.unlink()
    for path in (project / "seeds").glob("*.py"):
        path.unlink()
    add_revision(project, BASE, None, BASE_MIGRATION, name="base")
    return project


@pytest.fixture(scope="module")
def own_server() -> Iterator[DebianServer]:
    """A TCP server of the test module's own, for tests that stop and start it."""
    from tests.conftest import require_debian_postgres

    require_debian_postgres()
    server = DebianServer()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def configured_server(request: pytest.FixtureRequest) -> Iterator[DebianServer]:
    """A TCP server of the test module's own, started once with the module's SERVER_SETTINGS (postgresql.conf
    lines such as max_connections), for faults that need a server configured for them."""
    from tests.conftest import require_debian_postgres

    require_debian_postgres()
    server = DebianServer(settings=request.module.SERVER_SETTINGS)
    yield server
    server.destroy()


@pytest.fixture
def configured_url(configured_server: DebianServer) -> Iterator[str]:
    """A fresh database on the module's configured server."""
    yield from fresh_database(configured_server)


def restart(server: DebianServer) -> None:
    """Stop the server the fast way (every session is terminated), then start it again."""
    subprocess.run(["runuser", "-u", "postgres", "--", str(server.bindir / "pg_ctl"), "-D", str(server.datadir),
                    "stop", "-m", "fast", "-w", "-t", "30"], check=True, capture_output=True)
    if server.proc is not None:
        server.proc.wait(timeout=30)
        server.proc = None
    server.start()


def require_pgbouncer() -> None:
    if not PGBOUNCER.exists():
        pytest.skip(f"PgBouncer is not installed ({PGBOUNCER}): apt-get install pgbouncer")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("running PgBouncer as the postgres user needs root and runuser")


@pytest.fixture
def pgbouncer(tcp_server: DebianServer) -> Iterator[Callable[..., PgBouncer]]:
    """Start PgBouncers in front of the TCP server: `pgbouncer(pool_mode, auth_type=..., pool_size=...)`."""
    require_pgbouncer()
    started: list[PgBouncer] = []

    def start(pool_mode: str, **options: object) -> PgBouncer:
        bouncer = PgBouncer(tcp_server, pool_mode, **options)  # type: ignore[arg-type]
        started.append(bouncer)
        return bouncer

    yield start
    for bouncer in started:
        bouncer.stop()
