"""Validation's own writes under faults: a signal, or a lost session, while the checksums of applied revisions
are being recorded (first sight) or accepted, is reported as itself (exit 143, exit 3), never as an unexpected
error of migrator's."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import query, run_migrator
from tests.faults.helpers import LIVE, MARGIN, SIGNAL_BOUND, Migrator
from tests.faults.proxy import wait_until


@pytest.fixture(autouse=True)
def _no_migrator_survives() -> Iterator[None]:
    yield
    while LIVE:
        LIVE.pop().kill()


def checksums_forgotten(project: Path, url: str) -> None:
    """Migrated, then its history as a migrator that predates checksums left it: the next start records them."""
    assert run_migrator(["migrate"], cwd=project, database_url=url).returncode == 0
    query(url, "UPDATE migrator_history SET checksum = NULL, file_hash = NULL")


def recording_waits(url: str) -> bool:
    """The first-sight INSERT into the history waits for the table lock the test holds."""
    return query(url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                      "'INSERT INTO %%migrator_history%%'") == [(1,)]


def test_sigterm_while_first_sight_checksums_are_recorded(project: Path, database_url: str,
                                                          tmp_path: Path) -> None:
    checksums_forgotten(project, database_url)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE migrator_history IN SHARE MODE")  # its INSERT waits
        run = Migrator(["migrate"], cwd=project, url=database_url, termination=tmp_path / "termination")
        wait_until(lambda: recording_waits(database_url), 30, "the first-sight INSERT waiting")
        result = run.finish(SIGNAL_BOUND + MARGIN, since=run.signal(signal.SIGTERM))
    assert result.code == 143, result.err
    line = result.one_clean_error()
    assert line.endswith("[error] interrupted by SIGTERM; no migration or seed was running"), line
    assert query(database_url, "SELECT count(*) FROM migrator_history WHERE checksum IS NOT NULL") == [(0,)]


def test_the_session_terminated_while_first_sight_checksums_are_recorded(project: Path, database_url: str) -> None:
    checksums_forgotten(project, database_url)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE migrator_history IN SHARE MODE")
        run = Migrator(["migrate"], cwd=project, url=database_url)
        wait_until(lambda: recording_waits(database_url), 30, "the first-sight INSERT waiting")
        query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'INSERT INTO %%migrator_history%%'")
        result = run.finish(MARGIN + 2)
    assert result.code == 3, result.err
    line = result.one_clean_error()
    assert "[error] lost the connection to the server while recording the checksums of applied revisions: " \
           "terminating connection due to administrator command" in line, line
