"""One finish: the run's outcome is written once (termination message first, then its line), a signal during it
changes nothing, and the bound after a signal ends the process without a second, contradictory outcome, also
while standard error is blocked (a log collector that stopped reading) or closed (a reader that went away).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import (
    BASE,
    MARGIN,
    SIGNAL_BOUND,
    assert_nothing_left,
    at_base,
    sleeping_backend,
    versions,
)
from tests.faults.proxy import wait_until
from tests.shutdown.pipes import PipedMigrator

SLOW = "20240101000001"
SLOW_MIGRATION = 'op.execute("SELECT pg_sleep(60)")'


def slow_run_with_blocked_stderr(project: Path, url: str, tmp_path: Path) -> tuple[PipedMigrator, int]:
    """A migrate in its slow migration, its stderr blocked from now on; the migration's backend pid."""
    add_revision(project, SLOW, BASE, SLOW_MIGRATION, name="slow")
    at_base(url)
    run = PipedMigrator(["migrate"], cwd=project, url=url, termination=tmp_path / "termination")
    run.wait_for_line(f"== Running {SLOW}")
    backend = sleeping_backend(url)
    run.block()
    return run, backend.pid


def sigterm(run: PipedMigrator) -> str:
    """SIGTERM; the process must end within the bound (its stderr still blocked); what it wrote to stderr."""
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    run.finish(SIGNAL_BOUND + MARGIN, since=sent)
    return run.drain()


def test_sigterm_while_stderr_is_blocked_ends_the_run_within_the_bound(fault_project: Path, url: str,
                                                                       tmp_path: Path) -> None:
    """Issue 19 item 5, issue 20 hazard 2: the outcome is known (rolled back, confirmed) and written to the
    termination log; its log line waits for a stderr nobody reads; the bound ends the process with that outcome,
    without taking the logger's lock, without a second line and without overwriting the termination message."""
    run, _ = slow_run_with_blocked_stderr(fault_project, url, tmp_path)
    err = sigterm(run)
    assert run.proc.returncode == 143, err
    assert run.termination_message() == (
        f"migrate failed (exit 143): interrupted by SIGTERM during {SLOW} (slow): its running statement was "
        "cancelled and its transaction rolled back (confirmed by the server); run it again to resume")
    assert "did not finish stopping" not in err, err
    assert "Traceback" not in err, err
    assert_nothing_left(url)
    assert versions(url) == [BASE]


def test_sigterm_while_a_failure_is_being_reported(fault_project: Path, url: str, tmp_path: Path) -> None:
    """Issue 20 hazard 1: the migration failed and the run is writing its failure (here: to a blocked stderr)
    when SIGTERM arrives. The failure stays the outcome: exit 1, its termination message, no traceback."""
    run, pid = slow_run_with_blocked_stderr(fault_project, url, tmp_path)
    query(url, "SELECT pg_cancel_backend(%s)", pid)  # the migration fails: QueryCanceled
    wait_until(run.blocked_writing_stderr, 30, "the migrator to be writing its failure to the blocked stderr")
    err = sigterm(run)
    assert run.proc.returncode == 1, err
    assert run.termination_message() == (
        f"migrate failed (exit 1): migration {SLOW} (slow) failed and was rolled back: QueryCanceled: canceling "
        "statement due to user request; nothing was applied")
    assert "Traceback" not in err, err
    assert "please report" not in err, err
    assert_nothing_left(url)
    assert versions(url) == [BASE]


STEPS = ("20240101000001", "20240101000002", "20240101000003")


def test_a_log_reader_that_goes_away_does_not_stop_the_run(fault_project: Path, url: str, tmp_path: Path) -> None:
    """Issue 19 item 5: `migrator migrate 2>&1 | head -3`. The log stream closes while the first migration runs;
    the run goes on without its log, applies every migration, and says so in the termination message."""
    at_base(url)
    add_revision(fault_project, STEPS[0], BASE, 'op.execute("SELECT pg_sleep(1)")\nop.create_table("t1")',
                 name="first")
    add_revision(fault_project, STEPS[1], STEPS[0], 'op.create_table("t2")', name="second")
    add_revision(fault_project, STEPS[2], STEPS[1], 'op.create_table("t3")', name="third")
    run = PipedMigrator(["migrate"], cwd=fault_project, url=url, termination=tmp_path / "termination")
    run.wait_for_line(f"== Running {STEPS[0]}")
    sleeping_backend(url)
    run.close_reader()
    assert run.proc.wait(60) == 0
    assert versions(url) == [STEPS[2]]
    assert run.termination_message().startswith(
        f"migrate default: 3 applied ({', '.join(STEPS)}), {BASE} -> {STEPS[2]} in "), run.termination_message()
    assert_nothing_left(url)
