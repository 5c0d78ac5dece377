"""A connection lost anywhere gives one clear line and exit 3, never a traceback: while waiting for the lock,
and between two migrations or two seeds, by pg_terminate_backend, a server restart or idle_session_timeout.

"Between" is made exact without touching the migrator: the only code that runs between two migrations is the
migrator reading the next revision's options (`rerunnable`), and between two seeds it is loading the next
seed file. The test revision answers that read (a module `__getattr__`), and the test seed's module code, by
writing a marker file and waiting for the test's "go" file: the fault strikes while the migration session
is idle outside any transaction, the previous step committed and the next not begun. (Between migrations, the
previous COMMIT carried the next step's reset and lock proof: the loss shows at the next one's first statement.)

Two threads may notice such a loss: the monitor, which finds the session gone and shuts its connection down,
and the migrator's next statement. The line does not depend on which comes first: it carries the server's own
words (`SAYS`), which reached the client as the session ended. The test makes the monitor come first, the order
in which the monitor's own reason is at hand as well: it releases the migrator only once the monitor has logged
(at debug level) that it shut the session down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, dbname, query
from tests.faults.conftest import restart
from tests.faults.helpers import (
    BASE,
    MARGIN,
    Migrator,
    assert_nothing_left,
    at_base,
    backend_gone,
    history,
    lock_key_of,
    migrator_backend,
    ran,
    terminate,
    versions,
)
from tests.faults.proxy import wait_until
from tests.postgres import DebianServer

SECOND = "20240101000001"
THIRD = "20240101000002"
PAUSE = '''

def __getattr__(name):
    """Read by the migrator between the previous migration's commit and this one's start."""
    if name == "rerunnable" and os.environ.get("TEST_MARKER"):
        import pathlib
        import time
        pathlib.Path(os.environ["TEST_MARKER"]).touch()
        go = pathlib.Path(os.environ["TEST_GO"])
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return False
    raise AttributeError(name)
'''
SEED_01 = """
import sqlalchemy as sa


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed 01')"))
"""
SEED_02 = """
import os
import pathlib
import time

import sqlalchemy as sa

# Module code runs when the migrator loads this seed: after seed 01 committed, before this seed's transaction.
if os.environ.get("TEST_MARKER"):
    pathlib.Path(os.environ["TEST_MARKER"]).touch()
    _deadline = time.monotonic() + 30
    while not pathlib.Path(os.environ["TEST_GO"]).exists() and time.monotonic() < _deadline:
        time.sleep(0.02)


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed 02')"))
"""


@pytest.fixture
def three_migrations(fault_project: Path) -> Path:
    add_revision(fault_project, SECOND, BASE, """op.execute("INSERT INTO ran_log (what) VALUES ('second')")""",
                 name="second")
    with (fault_project / "migrations" / "versions" / f"{SECOND}_second.py").open("a") as f:
        f.write(PAUSE)
    add_revision(fault_project, THIRD, SECOND, """op.execute("INSERT INTO ran_log (what) VALUES ('third')")""",
                 name="third")
    return fault_project


@pytest.fixture
def two_seeds(fault_project: Path) -> Path:
    (fault_project / "seeds" / "01_first.py").write_text(SEED_01)
    (fault_project / "seeds" / "02_second.py").write_text(SEED_02)
    return fault_project


@pytest.fixture
def restartable_url(own_server: DebianServer) -> Iterator[str]:
    name = own_server.create_database()
    yield own_server.url_for(name)
    if own_server.proc is None:
        own_server.start()
    own_server.drop_database(name)


class Between:
    """Marker and go files for one paused migrator."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker, self.go = tmp_path / "paused", tmp_path / "go"

    @property
    def env(self) -> dict[str, str]:
        return {"TEST_MARKER": str(self.marker), "TEST_GO": str(self.go)}

    def wait_paused(self, run: Migrator) -> None:
        wait_until(lambda: self.marker.exists() or not run.running(), 30, "the migrator to reach the pause")
        assert run.running(), run.finish(1).err

    def release(self) -> float:
        self.go.touch()
        return time.monotonic()


def strike(fault: str, url: str, server: DebianServer | None, run: Migrator) -> None:
    """Make the fault happen to `run`'s migration session, which sits idle between two steps, and wait until
    `run`'s monitor has shut that session down (it looks once a second; after a restart, on a new connection)."""
    backend = migrator_backend(url, "%")
    assert backend is not None
    if fault == "pg_terminate_backend":
        terminate(url, backend.pid)
    elif fault == "server restart":
        assert server is not None
        restart(server)
    else:  # idle_session_timeout: the server ends the idle session by itself
        wait_until(lambda: backend_gone(url, backend.pid), 10, "idle_session_timeout to end the session")
    run.wait_for_line(MONITOR_ACTED)


FAULTS = ["pg_terminate_backend", "server restart", "idle_session_timeout"]
# What the server tells the session's client as it ends it, fault by fault.
SAYS = {"pg_terminate_backend": "terminating connection due to administrator command",
        "server restart": "terminating connection due to administrator command",  # pg_ctl stop -m fast
        "idle_session_timeout": "terminating connection due to idle-session timeout"}
MONITOR_ACTED = "the monitor shut the migration session down"


def _setup(fault: str, tcp_url: str, restartable_url: str, own_server: DebianServer
           ) -> tuple[str, DebianServer | None, dict[str, str]]:
    """The database to strike, the server to restart (if any), and the migrator's settings beyond `Between`'s."""
    settings = {"MIGRATOR_LOG_LEVEL": "debug"}  # for MONITOR_ACTED
    if fault == "server restart":
        # The monitor loses its own connection too, and finds the session gone once it has a new one: its
        # connect budget, min(MIGRATOR_CONNECT_TIMEOUT, MIGRATOR_STALL_TIMEOUT), must outlast the restart.
        return restartable_url, own_server, {**settings, "MIGRATOR_CONNECT_TIMEOUT": "30",
                                             "MIGRATOR_STALL_TIMEOUT": "30"}
    if fault == "idle_session_timeout":
        # Set on the database (as a DBA would): every new session of it gets it, the migrator's too. Longer than
        # the migrator's own idle moments before the pause (loading Alembic on a busy machine), shorter than it.
        query(tcp_url, f'ALTER DATABASE "{dbname(tcp_url)}" SET idle_session_timeout = \'3s\'')
    return tcp_url, None, settings


@pytest.mark.parametrize("fault", FAULTS)
def test_lost_between_migrations(three_migrations: Path, url: str, restartable_url: str,
                                 own_server: DebianServer, tmp_path: Path, fault: str) -> None:
    target, server, settings = _setup(fault, url, restartable_url, own_server)
    between = Between(tmp_path)
    run = Migrator(["migrate"], cwd=three_migrations, url=target, env={**between.env, **settings})
    between.wait_paused(run)
    strike(fault, target, server, run)
    released = between.release()
    result = run.finish(MARGIN, since=released)

    assert result.code == 3, result.err
    line = result.one_clean_error()
    # The loss shows at the next migration's first statement (the previous COMMIT carried its reset and lock
    # proof), and the line says that nothing of it committed.
    assert f"[error] lost the connection to the server while running migration {SECOND} (second): {SAYS[fault]}; " \
           f"migration {SECOND} (second) got no answer to its first statement, so nothing of it was committed" \
           in line, line
    assert "== Migrated " + BASE in result.err
    assert versions(target) == [BASE]
    assert history(target) == [(BASE, "up", "applied")]
    assert_nothing_left(target)
    again = Migrator(["migrate"], cwd=three_migrations, url=target).finish(60)
    assert again.code == 0, again.err
    assert (ran(target, "second"), ran(target, "third")) == (1, 1)
    assert history(target) == [(BASE, "up", "applied"), (SECOND, "up", "applied"), (THIRD, "up", "applied")]


@pytest.mark.parametrize("fault", FAULTS)
def test_lost_between_seeds(two_seeds: Path, url: str, restartable_url: str, own_server: DebianServer,
                            tmp_path: Path, fault: str) -> None:
    target, server, settings = _setup(fault, url, restartable_url, own_server)
    at_base(target)
    between = Between(tmp_path)
    run = Migrator(["seed"], cwd=two_seeds, url=target, env={**between.env, **settings})
    between.wait_paused(run)
    strike(fault, target, server, run)
    released = between.release()
    result = run.finish(MARGIN, since=released)

    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert line.endswith(f"[error] lost the connection to the server while running seed 02_second.py: {SAYS[fault]}"), \
        line
    assert "== Seeded 01_first.py" in result.err
    assert [r[0] for r in query(target, "SELECT name FROM migrator_seeds")] == ["01_first.py"]
    assert (ran(target, "seed 01"), ran(target, "seed 02")) == (1, 0)
    assert_nothing_left(target)
    again = Migrator(["seed"], cwd=two_seeds, url=target).finish(60)
    assert again.code == 0, again.err
    assert (ran(target, "seed 01"), ran(target, "seed 02")) == (1, 1)


def test_server_restart_while_waiting_for_the_lock(fault_project: Path, restartable_url: str,
                                                   own_server: DebianServer) -> None:
    holder = psycopg.connect(restartable_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (lock_key_of(restartable_url),))
    run = Migrator(["migrate"], cwd=fault_project, url=restartable_url)
    run.wait_for_line("waiting for the migration lock")
    struck = time.monotonic()
    restart(own_server)
    result = run.finish(MARGIN + 3, since=struck)  # pg_ctl stop -m fast takes its own time
    holder.close()
    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert "lost the connection" in line, line
    assert "administrator command" in line, line  # the server's own words: it was shut down
    assert_nothing_left(restartable_url)
    assert not query(restartable_url, "SELECT to_regclass('alembic_version')")[0][0]


def test_idle_session_timeout_while_waiting_for_the_lock(fault_project: Path, url: str) -> None:
    """A short idle_session_timeout ends the waiting session between two polls of the lock."""
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key_of(url),))
        query(url, f'ALTER DATABASE "{dbname(url)}" SET idle_session_timeout = \'100ms\'')
        run = Migrator(["migrate"], cwd=fault_project, url=url)
        result = run.finish(30)
    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert "idle" in line, line
    assert_nothing_left(url)
