"""What is in the way is named, with what ends it: a prepared transaction (two-phase commit) that holds a lock a
migration needs, and a session or a prepared transaction that holds migrator's version table locked.

A prepared transaction has no session (pg_stat_activity does not show it) and never ends by itself: only COMMIT
PREPARED or ROLLBACK PREPARED does. This module's server allows them (max_prepared_transactions = 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, dbname
from tests.faults.helpers import BASE, MARGIN, Migrator, assert_nothing_left, at_base, history, versions

SERVER_SETTINGS = {"max_prepared_transactions": "4"}
REV = "20240101000001"
GID = "release-42 it's stuck"
STARTUP = 3.0  # the interpreter's start-up on a busy 2-core machine, counted from the process start


@pytest.fixture
def prepared(configured_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection for the test to prepare a transaction on; whatever it prepared is rolled back after."""
    at_base(configured_url)
    with psycopg.connect(configured_url) as conn:
        yield conn
    with psycopg.connect(configured_url, autocommit=True) as conn:
        for (gid,) in conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall():
            conn.execute(psycopg.sql.SQL("ROLLBACK PREPARED {}").format(psycopg.sql.Literal(gid)))


def without_time(line: str) -> str:
    return re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", line)


def prepared_text(url: str) -> str:
    gid, name = GID.replace("'", "''"), dbname(url)
    return (rf"prepared transaction '{re.escape(gid)}' \(owner postgres, database {name}, prepared \d+s ago\), which "
            rf"holds its locks until COMMIT PREPARED '{re.escape(gid)}' or ROLLBACK PREPARED '{re.escape(gid)}' "
            rf"decides it \(in database {name}\)")


def test_a_prepared_transaction_blocking_a_migration_is_named(fault_project: Path, configured_url: str,
                                                              prepared: psycopg.Connection[tuple[object, ...]]) -> None:
    add_revision(fault_project, REV, BASE, "op.add_column('items', sa.Column('size', sa.Integer))", name="size")
    prepared.execute("INSERT INTO items (note) VALUES ('two-phase')")
    prepared.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(GID)))
    run = Migrator(["migrate"], cwd=fault_project, url=configured_url, MIGRATOR_DDL_LOCK_TIMEOUT="1",
                   MIGRATOR_DDL_RETRIES="1")
    result = run.finish(STARTUP + 2 * 1 + 2 + MARGIN)  # two tries of 1 s and the backoff between them
    assert result.code == 1, result.err
    blocker = prepared_text(configured_url)
    [retry] = [without_time(line) for line in result.err.splitlines() if "[warning]" in line]
    assert re.fullmatch(rf"\[warning\] {REV} could not get a lock within 1s \(blocked by {blocker}\); rolled back, "
                        r"retry 1/1 in [0-9.]+s", retry), retry
    assert re.fullmatch(rf"\[error\] migration {REV} \(size\) gave up after 2 tries: a lock it needs was held longer "
                        rf"than MIGRATOR_DDL_LOCK_TIMEOUT=1s, by {blocker}; nothing of it was applied \(the server "
                        r"confirmed the rollback\), nothing was applied", without_time(result.one_clean_error())), \
        result.err
    assert versions(configured_url) == [BASE]
    assert history(configured_url)[-1][:3] == (REV, "up", "failed")
    assert_nothing_left(configured_url)


def test_a_version_table_locked_by_a_session_is_named(fault_project: Path, configured_url: str) -> None:
    at_base(configured_url)
    with psycopg.connect(configured_url, application_name="dba-console") as holder:
        holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        run = Migrator(["migrate"], cwd=fault_project, url=configured_url, MIGRATOR_LOCK_TIMEOUT="3")
        result = run.finish(STARTUP + 3 + MARGIN)
        pid = holder.info.backend_pid
    assert result.code == 4, result.err
    where = f"postgres@127.0.0.1:{configured_url.rsplit(':', 1)[1].split('/', 1)[0]}/{dbname(configured_url)}"
    holder_text = (rf"pid {pid} \(dba-console from 127\.0\.0\.1\), idle in transaction, transaction open for \d+s, "
                   r"last query: LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    first = without_time(result.err.splitlines()[0])
    assert re.fullmatch(rf'\[info\] waiting for the table "alembic_version" on {where}, locked by {holder_text}',
                        first), first
    assert re.fullmatch(rf'\[error\] the table "alembic_version" on {where} is still locked after 3s '
                        rf"\(MIGRATOR_LOCK_TIMEOUT\) by {holder_text}: migrator cannot read it; end that transaction, "
                        "or run again once it ended", without_time(result.one_clean_error())), result.err
    assert versions(configured_url) == [BASE]
    assert_nothing_left(configured_url)


def test_wait_names_a_prepared_transaction_that_locks_the_version_table(
        fault_project: Path, configured_url: str, prepared: psycopg.Connection[tuple[object, ...]]) -> None:
    prepared.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    prepared.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(GID)))
    result = Migrator(["wait", "--timeout", "3", "--interval", "0.5"], cwd=fault_project,
                      url=configured_url).finish(STARTUP + 3 + MARGIN)
    assert result.code == 5, result.err
    where = f"postgres@127.0.0.1:{configured_url.rsplit(':', 1)[1].split('/', 1)[0]}/{dbname(configured_url)}"
    assert re.fullmatch(rf'\[error\] {where} not ready after 3s: the table "alembic_version" on {where} is locked by '
                        rf"{prepared_text(configured_url)}", without_time(result.one_clean_error())), result.err
