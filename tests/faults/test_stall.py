"""A network that stops answering with the sockets open: every wait of the migrator stays bounded.

The fault proxy stops forwarding (both directions) while both kernels keep the connections open, as a frozen
proxy or a partitioned node does: keepalives are answered, no error ever arrives. The migrator must give up on
its own clock (MIGRATOR_STALL_TIMEOUT, `wait --timeout`, MIGRATOR_CONNECT_TIMEOUT), and the server must end
the orphaned migration session on its own (idle_in_transaction_session_timeout = MIGRATOR_IDLE_TIMEOUT), so
that application traffic queued behind the migration's locks goes on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision
from tests.faults.helpers import (
    BASE,
    CONNECT,
    IDLE,
    MARGIN,
    STALL,
    Migrator,
    assert_nothing_left,
    backend_gone,
    history,
    idle_in_transaction,
    lock_key_of,
    migrator_backend,
    sleeping_backend,
    table_exists,
    versions,
)
from tests.faults.proxy import FaultProxy, wait_until

LOCKING = "20240101000001"
SLEEP = 3.0  # the migration's statement: longer than it takes to stall and notice, short for the suite
LOCKING_MIGRATION = """
op.create_table('made_by_locking', sa.Column('id', sa.Integer))
op.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
op.execute(f"SELECT pg_sleep({float(os.environ.get('TEST_SLEEP', '0'))})")
"""


class AppWriter(threading.Thread):
    """An application's INSERT into `items` on a direct connection; records when it completed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.done_at: float | None = None  # epoch seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="app") as conn:
                conn.execute("INSERT INTO items (note) VALUES ('written by the app')")
            self.done_at = time.time()
        except BaseException as exc:
            self.error = exc


def queued_on_a_lock(url: str) -> bool:
    from tests.conftest import query

    return bool(query(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'app' "
                           "AND wait_event_type = 'Lock'"))


@pytest.mark.parametrize("scope", ["everything", "migration session only"])
def test_stall_during_a_long_statement(fault_project: Path, url: str, proxied: str, proxy: FaultProxy,
                                       tmp_path: Path, scope: str) -> None:
    """The migrator gives up on its own clock; the server ends the orphaned transaction IDLE s after the
    statement finished, and the application's queued write goes through then."""
    add_revision(fault_project, LOCKING, BASE, LOCKING_MIGRATION, name="locking")
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, termination=tmp_path / "termination",
                   TEST_SLEEP=f"{SLEEP:g}")
    session = sleeping_backend(url)
    assert session.query_start is not None
    statement_ends = session.query_start + SLEEP  # the server finishes pg_sleep then, answer or not
    writer = AppWriter(url)
    writer.start()
    wait_until(lambda: queued_on_a_lock(url), 10, "the application's INSERT to queue behind ACCESS EXCLUSIVE")

    if scope == "everything":
        proxy.stall()
        stalled = time.monotonic()
        # The monitor's own connection gets no answer either: STALL s, plus one monitor interval.
        result = run.finish(STALL + 1 + MARGIN, since=stalled)
    else:
        assert session.client_port is not None
        proxy.stall(proxy.link_for_server_port(session.client_port))
        stalled = time.monotonic()
        # The monitor still reaches the server: it sees the statement run, then the answer not arrive (or the
        # session ended by the server), and gives up within STALL s of the statement's end.
        bound = (statement_ends - time.time()) + min(STALL, IDLE) + 1 + MARGIN
        result = run.finish(bound, since=stalled)
    # Another replica starts as soon as the first gave up (its session may still hold the lock on the server):
    # it waits for the lock, then runs the migration once.
    second = Migrator(["migrate"], cwd=fault_project, url=url)

    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert f"{LOCKING} (locking) was running" in line, line
    assert f"MIGRATOR_IDLE_TIMEOUT={IDLE:g}s" in line, line  # what the server will do
    assert "not confirmed" in line, line
    assert "rolled back (confirmed" not in result.err
    assert (tmp_path / "termination").read_text().startswith("migrate failed (exit 3)")

    # The server ends the orphaned session within IDLE s of the statement's end; the app's write then goes on.
    writer.join(timeout=max(statement_ends - time.time(), 0) + IDLE + MARGIN)
    assert writer.error is None, writer.error
    assert writer.done_at is not None, "the application's write was still queued"
    assert writer.done_at >= statement_ends - 0.2, "the write was not queued behind the migration's lock"
    assert writer.done_at - statement_ends <= IDLE + 1.5, "the server kept the stalled session's locks too long"
    assert backend_gone(url, session.pid)  # and its lock with it (the other replica may hold its own by now)

    # The other replica ran the migration once, after the server ended the stalled session.
    done = second.finish(60)
    assert done.code == 0, done.err
    assert versions(url) == [LOCKING]
    assert table_exists(url, "made_by_locking")
    assert history(url) == [(BASE, "up", "applied"), (LOCKING, "up", "applied")]
    # The network comes back: what the first migrator sent before the stall changes nothing more.
    proxy.resume()
    time.sleep(0.5)
    assert history(url) == [(BASE, "up", "applied"), (LOCKING, "up", "applied")]
    assert_nothing_left(url)


def test_stall_while_waiting_for_the_lock(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    """Bounded by MIGRATOR_STALL_TIMEOUT, not by MIGRATOR_LOCK_TIMEOUT (60 s here)."""
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key_of(url),))
        run = Migrator(["migrate"], cwd=fault_project, url=proxied)
        run.wait_for_line("waiting for the migration lock")
        proxy.stall()
        stalled = time.monotonic()
        result = run.finish(STALL + MARGIN, since=stalled)
        assert result.code == 3, result.err
        line = result.one_clean_error()
        assert "no answer from the server within 2s" in line, line
        assert "migration lock" in line, line
        assert_nothing_left(url, except_pid=holder.info.backend_pid)
    assert versions_or_none(url) is None


def versions_or_none(url: str) -> list[object] | None:
    return versions(url) if table_exists(url, "alembic_version") else None


def test_stall_during_wait_timeout(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    """`wait --timeout 3` exits 5 about 3 s after it started, although no query gets an answer."""
    run = Migrator(["wait", "--timeout", "3", "--interval", "0.2"], cwd=fault_project, url=proxied,
                   MIGRATOR_STALL_TIMEOUT="30", MIGRATOR_CONNECT_TIMEOUT="30")
    began = proxy.first_accepted()  # wait's clock starts just before it connects
    wait_until(lambda: migrator_backend(url, "%") is not None, 10, "wait's connection")
    proxy.stall()
    result = run.finish(3 + MARGIN, since=began)
    assert result.code == 5, result.err
    line = result.one_clean_error()
    assert "not ready after 3s" in line, line


def test_stall_during_connect(fault_project: Path, proxied: str, proxy: FaultProxy) -> None:
    """The proxy accepts the TCP connection but nothing comes back: exit 3 after MIGRATOR_CONNECT_TIMEOUT."""
    proxy.stall()
    run = Migrator(["migrate"], cwd=fault_project, url=proxied)
    # libpq's per-attempt connect_timeout is at least 2 s: the last attempt may end that much after the budget.
    result = run.finish(CONNECT + 2 + MARGIN, since=proxy.first_accepted())
    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert f"unreachable after {CONNECT:g}s" in line, line
    assert proxy.open_links(), "the proxy accepted no connection: this tested a refusal, not a stall"


def test_refused_then_accepted(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    """A failover: nothing listens for a while, then the database is back; migrate waits (within
    MIGRATOR_CONNECT_TIMEOUT) and completes."""
    proxy.refuse()
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, MIGRATOR_CONNECT_TIMEOUT="30")
    run.wait_for_line("waiting for database")
    proxy.accept()
    result = run.finish(60)
    assert result.code == 0, result.err
    assert "Connection refused" in result.err
    assert versions(url) == [BASE]


def test_answer_that_never_arrives(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    """Only the migration connection stalls, and the server would keep the finished statement's transaction
    open for long (MIGRATOR_IDLE_TIMEOUT 30 s): the monitor sees the server done and the client still waiting,
    and gives up MIGRATOR_STALL_TIMEOUT after the statement ended."""
    add_revision(fault_project, LOCKING, BASE, LOCKING_MIGRATION, name="locking")
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, TEST_SLEEP="2", MIGRATOR_IDLE_TIMEOUT="30")
    session = sleeping_backend(url)
    assert session.client_port is not None and session.query_start is not None
    proxy.stall(proxy.link_for_server_port(session.client_port))
    stalled = time.monotonic()
    statement_ends = session.query_start + 2
    result = run.finish((statement_ends - time.time()) + STALL + 1 + MARGIN, since=stalled)
    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert "answer never arrived" in line, line
    assert idle_in_transaction(url), "the server should still hold the transaction (MIGRATOR_IDLE_TIMEOUT 30 s)"
    proxy.reset()  # the network drops the connection: the server ends the session at once
    assert_nothing_left(url, within=5)
    assert versions(url) == [BASE]
    assert not table_exists(url, "made_by_locking")
