"""Migrations that commit part of themselves (autocommit blocks, an explicit COMMIT), and migrations that change
session settings: what migrator guarantees about them, end to end against a real PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.conftest import HEAD, add_revision, query, run_migrator, running_lines, start_migrator

NEXT = "20220101000000"
LATER = "20220101000001"


def versions(url: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT version_num FROM alembic_version")]


def outcomes(url: str, revision: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT outcome FROM migrator_history WHERE revision = %s ORDER BY id",
                                    revision)]


def invalid_indexes(url: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                         "WHERE NOT i.indisvalid")]


def wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def old_snapshot(url: str) -> Iterator[None]:
    """A transaction holding a snapshot, older than what runs meanwhile: a concurrent index build waits for it."""
    with psycopg.connect(url) as old:
        old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        old.execute("SELECT count(*) FROM users")
        yield


DUPLICATE_EMAILS = "INSERT INTO users (name, email) VALUES ('a', 'same@x'), ('b', 'same@x')"
UNIQUE_BUILD = """
op.create_table('audit', sa.Column('id', sa.Integer))
with op.get_context().autocommit_block():
    op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_name_key ON users (name)")
"""


@pytest.fixture
def migrated(project: Path, database_url: str) -> str:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    return database_url


def test_a_failed_concurrent_build_is_never_exit_0(project: Path, migrated: str) -> None:
    """The build fails on duplicates and leaves an INVALID unique index: exit 6, the index named with its
    repair, what committed listed, the version not stamped, and the next run refuses until resolved."""
    query(migrated, "INSERT INTO users (name, email) VALUES ('dup', 'a@x'), ('dup', 'b@x')")
    add_revision(project, NEXT, HEAD, UNIQUE_BUILD, name="unique_names")
    first = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert first.returncode == 6, first.stderr
    last = first.stderr.splitlines()[-1]
    assert f"migration {NEXT} (unique_names) failed after part of it committed" in last
    assert "Committed: create table audit" in last
    assert "INVALID index(es) users_name_key" in last and "DROP INDEX CONCURRENTLY users_name_key;" in last
    assert "retry" not in first.stderr
    assert versions(migrated) == [HEAD]
    assert invalid_indexes(migrated) == ["users_name_key"]
    assert outcomes(migrated, NEXT) == ["partial"]

    again = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert again.returncode == 6 and not running_lines(again.stderr), again.stderr
    assert f"migrator resolve {NEXT} --mark-applied" in again.stderr
    status = run_migrator(["status", "--check"], cwd=project, database_url=migrated)
    assert status.returncode == 6 and "left part-way" in status.stdout

    # The operator repairs: drops the index and the committed table, fixes the data, and lets it run again.
    query(migrated, "DROP INDEX CONCURRENTLY users_name_key")
    query(migrated, "DROP TABLE audit")
    query(migrated, "UPDATE users SET name = email")
    resolved = run_migrator(["resolve", NEXT, "--rerun"], cwd=project, database_url=migrated)
    assert resolved.returncode == 0, resolved.stderr
    done = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert done.returncode == 0, done.stderr
    assert versions(migrated) == [NEXT] and invalid_indexes(migrated) == []
    assert outcomes(migrated, NEXT) == ["resolved", "applied"]


def test_mark_applied_stamps_what_the_operator_finished(project: Path, migrated: str) -> None:
    query(migrated, "INSERT INTO users (name, email) VALUES ('dup', 'a@x'), ('dup', 'b@x')")
    add_revision(project, NEXT, HEAD, UNIQUE_BUILD, name="unique_names")
    assert run_migrator(["migrate"], cwd=project, database_url=migrated).returncode == 6
    query(migrated, "DROP INDEX CONCURRENTLY users_name_key")
    query(migrated, "UPDATE users SET name = email")
    query(migrated, "CREATE UNIQUE INDEX CONCURRENTLY users_name_key ON users (name)")
    marked = run_migrator(["resolve", NEXT, "--mark-applied"], cwd=project, database_url=migrated)
    assert marked.returncode == 0, marked.stderr
    assert versions(migrated) == [NEXT]
    assert outcomes(migrated, NEXT) == ["resolved", "applied"]
    again = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert again.returncode == 0 and "already up" in again.stderr
    nothing = run_migrator(["resolve", NEXT, "--rerun"], cwd=project, database_url=migrated)
    assert nothing.returncode == 2 and "nothing to resolve" in nothing.stderr


def test_a_rerunnable_migration_runs_again(project: Path, migrated: str) -> None:
    """`rerunnable = True`: a failure after the boundary is exit 1, and the next migrate runs it again."""
    query(migrated, "INSERT INTO users (name, email) VALUES ('dup', 'a@x'), ('dup', 'b@x')")
    add_revision(project, NEXT, HEAD, """
op.execute("CREATE TABLE IF NOT EXISTS audit (id int)")
with op.get_context().autocommit_block():
    op.execute("DROP INDEX CONCURRENTLY IF EXISTS users_name_key")
    op.execute("CREATE UNIQUE INDEX CONCURRENTLY users_name_key ON users (name)")
""", name="unique_names", module="rerunnable = True")
    first = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert first.returncode == 1, first.stderr
    assert "It declares itself rerunnable: the next migrate runs it again" in first.stderr
    query(migrated, "UPDATE users SET name = email")
    second = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert second.returncode == 0, second.stderr
    assert "was left part-way" in second.stderr and "it declares itself rerunnable, so it runs again" in second.stderr
    assert versions(migrated) == [NEXT] and invalid_indexes(migrated) == []
    assert outcomes(migrated, NEXT) == ["resolved", "applied"]


def test_concurrent_builds_wait_for_old_transactions_under_their_own_lock_timeout(project: Path,
                                                                                    migrated: str) -> None:
    """A concurrent build waits for every older transaction by design; that wait does not queue application
    traffic, so it gets MIGRATOR_CONCURRENT_LOCK_TIMEOUT, not the short DDL lock_timeout."""
    add_revision(project, NEXT, HEAD, """
with op.get_context().autocommit_block():
    op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_bio_index ON users (bio)")
""", name="bio_index")
    with old_snapshot(migrated):
        proc = start_migrator(["migrate"], cwd=project, database_url=migrated, MIGRATOR_DDL_LOCK_TIMEOUT="1",
                              MIGRATOR_DDL_RETRIES="0")
        wait_for(lambda: query(migrated, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX "
                                         "CONCURRENTLY%%' AND wait_event_type = 'Lock'"), what="the build to wait")
        time.sleep(3)  # three times the DDL lock_timeout
        assert proc.poll() is None, "the build gave up after the DDL lock_timeout"
    assert proc.wait(timeout=60) == 0
    _, err = proc.communicate()
    assert versions(migrated) == [NEXT] and invalid_indexes(migrated) == [], err


def test_a_concurrent_build_that_times_out_is_not_retried(project: Path, migrated: str) -> None:
    add_revision(project, NEXT, HEAD, """
with op.get_context().autocommit_block():
    op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_bio_index ON users (bio)")
""", name="bio_index")
    with old_snapshot(migrated):
        result = run_migrator(["migrate"], cwd=project, database_url=migrated,
                              MIGRATOR_CONCURRENT_LOCK_TIMEOUT="1s", MIGRATOR_DDL_RETRIES="5")
    assert result.returncode == 6, result.stderr
    assert "retry" not in result.stderr
    assert "INVALID index(es) users_bio_index" in result.stderr.splitlines()[-1]
    assert versions(migrated) == [HEAD]


def test_sigterm_during_an_autocommit_block(project: Path, migrated: str) -> None:
    add_revision(project, NEXT, HEAD, """
op.create_table('audit', sa.Column('id', sa.Integer))
with op.get_context().autocommit_block():
    op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_bio_index ON users (bio)")
""", name="bio_index")
    with old_snapshot(migrated):  # the build waits for this transaction
        proc = start_migrator(["migrate"], cwd=project, database_url=migrated)
        wait_for(lambda: query(migrated, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX "
                                         "CONCURRENTLY%%' AND state = 'active'"), what="the build to wait")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - started
    _, err = proc.communicate()
    assert code == 143, err
    assert elapsed < 10
    last = err.splitlines()[-1]
    assert f"interrupted by SIGTERM during {NEXT} (bio_index) after part of it committed (create table audit)" in last
    assert "PendingRollbackError" not in err
    status = run_migrator(["status", "--json"], cwd=project, database_url=migrated)
    assert '"partial": ["' in status.stdout


def test_an_explicit_commit_makes_the_migration_non_transactional(project: Path, migrated: str) -> None:
    """Real histories run op.execute("COMMIT") before ALTER TYPE ... ADD VALUE: it works, and is recorded."""
    add_revision(project, NEXT, HEAD, """
op.execute("CREATE TYPE mood AS ENUM ('sad')")
op.execute("COMMIT")
op.execute("ALTER TYPE mood ADD VALUE 'happy'")
""", name="mood")
    result = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert result.returncode == 0, result.stderr
    assert versions(migrated) == [NEXT]
    assert outcomes(migrated, NEXT) == ["applied"]
    assert query(migrated, "SELECT unnest(enum_range(NULL::mood))::text") == [("sad",), ("happy",)]


def test_a_rollback_statement_is_refused(project: Path, migrated: str) -> None:
    add_revision(project, NEXT, HEAD, "op.create_table('t', sa.Column('id', sa.Integer))\nop.execute('ROLLBACK')",
                 name="rolls_back")
    result = run_migrator(["migrate"], cwd=project, database_url=migrated)
    assert result.returncode == 1
    assert "executes ROLLBACK" in result.stderr.splitlines()[-1]
    assert query(migrated, "SELECT to_regclass('t')") == [(None,)]
    assert versions(migrated) == [HEAD]


def test_settings_a_migration_sets_do_not_leak_into_the_next(project: Path, migrated: str) -> None:
    """One migration SETs lock_timeout and statement_timeout; the next starts from migrator's settings again."""
    add_revision(project, NEXT, HEAD, "op.execute(\"SET lock_timeout = '1h'\")\n"
                                      "op.execute(\"SET statement_timeout = '400ms'\")", name="sets")
    add_revision(project, LATER, NEXT, "op.execute('SELECT pg_sleep(0.8)')\n"
                                       "op.add_column('users', sa.Column('age', sa.Integer))", name="needs_lock")
    with psycopg.connect(migrated) as blocker:
        blocker.execute("SELECT count(*) FROM users")  # ACCESS SHARE until this transaction ends
        started = time.monotonic()
        result = run_migrator(["migrate"], cwd=project, database_url=migrated, MIGRATOR_DDL_LOCK_TIMEOUT="1",
                              MIGRATOR_DDL_RETRIES="0")
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert f"migration {LATER} (needs_lock) gave up after 1 tries" in result.stderr.splitlines()[-1]
    assert "canceling statement due to statement timeout" not in result.stderr
    assert elapsed < 20, "the second migration waited under the first one's lock_timeout"
    assert versions(migrated) == [NEXT]
