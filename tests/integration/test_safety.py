"""Safety under concurrency and faults: locks, failing migrations, lock timeouts, signals."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migrator.lock import lock_key
from tests.conftest import HEAD, add_revision, dbname, query, run_migrator, running_lines, start_migrator

SLOW = "20220101000000"
SLOW_MIGRATION = """
op.create_table('slow', sa.Column('id', sa.Integer))
op.execute(f"SELECT pg_sleep({float(os.environ.get('MIGRATION_SLEEP', '0'))})")
"""


def versions(url: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT version_num FROM alembic_version")]


def wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sleeping(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%%' "
                           "AND state = 'active' AND pid <> pg_backend_pid()"))


def test_eight_simultaneous_migrators_apply_each_migration_once(project: Path, database_url: str) -> None:
    procs = [start_migrator(["migrate"], cwd=project, database_url=database_url) for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    runners = [err for _, _, err in results if running_lines(err)]
    assert len(runners) == 1, "exactly one process may run the migrations"
    assert len(running_lines(runners[0])) == 2
    assert versions(database_url) == [HEAD]


def test_the_lock_is_never_free_while_the_steps_run(project: Path, database_url: str) -> None:
    """Each step proves the lock by taking one of its two counts back and adding it again (lock.OWNED). A
    session queued for the lock would be granted it the instant it were free; through a run of 40 steps it
    gets it only once every step is committed, and migrator ends with the lock released (no count left)."""
    down = HEAD
    for n in range(40):
        rev = f"2023{n:010d}"
        add_revision(project, rev, down, f"op.create_table('t{n}', sa.Column('id', sa.Integer))\n"
                                         "op.execute('SELECT pg_sleep(0.05)')", name=f"t{n}")
        down = rev
    key = lock_key(dbname(database_url), "public", "alembic_version")
    seen: list[object] = []

    def queue_for_the_lock() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '120s'")
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            seen.extend(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    proc = start_migrator(["migrate"], cwd=project, database_url=database_url)
    # Queued once the example's CREATE INDEX CONCURRENTLY is done: it would wait for the queued session's
    # transaction, a deadlock by design (why migrator itself polls for the lock in autocommit).
    wait_for(lambda: query(database_url, "SELECT to_regclass('t0') IS NOT NULL") == [(True,)],
             what="migrator to run the first of the 40")
    waiter = threading.Thread(target=queue_for_the_lock)
    waiter.start()
    wait_for(lambda: bool(query(database_url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")),
             what="the second session to queue for the lock")
    code = proc.wait(timeout=120)
    waiter.join(timeout=30)
    err = proc.communicate()[1]
    assert code == 0, err
    assert len(running_lines(err)) == 42, err  # the two of the example, and the 40
    assert seen == [down], f"the queued session got the lock while the version table was at {seen}"
    assert query(database_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]


def test_failing_migration_between_two_good_ones(project: Path, database_url: str) -> None:
    add_revision(project, "20220101000000", HEAD, "op.add_column('users', sa.Column('age', sa.Integer))",
                 name="add_age")
    add_revision(project, "20220101000001", "20220101000000",
                 "op.create_table('half', sa.Column('id', sa.Integer))\nop.execute('SELECT 1/0')", name="broken")
    add_revision(project, "20220101000002", "20220101000001",
                 "op.create_table('never', sa.Column('id', sa.Integer))", name="after")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert "migration 20220101000001 (broken) failed and was rolled back" in last
    assert "division by zero" in last
    assert versions(database_url) == ["20220101000000"]
    assert query(database_url, "SELECT to_regclass('half'), to_regclass('never')") == [(None, None)]
    assert query(database_url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'age'") == [(1,)]


def test_lock_timeout_retries_then_gives_up_without_blocking_readers(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    add_revision(project, "20220101000000", HEAD, "op.add_column('users', sa.Column('age', sa.Integer))",
                 name="add_age")
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SET application_name = 'long-report'")
        blocker.execute("SELECT count(*) FROM users")  # holds ACCESS SHARE on users until the transaction ends
        blocker_pid = blocker.info.backend_pid
        proc = start_migrator(["migrate"], cwd=project, database_url=database_url,
                              MIGRATOR_DDL_LOCK_TIMEOUT="1", MIGRATOR_DDL_RETRIES="2")
        wait_for(lambda: query(database_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                             "AND query LIKE 'ALTER TABLE users%%'"), what="the ALTER to queue")
        with psycopg.connect(database_url, autocommit=True) as reader:
            started = time.monotonic()
            reader.execute("SELECT count(*) FROM users")
            waited = time.monotonic() - started
        code = proc.wait(timeout=120)
        _, err = proc.communicate()
    # Without lock_timeout the ALTER would queue every reader behind it until the report ended (never, here).
    assert waited < 1 + 2, f"a reader waited {waited:.1f}s behind the migration"
    assert code == 1, err
    assert "retry 1/2" in err and "retry 2/2" in err
    last = err.splitlines()[-1]
    assert "migration 20220101000000 (add_age) gave up after 3 tries" in last
    assert f"pid {blocker_pid} (long-report" in last
    assert versions(database_url) == [HEAD]
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0


def test_lock_wait_names_the_holder_and_times_out(project: Path, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SET application_name = 'migrator@other-pod'")
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(dbname(database_url), "public", "alembic_version"),))
        result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOCK_TIMEOUT="1")
        holder_pid = holder.info.backend_pid
    assert result.returncode == 4
    assert f"held by pid {holder_pid} (migrator@other-pod" in result.stderr.splitlines()[0]
    assert "not acquired after 1s" in result.stderr.splitlines()[-1]
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_migration_rolls_it_back(project: Path, database_url: str, sig: int, code: int) -> None:
    add_revision(project, SLOW, HEAD, SLOW_MIGRATION, name="slow")
    proc = start_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATION_SLEEP="60")
    wait_for(lambda: sleeping(database_url), what="the slow migration")
    proc.send_signal(sig)
    assert proc.wait(timeout=15) == code
    _, err = proc.communicate()
    assert (f"during {SLOW} (slow): its running statement was cancelled and its transaction rolled back "
            "(confirmed by the server)") in err
    assert query(database_url, "SELECT to_regclass('slow')") == [(None,)]
    assert versions(database_url) == [HEAD]
    wait_for(lambda: not sleeping(database_url), timeout=5, what="the statement to be cancelled")
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert versions(database_url) == [SLOW]


def test_sigkill_then_next_run_completes(project: Path, database_url: str) -> None:
    add_revision(project, SLOW, HEAD, SLOW_MIGRATION, name="slow")
    proc = start_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATION_SLEEP="60")
    wait_for(lambda: sleeping(database_url), what="the slow migration")
    proc.kill()
    proc.wait(timeout=15)
    proc.communicate()
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert versions(database_url) == [SLOW]
    # The killed client's statement did not keep running: the server noticed the dead connection.
    assert not sleeping(database_url)


def test_concurrent_index_build_works_under_the_lock(project: Path, database_url: str) -> None:
    """The example's CREATE INDEX CONCURRENTLY would wait forever if the lock were held in a transaction."""
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_DDL_LOCK_TIMEOUT="30")
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = "
                               "'users_email_index'::regclass") == [(True, True)]


def test_writers_go_on_during_the_concurrent_build(project: Path, database_url: str) -> None:
    """The example's unique index is built CONCURRENTLY: rows written while it builds prove writes progressed
    (a plain CREATE INDEX would hold them until the build ends; the migration's own start and end come from
    the migration history, on the server's clock)."""
    assert run_migrator(["migrate", "--to", "20211103022310"], cwd=project, database_url=database_url).returncode == 0
    query(database_url, "INSERT INTO users (name, email) SELECT 'n' || i, 'e' || i || '@x' "
                        "FROM generate_series(1, 400000) AS i")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                n = 0
                while not stop.is_set():
                    conn.execute("INSERT INTO users (name, email, inserted_at) VALUES (%s, %s, clock_timestamp())",
                                 (f"w{n}", f"w{n}@x"))
                    n += 1
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert errors == []
    [(started, finished)] = query(database_url, "SELECT started_at, finished_at FROM migrator_history "
                                                "WHERE revision = %s", HEAD)
    [(gap,)] = query(database_url, "SELECT max(gap) FROM (SELECT t - lag(t) OVER (ORDER BY t) AS gap FROM ("
                                   "SELECT inserted_at AS t FROM users WHERE name LIKE 'w%%' AND inserted_at BETWEEN "
                                   "%s AND %s UNION ALL SELECT %s UNION ALL SELECT %s) w) g",
                     started, finished, started, finished)
    took = finished - started  # type: ignore[operator]
    # A blocking build stops every writer for the whole build; a concurrent one lets them go on.
    assert gap is not None and gap < took / 3, f"writers stood still for {gap} of a {took} migration"


def test_unix_socket_and_pg_env(project: Path, database_url: str, tmp_path: Path) -> None:
    """Without DATABASE_URL, libpq's PG* variables."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(database_url)
    env = {"PGHOST": str(params["host"]), "PGDATABASE": str(params["dbname"]), "PGUSER": str(params["user"])}
    result = run_migrator(["migrate"], cwd=project, database_url=None, env=env)
    assert result.returncode == 0, result.stderr
    assert versions(database_url) == [HEAD]


def test_application_name_is_visible_to_dbas(project: Path, database_url: str) -> None:
    add_revision(project, SLOW, HEAD, SLOW_MIGRATION, name="slow")
    proc = start_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATION_SLEEP="2")
    wait_for(lambda: sleeping(database_url), what="the slow migration")
    names = {r[0] for r in query(database_url, "SELECT application_name FROM pg_stat_activity "
                                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")}
    assert proc.wait(timeout=30) == 0
    assert f"migrator@{os.uname().nodename}"[:63] in names
    proc.communicate()


def test_sigterm_while_waiting_for_the_lock(project: Path, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(dbname(database_url), "public", "alembic_version"),))
        proc = start_migrator(["migrate"], cwd=project, database_url=database_url)
        wait_for(lambda: query(database_url, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE "
                                             "'migrator@%%' AND pid <> pg_backend_pid()"), what="the waiter")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    proc.communicate()
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def test_subprocess_helper_sees_no_password() -> None:
    """The password check in run_migrator can fail: it is not a test that cannot fail."""
    from tests.conftest import assert_no_secret
    from tests.postgres import SUPERUSER_PASSWORD

    with pytest.raises(AssertionError):
        assert_no_secret(f"oops {SUPERUSER_PASSWORD}")
