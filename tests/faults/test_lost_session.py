"""No step without the lock: when the migration session dies (pg_terminate_backend, a TCP reset) its lock dies
with it, the run stops with exit 3 and a true line, and a second migrator started meanwhile runs everything
exactly once; when only the lock is lost (released by a statement), the run stops before its next step (4).

Counting uses `ran_log`: each test migration or seed inserts a row naming itself, so a migration's
non-transactional part or a non-idempotent seed that ran twice shows as two rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    STALL,
    Migrator,
    assert_nothing_left,
    at_base,
    history,
    ran,
    sleeping_backend,
    table_exists,
    terminate,
    versions,
)
from tests.faults.proxy import FaultProxy

TX = "20240101000001"
TX_MIGRATION = """
op.execute("INSERT INTO ran_log (what) VALUES ('tx')")
op.execute(f"SELECT pg_sleep({float(os.environ.get('TEST_SLEEP', '0'))})")
op.create_table('made_by_tx', sa.Column('id', sa.Integer))
"""
NONTX = "20240101000002"
NONTX_MIGRATION = """
with op.get_context().autocommit_block():
    op.execute("INSERT INTO ran_log (what) VALUES ('nontx')")
    op.execute(f"SELECT pg_sleep({float(os.environ.get('TEST_SLEEP', '0'))})")
"""
AFTER = "20240101000003"
AFTER_MIGRATION = """op.execute("INSERT INTO ran_log (what) VALUES ('after')")"""
SLEEPING = {"TEST_SLEEP": "60"}  # the first migrator's step sleeps: the test's moment to strike


def test_terminated_during_a_migration_second_migrator_runs_it_once(fault_project: Path, url: str) -> None:
    add_revision(fault_project, TX, BASE, TX_MIGRATION, name="tx")
    add_revision(fault_project, AFTER, TX, AFTER_MIGRATION, name="after")
    first = Migrator(["migrate"], cwd=fault_project, url=url, env=SLEEPING)
    session = sleeping_backend(url)
    second = Migrator(["migrate"], cwd=fault_project, url=url)
    second.wait_for_line("waiting for the migration lock")
    struck = time.monotonic()
    terminate(url, session.pid)
    lost = first.finish(MARGIN, since=struck)
    done = second.finish(30)

    assert lost.code == 3, lost.err
    line = lost.one_clean_error()
    assert "lost the connection" in line, line
    assert f"{TX} (tx) was running" in line, line
    assert "runs it again from the start" in line, line
    assert "rolled back (confirmed" not in lost.err
    assert done.code == 0, done.err
    assert versions(url) == [AFTER]
    assert (ran(url, "tx"), ran(url, "after")) == (1, 1)
    assert table_exists(url, "made_by_tx")
    assert history(url) == [(BASE, "up", "applied"), (TX, "up", "applied"), (AFTER, "up", "applied")]
    assert_nothing_left(url)


def test_terminated_in_a_non_transactional_part_it_never_runs_twice(fault_project: Path, url: str) -> None:
    add_revision(fault_project, NONTX, BASE, NONTX_MIGRATION, name="nontx")
    add_revision(fault_project, AFTER, NONTX, AFTER_MIGRATION, name="after")
    first = Migrator(["migrate"], cwd=fault_project, url=url, env=SLEEPING)
    session = sleeping_backend(url)
    second = Migrator(["migrate"], cwd=fault_project, url=url)
    second.wait_for_line("waiting for the migration lock")
    struck = time.monotonic()
    terminate(url, session.pid)
    lost = first.finish(MARGIN, since=struck)
    stopped = second.finish(30)

    assert ran(url, "nontx") == 1, "the non-transactional part ran twice"
    assert ran(url, "after") == 0
    assert versions(url) == [BASE]
    assert history(url) == [(BASE, "up", "applied"), (NONTX, "up", "running")]
    assert_nothing_left(url)
    assert stopped.code == 6, stopped.err
    assert f"migrator resolve {NONTX}" in stopped.one_clean_error()
    assert lost.code == 3, lost.err
    line = lost.one_clean_error()
    assert f"{NONTX} (nontx) was running and had committed" in line, line
    assert "insert into ran_log" in line.lower(), f"the committed INSERT is not named: {line}"
    assert "stops at it (exit 6)" in line, line


SEED_01 = """
import os

import sqlalchemy as sa


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed 01')"))
    session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": float(os.environ.get("TEST_SLEEP", "0"))})
"""
SEED_02 = """
import sqlalchemy as sa


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed 02')"))
"""


def test_terminated_during_a_seed_second_migrator_seeds_once(fault_project: Path, url: str) -> None:
    """Seeds that are not idempotent (a plain INSERT) still run once each."""
    (fault_project / "seeds" / "01_first.py").write_text(SEED_01)
    (fault_project / "seeds" / "02_second.py").write_text(SEED_02)
    at_base(url)
    first = Migrator(["seed"], cwd=fault_project, url=url, env=SLEEPING)
    session = sleeping_backend(url)
    second = Migrator(["seed"], cwd=fault_project, url=url)
    second.wait_for_line("waiting for the migration lock")
    struck = time.monotonic()
    terminate(url, session.pid)
    lost = first.finish(MARGIN, since=struck)
    done = second.finish(30)

    assert lost.code == 3, lost.err
    line = lost.one_clean_error()
    assert "seed 01_first.py" in line, line
    assert "rolled back (confirmed" not in lost.err
    assert done.code == 0, done.err
    assert (ran(url, "seed 01"), ran(url, "seed 02")) == (1, 1)
    assert sorted(str(r[0]) for r in query(url, "SELECT name FROM migrator_seeds")) == ["01_first.py", "02_second.py"]
    assert_nothing_left(url)


def test_reset_of_the_migration_connection(fault_project: Path, url: str, proxied: str, proxy: FaultProxy) -> None:
    """A TCP reset: the client fails at once; the server notices the dead client within its check interval
    (client_connection_check_interval, 2 s), and a second migrator started right after runs the step once."""
    add_revision(fault_project, TX, BASE, TX_MIGRATION, name="tx")
    first = Migrator(["migrate"], cwd=fault_project, url=proxied, env=SLEEPING)
    session = sleeping_backend(url)
    assert session.client_port is not None
    struck = time.monotonic()
    proxy.reset(proxy.link_for_server_port(session.client_port))
    lost = first.finish(MARGIN, since=struck)
    second = Migrator(["migrate"], cwd=fault_project, url=url)
    done = second.finish(STALL + 30)

    assert lost.code == 3, lost.err
    line = lost.one_clean_error()
    assert f"{TX} (tx) was running" in line, line
    assert done.code == 0, done.err
    assert ran(url, "tx") == 1
    assert history(url) == [(BASE, "up", "applied"), (TX, "up", "applied")]
    assert_nothing_left(url)


UNLOCK = "20240101000004"
UNLOCK_MIGRATION = """op.execute("SELECT pg_advisory_unlock_all()")"""


def test_lock_released_by_a_migration_stops_before_the_next_step(fault_project: Path, url: str) -> None:
    add_revision(fault_project, UNLOCK, BASE, UNLOCK_MIGRATION, name="unlock")
    add_revision(fault_project, AFTER, UNLOCK, AFTER_MIGRATION, name="after")
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert result.code == 4, result.err
    line = result.one_clean_error()
    assert "no longer held" in line, line
    assert f"stopped before {AFTER} (after)" in line, line
    assert ran(url, "after") == 0
    assert versions(url) == [UNLOCK]
    assert history(url) == [(BASE, "up", "applied"), (UNLOCK, "up", "applied")]
    assert_nothing_left(url)
    again = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert again.code == 0, again.err
    assert ran(url, "after") == 1


SEED_UNLOCK = """
import sqlalchemy as sa


def run(session):
    session.execute(sa.text("SELECT pg_advisory_unlock_all()"))
"""


def test_lock_released_by_a_seed_stops_before_the_next_seed(fault_project: Path, url: str) -> None:
    (fault_project / "seeds" / "01_unlock.py").write_text(SEED_UNLOCK)
    (fault_project / "seeds" / "02_second.py").write_text(SEED_02)
    at_base(url)
    result = Migrator(["seed"], cwd=fault_project, url=url).finish(60)
    assert result.code == 4, result.err
    line = result.one_clean_error()
    assert "no longer held" in line, line
    assert "stopped before seed 02_second.py" in line, line
    assert ran(url, "seed 02") == 0
    assert_nothing_left(url)


TOKEN = "tok-7Q2v-not-for-logs"  # a value a seed binds, as real seeds bind API keys or personal data
SEED_WITH_A_SECRET = f"""
import os

import sqlalchemy as sa


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) SELECT :token FROM pg_sleep(:s)"),
                    {{"token": "{TOKEN}", "s": float(os.environ.get("TEST_SLEEP", "0"))}})
"""


def test_lost_connection_line_shows_no_sql_and_no_bound_values(fault_project: Path, url: str,
                                                               tmp_path: Path) -> None:
    """The one line says what was lost and what the server does, in words: not SQLAlchemy's wrapper with the
    statement and its bound parameters, which may hold secrets and personal data."""
    (fault_project / "seeds" / "01_secret.py").write_text(SEED_WITH_A_SECRET)
    at_base(url)
    first = Migrator(["seed"], cwd=fault_project, url=url, termination=tmp_path / "termination", env=SLEEPING)
    session = sleeping_backend(url)
    struck = time.monotonic()
    terminate(url, session.pid)
    lost = first.finish(MARGIN, since=struck)
    assert lost.code == 3, lost.err
    line = lost.one_clean_error()
    assert TOKEN not in lost.err + (tmp_path / "termination").read_text(), "a bound value leaked into the log"
    assert "[SQL:" not in line and "sqlalche.me" not in line, line
    assert ran(url, TOKEN) == 0
