"""Through a real PgBouncer: transaction and statement pooling are refused at once (exit 2), also when a
stampede of migrators shares a pool smaller than itself, and leave nothing behind on any pooled server
connection; session pooling works, also with 16 migrators at once, and with a pool smaller than the replicas
(one server connection is enough for a migrator); a full session pool is named as such.

What a migrator could leave on a pooled server connection (an advisory lock, lock_timeout, statement_timeout, a
LISTEN) would show in the session of another client of the pool, which is what the leak checks look at: as
many clients as the pool has server connections, each holding a transaction, see every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, dbname, query
from tests.faults.helpers import (
    BASE,
    CONNECT,
    MARGIN,
    Migrator,
    assert_nothing_left,
    history,
    ran,
    table_exists,
    versions,
)
from tests.faults.pgbouncer import PgBouncer
from tests.tenants.tenant_projects import REVISIONS, tenant_versions, write_project

DEFAULTS = {"lock_timeout": "0", "statement_timeout": "0", "idle_in_transaction_session_timeout": "0",
            "client_connection_check_interval": "0"}
SECOND, THIRD = "20240101000001", "20240101000002"


def settings_through(bouncer: PgBouncer, name: str) -> dict[str, str]:
    """What another client of the pool sees in its session."""
    with psycopg.connect(bouncer.url_for(name), autocommit=True) as conn:
        return {setting: str(conn.execute(f"SHOW {setting}").fetchone()[0]) for setting in DEFAULTS}  # type: ignore[index]


@pytest.mark.parametrize(("pool_mode", "auth_type", "pool_size"), [
    ("transaction", "md5", 1),
    ("transaction", "plain", 20),
    ("statement", "md5", 1),
    ("statement", "plain", 20),
])
def test_pooling_that_does_not_keep_the_session_is_refused(
        fault_project: Path, url: str, pgbouncer: Callable[..., PgBouncer], tmp_path: Path,
        pool_mode: str, auth_type: str, pool_size: int) -> None:
    bouncer = pgbouncer(pool_mode, auth_type=auth_type, pool_size=pool_size)
    name = dbname(url)
    run = Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(name), termination=tmp_path / "termination")
    result = run.finish(MARGIN + 8)  # from the process start: interpreter start-up included
    assert result.code == 2, result.err
    line = result.one_clean_error()
    assert "does not keep the session" in line, line
    assert "Connect the migrator directly to PostgreSQL, or through PgBouncer in session mode" in line, line
    assert (tmp_path / "termination").read_text().startswith("migrate failed (exit 2)")

    # Nothing behind: no lock on any server backend, no migration, no setting in another client's session.
    assert_nothing_left(url)
    assert not table_exists(url, "alembic_version")
    assert not table_exists(url, "migrator_history")
    for _ in range(3):  # with a pool of one, each lands on the backend the migrator used
        assert settings_through(bouncer, name) == DEFAULTS


def test_session_pooling_16_migrators_at_once(fault_project: Path, url: str,
                                              pgbouncer: Callable[..., PgBouncer]) -> None:
    second, third = "20240101000001", "20240101000002"
    add_revision(fault_project, second, BASE, """op.execute("INSERT INTO ran_log (what) VALUES ('second')")""",
                 name="second")
    add_revision(fault_project, third, second, """op.execute("INSERT INTO ran_log (what) VALUES ('third')")""",
                 name="third")
    bouncer = pgbouncer("session", auth_type="md5", pool_size=60)
    runs = [Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(dbname(url))) for _ in range(16)]
    results = [run.finish(120) for run in runs]
    assert [r.code for r in results] == [0] * 16, "\n".join(r.err for r in results if r.code)
    assert sum("== Running " in r.err for r in results) == 1, "exactly one process runs the migrations"
    assert any("through a pooler that keeps sessions (a notification reached this session" in r.err for r in results)
    assert versions(url) == [third]
    assert (ran(url, "second"), ran(url, "third")) == (1, 1)
    assert history(url) == [(BASE, "up", "applied"), (second, "up", "applied"), (third, "up", "applied")]
    assert_nothing_left(url)
    assert settings_through(bouncer, dbname(url)) == DEFAULTS  # DISCARD ALL between session clients


def every_pooled_session(bouncer: PgBouncer, name: str, pool_size: int) -> list[tuple[dict[str, str], list[str]]]:
    """(settings, listening channels) of each server connection of the pool, seen by as many clients, each
    holding a transaction so that each holds a server connection of its own."""
    conns = [psycopg.connect(bouncer.url_for(name)) for _ in range(pool_size)]
    try:
        seen: dict[int, tuple[dict[str, str], list[str]]] = {}
        for conn in conns:
            pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
            settings = {s: str(conn.execute(f"SHOW {s}").fetchone()[0]) for s in DEFAULTS}  # type: ignore[index]
            channels = [str(row[0]) for row in conn.execute("SELECT pg_listening_channels()").fetchall()]
            seen[pid] = (settings, channels)
        assert len(seen) == pool_size, "each client should hold a server connection of its own"
        return list(seen.values())
    finally:
        for conn in conns:
            conn.close()


def nothing_in_the_pool(url: str, bouncer: PgBouncer, pool_size: int) -> None:
    """No lock, no backend waiting for one, and every pooled server connection as a new session has it."""
    assert_nothing_left(url)
    assert query(url, "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND "
                      "(wait_event_type = 'Lock' OR query LIKE '%%pg_advisory_lock%%') AND pid <> pg_backend_pid()"
                 ) == []
    assert every_pooled_session(bouncer, dbname(url), pool_size) == [(DEFAULTS, [])] * pool_size


def two_migrations(project: Path, sleep: float = 0) -> None:
    add_revision(project, SECOND, BASE, f"""op.execute("SELECT pg_sleep({sleep:g})")
op.execute("INSERT INTO ran_log (what) VALUES ('second')")""", name="second")
    add_revision(project, THIRD, SECOND, """op.execute("INSERT INTO ran_log (what) VALUES ('third')")""",
                 name="third")


def test_transaction_pool_stampede_is_refused_and_leaves_nothing(fault_project: Path, url: str,
                                                                 pgbouncer: Callable[..., PgBouncer]) -> None:
    """8 migrators at once on a transaction pool of 3 server connections: which connection each statement gets
    is the stampede's to decide; every migrator is refused before any lock or setting."""
    pool_size = 3
    bouncer = pgbouncer("transaction", auth_type="md5", pool_size=pool_size)
    runs = [Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(dbname(url))) for _ in range(8)]
    # The check's bound: the second client's answers, the notification's wait and this session's own queries,
    # each within MIGRATOR_STALL_TIMEOUT (2 s here); the processes' start-up on 2 cores comes on top.
    results = [run.finish(60) for run in runs]
    assert [r.code for r in results] == [2] * 8, "\n".join(r.err for r in results)
    for result in results:
        line = result.one_clean_error()
        assert " is reached through a connection pooler that does not keep the session (" in line, line
        assert line.endswith("Connect the migrator directly to PostgreSQL, or through PgBouncer in session mode"), line
        assert "== Running" not in result.err
    assert not table_exists(url, "alembic_version")
    assert not table_exists(url, "migrator_history")
    nothing_in_the_pool(url, bouncer, pool_size)


def test_session_pool_of_one_server_connection_is_enough(fault_project: Path, url: str,
                                                         pgbouncer: Callable[..., PgBouncer]) -> None:
    """The migrator's only server connection is the one it migrates on: the pooler check and the monitor wait
    in the pool's queue, and the run goes on without them. The monitor waits MIGRATOR_STALL_TIMEOUT (2 s here)
    for a server connection: a migration of 3 s outlasts that wait."""
    two_migrations(fault_project, sleep=3)
    bouncer = pgbouncer("session", auth_type="md5", pool_size=1)
    result = Migrator(["migrate"], cwd=fault_project, url=bouncer.url_for(dbname(url))).finish(60)
    assert result.code == 0, result.err
    assert result.errors == [], result.err
    assert "through a pooler that keeps sessions (it answered this session while another client waited for a " \
           "server connection)" in result.err
    [unwatched] = [line for line in result.err.splitlines() if "no monitoring connection" in line]
    assert "the migrations go on without it" in unwatched, unwatched
    assert versions(url) == [THIRD]
    assert history(url) == [(BASE, "up", "applied"), (SECOND, "up", "applied"), (THIRD, "up", "applied")]
    nothing_in_the_pool(url, bouncer, 1)


def test_session_pool_smaller_than_the_replicas(fault_project: Path, url: str,
                                                pgbouncer: Callable[..., PgBouncer]) -> None:
    """5 migrators and 3 app pods' waits on a session pool of 2: each migrator waits its turn for a server
    connection within MIGRATOR_CONNECT_TIMEOUT, waits hold none between their polls, and all exit 0."""
    two_migrations(fault_project)
    bouncer = pgbouncer("session", auth_type="md5", pool_size=2)
    target = bouncer.url_for(dbname(url))
    runs = [Migrator(["migrate"], cwd=fault_project, url=target, MIGRATOR_CONNECT_TIMEOUT="60") for _ in range(5)]
    runs += [Migrator(["wait", "--timeout", "90", "--interval", "0.5"], cwd=fault_project, url=target,
                      MIGRATOR_CONNECT_TIMEOUT="60") for _ in range(3)]
    results = [run.finish(120) for run in runs]
    assert [r.code for r in results] == [0] * 8, "\n".join(r.err for r in results if r.code)
    assert sum("== Running " in r.err for r in results) == 1, "exactly one process runs the migrations"
    assert versions(url) == [THIRD]
    assert (ran(url, "second"), ran(url, "third")) == (1, 1)
    nothing_in_the_pool(url, bouncer, 2)


def test_a_full_session_pool_is_named(fault_project: Path, url: str, pgbouncer: Callable[..., PgBouncer]) -> None:
    """Another client holds the pool's only server connection: the first query waits in PgBouncer's queue, up to
    MIGRATOR_CONNECT_TIMEOUT, and the line names the pool, not a lost connection."""
    bouncer = pgbouncer("session", auth_type="md5", pool_size=1)
    target = bouncer.url_for(dbname(url))
    with psycopg.connect(target, autocommit=True) as holder:
        holder.execute("SELECT 1")
        run = Migrator(["migrate"], cwd=fault_project, url=target)
        result = run.finish(CONNECT + MARGIN + 3)  # start-up included
    assert result.code == 3, result.err
    line = result.one_clean_error()
    description = f"postgres@127.0.0.1:{bouncer.port}/{dbname(url)}"
    assert line.split(" ", 1)[1] == (
        f"[error] connected to {description}, but its first query got no answer within {CONNECT:g}s: a connection "
        "pooler with no free server connection for this client (PgBouncer in session mode: every server connection "
        "of the pool is taken by another client; raise default_pool_size, max_db_connections or "
        "max_user_connections, or run fewer replicas at once), or the server stopped answering "
        "(MIGRATOR_CONNECT_TIMEOUT sets the wait)")
    assert not table_exists(url, "alembic_version")


def test_a_full_pooler_is_named_with_max_client_conn(fault_project: Path, url: str,
                                                     pgbouncer: Callable[..., PgBouncer]) -> None:
    """PgBouncer takes no more clients: retried within MIGRATOR_CONNECT_TIMEOUT, then exit 3 naming its setting."""
    bouncer = pgbouncer("session", auth_type="md5", pool_size=5, max_client_conn=1)
    target = bouncer.url_for(dbname(url))
    with psycopg.connect(target, autocommit=True):
        result = Migrator(["migrate"], cwd=fault_project, url=target).finish(CONNECT + MARGIN + 3)  # start-up too
    assert result.code == 3, result.err
    description = f"postgres@127.0.0.1:{bouncer.port}/{dbname(url)}"
    assert result.one_clean_error().split(" ", 1)[1] == (
        f"[error] database {description} refused connections for {CONNECT:g}s: connection to server at "
        f'"127.0.0.1", port {bouncer.port} failed: FATAL: no more connections allowed (max_client_conn): the '
        "pooler's max_client_conn is reached (PgBouncer): raise it, or run fewer replicas at once "
        "(MIGRATOR_CONNECT_TIMEOUT sets the wait)")


def test_schema_tenants_share_one_checked_session(tmp_path: Path, url: str,
                                                  pgbouncer: Callable[..., PgBouncer]) -> None:
    """Schema tenants share one connection (migrator.targets.SharedConnection): the pooler check proves once
    that the pooler keeps it, not once per tenant (behind a full session pool each check waits for the queue
    test, 2 s, and costs a second client)."""
    project = write_project(tmp_path / "p", 'tenants = ["a1", "b2", "c3"]\n', revisions=1)
    bouncer = pgbouncer("session", auth_type="md5", pool_size=1)
    result = Migrator(["migrate"], cwd=project, url=bouncer.url_for(dbname(url))).finish(60)
    assert result.code == 0, result.err
    checked = [line for line in result.err.splitlines() if "through a pooler that keeps sessions" in line]
    assert len(checked) == 1, result.err
    assert [tenant_versions(url, t) for t in ("a1", "b2", "c3")] == [[REVISIONS[0]]] * 3


def test_a_wait_over_tenants_holds_no_server_connection_between_polls(tmp_path: Path, url: str,
                                                                      pgbouncer: Callable[..., PgBouncer]) -> None:
    """An app pod's `wait` over every tenant, on a session pool of one server connection, leaves it to `migrate`
    between its polls (as `wait` on one database does): the migration runs, and the wait ends ready."""
    project = write_project(tmp_path / "p", 'tenants = ["a1", "b2"]\n', revisions=1)
    bouncer = pgbouncer("session", auth_type="md5", pool_size=1)
    target = bouncer.url_for(dbname(url))
    waiting = Migrator(["wait", "--timeout", "60", "--interval", "0.3"], cwd=project, url=target)
    waiting.wait_for_line("Waiting for repo default: 2 of 2 tenants behind")
    migrated = Migrator(["migrate"], cwd=project, url=target).finish(60)
    assert migrated.code == 0, migrated.err
    ready = waiting.finish(60)
    assert ready.code == 0, ready.err
    assert "Schema ready: 2 tenants of repo default at " in ready.last, ready.err
    assert [tenant_versions(url, t) for t in ("a1", "b2")] == [[REVISIONS[0]]] * 2
