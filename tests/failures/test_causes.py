"""A failed migration's line names its real cause: a migration that exits, one that computes longer than the
server lets a transaction sit idle, one whose own connection fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import add_revision
from tests.faults.helpers import BASE, Migrator, assert_nothing_left, at_base, history, ran, versions

REV = "20240101000001"


@pytest.mark.parametrize("code", [0, 3])
def test_a_migration_that_calls_sys_exit_is_a_failed_migration(fault_project: Path, url: str, code: int) -> None:
    """Issue 19 item 4: never exit 0 (or the migration's own code) for a migration that did not finish."""
    add_revision(fault_project, REV, BASE, "op.execute(\"INSERT INTO ran_log (what) VALUES ('exits')\")\n"
                                           f"import sys\nsys.exit({code})", name="exits")
    at_base(url)
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert result.code == 1, result.err
    assert result.one_clean_error().endswith(
        f"[error] migration {REV} (exits) failed and was rolled back: it called sys.exit({code}); nothing was "
        "applied")
    assert versions(url) == [BASE]
    assert ran(url, "exits") == 0
    # at_base stamps the base as plain Alembic would: its checksum is recorded on first sight (issue 21)
    assert history(url) == [(BASE, "up", "recorded"), (REV, "up", "failed")]
    assert_nothing_left(url)


def test_idle_in_a_migrations_own_code_names_the_timeout_and_its_setting(fault_project: Path, url: str) -> None:
    """Issue 19 item 7: the server ends a session idle in its transaction for longer than
    idle_in_transaction_session_timeout; the line says that, and which setting raises it."""
    add_revision(fault_project, REV, BASE, "op.execute(\"INSERT INTO ran_log (what) VALUES ('thinks')\")\n"
                                           "import time\ntime.sleep(3)\n"
                                           "op.execute(\"INSERT INTO ran_log (what) VALUES ('thought')\")",
                 name="thinks")
    at_base(url)
    result = Migrator(["migrate"], cwd=fault_project, url=url, MIGRATOR_IDLE_TIMEOUT="1").finish(60)
    assert result.code == 1, result.err
    line = result.one_clean_error()
    assert f"[error] migration {REV} (thinks) failed: the server ended its session because the migration ran its " \
           "own code for 3." in line
    assert line.endswith(
        "s after its last statement, longer than idle_in_transaction_session_timeout allows "
        "(MIGRATOR_IDLE_TIMEOUT=1s); its transaction ended with the session, so nothing of it was committed. Raise "
        "MIGRATOR_IDLE_TIMEOUT for a migration that computes this long between statements, then run migrate again")
    assert versions(url) == [BASE]
    assert ran(url, "thinks") == 0


def test_a_migrations_own_connection_failing_is_the_migrations_failure(fault_project: Path, url: str) -> None:
    """Issue 19 item 7: a connection the migration opens itself fails; migrator's session is fine, the migration
    failed (exit 1) and was rolled back, and the line says whose connection it was."""
    add_revision(fault_project, REV, BASE, "op.execute(\"INSERT INTO ran_log (what) VALUES ('own')\")\n"
                                           "sa.create_engine('postgresql+psycopg://nobody@127.0.0.1:1/none').connect()",
                 name="own")
    at_base(url)
    result = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    assert result.code == 1, result.err
    line = result.one_clean_error()
    assert f"[error] migration {REV} (own) failed and was rolled back: OperationalError: " in line
    assert line.endswith("(on a connection the migration opened itself; migrator's session was not affected); "
                         "nothing was applied")
    assert versions(url) == [BASE]
    assert ran(url, "own") == 0
