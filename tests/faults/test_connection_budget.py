"""One connection is enough: a role's CONNECTION LIMIT 1, a server at max_connections, 25 migrators and 25
app pods' waits on a server of 30 connections. Each replica needs one connection (migrate, seed, rollback,
status, wait); migrate's monitor is an extra it does without when no slot is free. A connection refused for
lack of room is retried within MIGRATOR_CONNECT_TIMEOUT, and its lines name the setting that refused it.

The server is this module's own, with max_connections = 30 (27 for roles that are not superusers: 3 are
reserved); the migrators run as a role that owns the test's database and is not a superuser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import add_revision, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    Migrator,
    Role,
    assert_nothing_left,
    drop_role,
    history,
    owning_role,
    ran,
    sessions_of,
    versions,
)

SERVER_SETTINGS = {"max_connections": "30", "superuser_reserved_connections": "3"}
SLOTS = 27  # max_connections - superuser_reserved_connections
SECOND = "20240101000001"
SLEEPING_SECOND = """
op.execute("SELECT pg_sleep(3)")  # longer than the monitor's wait for a connection (MIGRATOR_STALL_TIMEOUT, 2 s)
op.execute("INSERT INTO ran_log (what) VALUES ('second')")
"""


@pytest.fixture
def role(configured_url: str) -> Iterator[Role]:
    made = owning_role(configured_url)
    yield made
    drop_role(configured_url, made)


def where(role: Role) -> tuple[str, str]:
    """The server's port, and the database as migrator describes it (user@host:port/database)."""
    port = role.url.rsplit(":", 1)[1].split("/", 1)[0]
    return port, f"{role.name}@127.0.0.1:{port}/{role.url.rsplit('/', 1)[1]}"


def without_time(line: str) -> str:
    return re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", line)


def lines_with(err: str, text: str) -> list[str]:
    return [without_time(line) for line in err.splitlines() if text in line]


def test_a_role_with_connection_limit_1_migrates_rolls_back_and_waits(fault_project: Path, configured_url: str,
                                                                      role: Role) -> None:
    add_revision(fault_project, SECOND, BASE, SLEEPING_SECOND, name="second")
    query(configured_url, f"ALTER ROLE {role.name} CONNECTION LIMIT 1")
    port, description = where(role)

    migrated = Migrator(["migrate"], cwd=fault_project, url=role.url).finish(60)
    assert migrated.code == 0, migrated.err
    assert migrated.errors == [], migrated.err
    assert without_time(migrated.err.splitlines()[0]) == f"[info] == Running {BASE} base.upgrade forward"
    assert lines_with(migrated.err, "monitoring") == [
        f"[warning] no monitoring connection to {description} (connection to server at "
        f'"127.0.0.1", port {port} failed: FATAL: too many connections for role '
        f'"{role.name}" (the role\'s CONNECTION LIMIT is reached: raise it (ALTER ROLE ... CONNECTION LIMIT n) or '
        "run fewer replicas at once)); the migrations go on without it: blockers of a migration are not named, and "
        "a migration session that stops answering during a statement is noticed by TCP keepalives and "
        "MIGRATOR_STATEMENT_TIMEOUT only (every other wait keeps its client-side bound)"]
    assert versions(configured_url) == [SECOND]

    for args, code in ((["status", "--check"], 0), (["wait", "--timeout", "10"], 0), (["rollback", BASE], 0),
                       (["status", "--check"], 5)):
        result = Migrator(args, cwd=fault_project, url=role.url).finish(60)
        assert result.code == code, (args, result.err)
        assert "too many connections" not in result.err, (args, result.err)
    assert versions(configured_url) == [BASE]
    assert history(configured_url) == [(BASE, "up", "applied"), (SECOND, "up", "applied"), (SECOND, "down", "reverted")]
    assert_nothing_left(configured_url)
    assert sessions_of(configured_url, role) == []


def test_a_full_role_is_named_and_waited_for(fault_project: Path, configured_url: str, role: Role) -> None:
    """The role's only connection is taken: migrate retries within MIGRATOR_CONNECT_TIMEOUT, saying why, and
    exits 3 with the setting to change."""
    query(configured_url, f"ALTER ROLE {role.name} CONNECTION LIMIT 1")
    port, description = where(role)
    refusal = (f'connection to server at "127.0.0.1", port {port} failed: FATAL: too many connections for role '
               f'"{role.name}"')
    with psycopg.connect(role.url):
        run = Migrator(["migrate"], cwd=fault_project, url=role.url, MIGRATOR_CONNECT_TIMEOUT="3")
        result = run.finish(3 + MARGIN + 3)  # start-up included
    assert result.code == 3, result.err
    first = without_time(result.err.splitlines()[0])
    assert re.fullmatch(re.escape(f"[warning] waiting for database {description} (migrations): {refusal} (the role's "
                                  "CONNECTION LIMIT is reached: raise it (ALTER ROLE ... CONNECTION LIMIT n) or run "
                                  "fewer replicas at once); retrying for up to ") + r"[23]s more", first), first
    assert without_time(result.one_clean_error()) == (
        f"[error] database {description} refused connections for 3s: {refusal}: the role's CONNECTION LIMIT is "
        "reached: raise it (ALTER ROLE ... CONNECTION LIMIT n) or run fewer replicas at once "
        "(MIGRATOR_CONNECT_TIMEOUT sets the wait)")


def test_a_full_server_is_waited_for_until_a_slot_frees(fault_project: Path, configured_url: str,
                                                       role: Role) -> None:
    """Every slot a role that is not a superuser may take is in use: migrate says which setting refuses it, and
    goes on when one frees up."""
    holders = [psycopg.connect(role.url) for _ in range(SLOTS)]
    try:
        run = Migrator(["migrate"], cwd=fault_project, url=role.url, MIGRATOR_CONNECT_TIMEOUT="30")
        run.wait_for_line("waiting for database")
        holders.pop().close()
        result = run.finish(30)
    finally:
        for conn in holders:
            conn.close()
    assert result.code == 0, result.err
    [waiting] = lines_with(result.err, "waiting for database")
    assert "FATAL: remaining connection slots are reserved for non-replication superuser connections (the server's " \
           "max_connections is reached except for the slots reserved by superuser_reserved_connections and " \
           "reserved_connections: raise max_connections, or run fewer replicas at once); retrying" in waiting, waiting
    assert versions(configured_url) == [BASE]


def test_25_migrators_and_25_waits_on_30_connections(fault_project: Path, configured_url: str, role: Role) -> None:
    """The issue's fault: 50 replicas on 27 slots. Each migrator or wait needs one connection at a time; whoever
    finds no slot retries within MIGRATOR_CONNECT_TIMEOUT; all exit 0 and nothing stays connected."""
    add_revision(fault_project, SECOND, BASE, SLEEPING_SECOND, name="second")
    env = {"MIGRATOR_CONNECT_TIMEOUT": "120"}
    started = time.monotonic()
    runs = [Migrator(["migrate"], cwd=fault_project, url=role.url, env=env) for _ in range(25)]
    runs += [Migrator(["wait", "--timeout", "150", "--interval", "1"], cwd=fault_project, url=role.url, env=env)
             for _ in range(25)]
    results = [run.finish(180) for run in runs]
    print(f"50 replicas on {SLOTS} slots: all done {time.monotonic() - started:.1f}s after the first started")
    assert [r.code for r in results] == [0] * 50, "\n".join(r.err for r in results if r.code)
    assert sum("== Running " in r.err for r in results) == 1, "exactly one process runs the migrations"
    assert versions(configured_url) == [SECOND]
    assert ran(configured_url, "second") == 1
    assert history(configured_url) == [(BASE, "up", "applied"), (SECOND, "up", "applied")]
    assert_nothing_left(configured_url)
    assert sessions_of(configured_url, role) == []
