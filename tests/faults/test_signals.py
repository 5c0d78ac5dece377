"""SIGTERM and SIGINT end the process within 10 s with 143 or 130, network or not; the log says "rolled back"
only when the server confirmed it; a second signal cuts the cleanup short."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    SIGNAL_BOUND,
    Migrator,
    assert_nothing_left,
    at_base,
    backend_gone,
    history,
    lock_key_of,
    ran,
    sleeping_backend,
    table_exists,
    versions,
    wait_for_backend,
)
from tests.faults.proxy import FaultProxy, wait_until

SLOW = "20240101000001"
SLOW_MIGRATION = """
op.create_table('made_by_slow', sa.Column('id', sa.Integer))
op.execute("SELECT pg_sleep(60)")
"""
# The monitor would end a stalled run after MIGRATOR_STALL_TIMEOUT; here the signal must do it.
NO_STALL_LIMIT = {"MIGRATOR_STALL_TIMEOUT": "60"}


def test_sigterm_during_a_stalled_statement(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    add_revision(fault_project, SLOW, BASE, SLOW_MIGRATION, name="slow")
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, env=NO_STALL_LIMIT)
    session = sleeping_backend(url)
    proxy.stall()  # the cancel request cannot reach the server either: it goes through the proxy too
    time.sleep(0.3)
    sent = run.signal(signal.SIGTERM)
    result = run.finish(SIGNAL_BOUND + 1, since=sent)
    assert result.code == 143, result.err
    line = result.one_clean_error()
    assert "SIGTERM" in line, line
    assert "confirmed by the server" not in result.err, "claims a rollback the server never confirmed"
    assert "the server did not confirm the rollback within 3s of SIGTERM, so every connection was shut down" in line

    # The network heals by dropping the connections: the server ends the session, nothing of it stays.
    proxy.reset()
    wait_until(lambda: backend_gone(url, session.pid), 10, "the server to end the orphaned session")
    assert_nothing_left(url)
    assert versions(url) == [BASE]
    assert not table_exists(url, "made_by_slow")


@pytest.mark.parametrize(("first", "second", "code"), [(signal.SIGTERM, signal.SIGTERM, 143),
                                                       (signal.SIGINT, signal.SIGTERM, 130)])
def test_a_second_signal_cuts_the_cleanup_short(fault_project: Path, url: str, proxied: str, proxy: FaultProxy,
                                                first: signal.Signals, second: signal.Signals, code: int) -> None:
    add_revision(fault_project, SLOW, BASE, SLOW_MIGRATION, name="slow")
    run = Migrator(["migrate"], cwd=fault_project, url=proxied, env=NO_STALL_LIMIT)
    sleeping_backend(url)
    proxy.stall()
    time.sleep(0.3)
    run.signal(first)
    time.sleep(0.5)
    again = run.signal(second)
    result = run.finish(1 + MARGIN, since=again)  # SECOND_SIGNAL_EXIT is 1 s
    assert result.code == code, result.err
    assert "Traceback" not in result.err, result.err
    assert "confirmed by the server" not in result.err, result.err
    proxy.reset()
    assert_nothing_left(url, within=10)


CIC = "20240101000002"
CIC_MIGRATION = """
with op.get_context().autocommit_block():
    op.execute("INSERT INTO ran_log (what) VALUES ('cic: before the index')")
    op.create_index('items_note_index', 'items', ['note'], postgresql_concurrently=True)
"""


def test_sigterm_during_a_concurrent_index_build_waiting_for_an_old_transaction(
        fault_project: Path, url: str) -> None:
    """CREATE INDEX CONCURRENTLY waits for every older transaction; SIGTERM cancels it (exit 143), and the
    line says what stays: the autocommit block's committed part, and that the next migrate stops at it."""
    add_revision(fault_project, CIC, BASE, CIC_MIGRATION, name="cic")
    at_base(url)
    with psycopg.connect(url, application_name="old transaction") as old:
        old.execute("INSERT INTO items (note) VALUES ('old')")  # a writer's open transaction: the build waits
        run = Migrator(["migrate"], cwd=fault_project, url=url)
        build = wait_for_backend(url, "CREATE INDEX CONCURRENTLY%")
        wait_until(lambda: query(url, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", build.pid)
                   == [("Lock",)], 10, "the index build to wait for the old transaction")
        sent = run.signal(signal.SIGTERM)
        result = run.finish(SIGNAL_BOUND + 1, since=sent)
        old.rollback()
    assert result.code == 143, result.err
    line = result.one_clean_error()
    assert_nothing_left(url)
    assert versions(url) == [BASE]
    assert ran(url, "cic: before the index") == 1  # committed by the autocommit block before the build
    # The cancel reached the server, which rolled the build back and said so: the step's row says "partial".
    assert history(url)[-1] == (CIC, "up", "partial"), history(url)
    invalid = [str(row[0]) for row in query(url, "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = "
                                            "i.indexrelid WHERE NOT i.indisvalid")]
    assert invalid == ["items_note_index"], invalid  # created before the build waited, left INVALID by the cancel

    assert f"interrupted by SIGTERM during {CIC} (cic) after part of it committed" in line, line
    assert "its running statement was cancelled and its transaction rolled back (confirmed by the server)" in line, \
        line
    assert "migrator resolve" in line, line
    problems = []
    # What committed is named: the operator decides from it (resolve --rerun or --mark-applied).
    if "insert into ran_log" not in line.lower():
        problems.append("the committed INSERT into ran_log is not named")
    # The cancelled build left an INVALID index, which a rerun trips over: the line must say so.
    problems += [f"INVALID index {name} stays but is not named" for name in invalid if name not in line]
    assert not problems, f"{'; '.join(problems)}: {line}"
    again = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert again.code == 6, again.err


@pytest.mark.parametrize("phase", ["connecting", "waiting for the lock"])
def test_sigterm_while_the_network_is_stalled(fault_project: Path, url: str, proxied: str, proxy: FaultProxy,
                                             phase: str) -> None:
    """Wherever the migrator waits for a server that stopped answering, SIGTERM ends it within the bound."""
    holder = psycopg.connect(url, autocommit=True)
    try:
        if phase == "connecting":
            proxy.stall()
            run = Migrator(["migrate"], cwd=fault_project, url=proxied,
                           env={**NO_STALL_LIMIT, "MIGRATOR_CONNECT_TIMEOUT": "60"})
            proxy.first_accepted()
            time.sleep(0.5)
        else:
            holder.execute("SELECT pg_advisory_lock(%s)", (lock_key_of(url),))
            run = Migrator(["migrate"], cwd=fault_project, url=proxied, env=NO_STALL_LIMIT)
            run.wait_for_line("waiting for the migration lock")
            proxy.stall()
            time.sleep(0.3)
        sent = run.signal(signal.SIGTERM)
        result = run.finish(SIGNAL_BOUND + 1, since=sent)
    finally:
        holder.close()
    assert result.code == 143, result.err
    line = result.one_clean_error()
    assert "SIGTERM" in line, line
    assert "confirmed by the server" not in result.err
    proxy.reset()
    assert_nothing_left(url, within=5)
    assert not table_exists(url, "alembic_version")
