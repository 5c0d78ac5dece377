"""Progress lines of long migration statements, on a real PostgreSQL and a real table.

The table has 150,000 rows made with generate_series. Its index expression, `paced(id, v)`, sleeps 20 ms on every
1,000th row when the session sets `progress_test.pause`: an index build, a table rewrite or a CLUSTER over it
takes about 3 s of wall time whatever the load of the machine, with little CPU, and the server reports its real
progress through it. Lines are asked for after 0.5 s and every 0.5 s (MIGRATOR_PROGRESS_AFTER/_INTERVAL).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator.progress import STOPPING_LOCKS, report_sql
from tests.conftest import add_revision, query, require_debian_postgres
from tests.faults.helpers import LIVE, Migrator, drop_role, owning_role, sleeping_backend, terminate
from tests.faults.proxy import wait_until

REV = "20240101000001"
ROWS = 150_000
PACED = """
CREATE FUNCTION paced(id integer, v text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF id % 1000 = 0 AND current_setting('progress_test.pause', true) <> '' THEN
        PERFORM pg_sleep(current_setting('progress_test.pause')::float8);
    END IF;
    RETURN v;
END $$
"""
PAUSE = "op.execute(\"SELECT set_config('progress_test.pause', '0.02', false)\")\n"
SETTINGS = {"MIGRATOR_PROGRESS_AFTER": "500ms", "MIGRATOR_PROGRESS_INTERVAL": "500ms"}
TIME = r"\d\d:\d\d:\d\d\.\d{3}"
ELAPSED_ETA = (r"(?P<elapsed>[0-9.]+)s elapsed, (?P<eta>about (?:[0-9.]+s|\d+m\d\ds) left in this phase"
               r"|no estimate(?: yet)? \([^)]*\))")
# The phases PostgreSQL 12 to 17 report (monitoring docs, "CREATE INDEX Phases" and "CLUSTER Phases"); B-tree's
# subphases of "building index" included.
INDEX_PHASES = {"initializing", "waiting for writers before build", "building index",
                "building index: scanning table", "building index: sorting live tuples",
                "building index: loading tuples in tree", "waiting for writers before validation",
                "index validation: scanning index", "index validation: sorting tuples",
                "index validation: scanning table", "waiting for old snapshots",
                "waiting for readers before marking dead", "waiting for readers before dropping"}
CLUSTER_PHASES = {"initializing", "seq scanning heap", "index scanning heap", "sorting tuples", "writing new heap",
                  "swapping relation files", "rebuilding index", "performing final cleanup"}


@pytest.fixture
def big(database_url: str) -> str:
    """A database with the table `big` (id, v) and the `paced` function."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE big AS SELECT i AS id, md5(i::text) AS v FROM generate_series(1, {ROWS}) i")
        conn.execute(PACED)
    return database_url


@pytest.fixture
def empty_project(project: Path) -> Path:
    for path in (project / "migrations" / "versions").glob("*.py"):
        path.unlink()
    for path in (project / "seeds").glob("*.py"):
        path.unlink()
    return project


@pytest.fixture(autouse=True)
def _no_migrator_survives() -> Iterator[None]:
    yield
    while LIVE:
        LIVE.pop().kill()


def migrate(project: Path, url: str, **env: str) -> Migrator:
    return Migrator(["migrate"], cwd=project, url=url, env={**SETTINGS, **env})


def progress_lines(err: str, statement: str) -> list[str]:
    return [line for line in err.splitlines() if f"[info] ... {statement}: " in line]


def every_line_matches(project: Path, url: str, statement: str, shape: str) -> list[re.Match[str]]:
    """Migrate (each line's time, level and statement, then `shape`, then the timing); every progress line of
    `statement` matches: their matches."""
    result = migrate(project, url, MIGRATOR_DDL_LOCK_TIMEOUT="1s").finish(60)
    assert result.code == 0, result.err
    lines = progress_lines(result.err, statement)
    pattern = re.compile(rf"{TIME} \[info\] \.\.\. {re.escape(statement)}: {shape}, {ELAPSED_ETA}")
    seen = [pattern.fullmatch(line) for line in lines]
    assert lines, result.err
    assert all(seen), "\n".join(line for line, match in zip(lines, seen, strict=True) if not match)
    return [m for m in seen if m is not None]


def console_phase(phase: str) -> str:
    """The server's `building index: scanning table` as the console line shows it."""
    head, sep, sub = phase.partition(": ")
    return f"{head} ({sub})" if sep else phase


def server_phase(shown: str) -> str:
    match = re.fullmatch(r"(.*?) \((.*)\)", shown)
    return f"{match[1]}: {match[2]}" if match else shown


def test_an_index_build_reports_the_servers_phases_and_rising_percent(empty_project: Path, big: str) -> None:
    add_revision(empty_project, REV, None, PAUSE + 'op.execute("CREATE INDEX big_paced_index ON big (paced(id, v))")',
                 name="index")
    matches = every_line_matches(empty_project, big, "create index big_paced_index",
                                 r"(?P<phase>[a-z :()]+?)(?: (?P<percent>\d+)% \((?P<done>[\d,]+) of "
                                 r"(?P<total>[\d,]+) (?P<unit>blocks|tuples)\))?, holds ShareLock on big \(writes "
                                 r"to it wait\)")
    lines = [m.string for m in matches]
    assert {server_phase(m["phase"]) for m in matches} <= INDEX_PHASES, lines
    elapsed = [float(m["elapsed"]) for m in matches]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.5, lines
    scanning = [m for m in matches if m["phase"] == "building index (scanning table)"]
    assert len(scanning) >= 2, lines  # the scan sleeps 3 s in all; a line comes every 0.5 to 1 s
    percents = [int(m["percent"]) for m in scanning]
    assert percents == sorted(set(percents)), lines  # rises from line to line
    assert all(m["unit"] == "blocks" and int(m["done"].replace(",", "")) <= int(m["total"].replace(",", ""))
               for m in scanning), lines
    assert scanning[0]["eta"] == "no estimate yet (first look at this phase)", lines
    assert all(m["eta"].startswith("about ") for m in scanning[1:]), lines


def json_progress(err: str) -> list[dict[str, Any]]:
    return [record for record in map(json.loads, err.splitlines()) if "phase" in record]


def test_a_concurrent_build_waiting_for_a_writer_then_building_as_json(empty_project: Path, big: str) -> None:
    add_revision(empty_project, REV, None, "with op.get_context().autocommit_block():\n    " + PAUSE +
                 '    op.execute("CREATE INDEX CONCURRENTLY big_paced_index ON big (paced(id, v))")',
                 name="index", module="rerunnable = True")
    with psycopg.connect(big) as writer:
        writer.execute("INSERT INTO big VALUES (0, 'a writer')")  # its transaction stays open
        run = migrate(empty_project, big, MIGRATOR_LOG_FORMAT="json")
        run.wait_for_line('"phase": "waiting for writers before build"')
        writer.commit()
        result = run.finish(60)
        writer_pid = writer.info.backend_pid
    assert result.code == 0, result.err
    records = json_progress(result.err)
    waiting = records[0]
    assert {k: waiting[k] for k in ("revision", "statement", "command", "phase", "done", "total", "unit",
                                    "percent", "eta", "blocked_by")} == {
        "revision": REV, "statement": "create index big_paced_index", "command": "CREATE INDEX CONCURRENTLY",
        "phase": "waiting for writers before build", "done": 0, "total": 1, "unit": "lockers", "percent": 0,
        "eta": None, "blocked_by": [writer_pid]}
    assert waiting["event"].startswith("... create index big_paced_index: waiting for writers before build 0% "
                                       f"(0 of 1 lockers), blocked by pid {writer_pid} "), waiting["event"]
    assert {r["phase"] for r in records} <= INDEX_PHASES, records
    for record in records:
        assert record["event"].startswith(f"... create index big_paced_index: {console_phase(record['phase'])}")
        assert (record["command"], record["statement"], record["revision"]) == (
            "CREATE INDEX CONCURRENTLY", "create index big_paced_index", REV)
        percent = record["done"] * 100 // record["total"] if record["total"] else None
        assert record["percent"] == percent, record  # no percentage without a total
        assert record["eta"] is None or record["eta"] >= 0, record
    scanning = [r for r in records if r["phase"] == "building index: scanning table"]
    assert len(scanning) >= 2, records
    assert [r["unit"] for r in scanning] == ["blocks"] * len(scanning), records
    assert [r["percent"] for r in scanning] == sorted({r["percent"] for r in scanning}), records
    assert scanning[0]["eta"] is None and all(isinstance(r["eta"], float) for r in scanning[1:]), records
    elapsed = [r["elapsed"] for r in records]
    assert elapsed == sorted(elapsed), records


def count_rows(url: str) -> None:
    with psycopg.connect(url, options="-c statement_timeout=60s") as conn:
        conn.execute("SELECT count(*) FROM big")


def test_a_table_rewrite_waits_for_its_lock_then_holds_it(empty_project: Path, big: str) -> None:
    add_revision(empty_project, REV, None, PAUSE + 'op.execute("ALTER TABLE big ALTER COLUMN v TYPE text '
                 'USING paced(id, v)")', name="rewrite")
    statement = "alter table big alter column v type text"
    with psycopg.connect(big) as reader:
        reader.execute("SELECT count(*) FROM big WHERE id = 1")  # its AccessShareLock stays until commit
        run = migrate(empty_project, big, MIGRATOR_DDL_LOCK_TIMEOUT="30s")
        run.wait_for_line(f"... {statement}: waiting for AccessExclusiveLock on big")
        # A query that comes now queues behind the migration's lock.
        queued = threading.Thread(target=count_rows, args=(big,))
        queued.start()
        wait_until(lambda: query(big, "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'big'::regclass "
                                      "AND mode = 'AccessShareLock'"), 30, "the query to queue")
        reader.commit()
        result = run.finish(60)
        reader_pid = reader.info.backend_pid
    queued.join(60)
    assert result.code == 0, result.err
    lines = progress_lines(result.err, statement)
    assert re.fullmatch(rf"{TIME} \[info\] \.\.\. {statement}: waiting for AccessExclusiveLock on big, blocked by "
                        rf"pid {reader_pid} \([^)]*\), idle in transaction, transaction open for \d+s, last query: "
                        r"SELECT count\(\*\) FROM big WHERE id = 1; [0-9.]+s elapsed, no estimate \(it waits for "
                        r"other sessions\)", lines[0]), lines
    rewriting = lines[1:]
    assert rewriting, result.err
    running = re.compile(rf"{TIME} \[info\] \.\.\. {statement}: running, holds AccessExclusiveLock on big \(every "
                         r"query on it waits, 1 session waiting for a lock on it\), [0-9.]+s elapsed, no estimate "
                         r"\(PostgreSQL reports no progress for this statement\)")
    assert all(running.fullmatch(line) for line in rewriting), rewriting


def test_cluster_reports_the_cluster_views_phases(empty_project: Path, big: str) -> None:
    query(big, "CREATE INDEX big_paced_index ON big (paced(id, v))")  # no pause set: quick
    query(big, "CREATE INDEX big_id_index ON big (id)")
    add_revision(empty_project, REV, None, PAUSE + 'op.execute("CLUSTER big USING big_id_index")', name="cluster")
    matches = every_line_matches(empty_project, big, "cluster big using big_id_index",
                                 r"(?P<phase>[a-z ]+)(?: \((?:[a-z ]+): [\d,]+\)| \d+% \([\d,]+ of [\d,]+ blocks\))?"
                                 r", holds AccessExclusiveLock on big \(every query on it waits\)")
    phases = [m["phase"] for m in matches]
    assert set(phases) <= CLUSTER_PHASES and "rebuilding index" in phases, [m.string for m in matches]


@pytest.mark.parametrize("server", ["pg_server", "tcp_server"])
def test_the_report_query_of_every_version_runs_on_each_server_here(server: str,
                                                                    request: pytest.FixtureRequest) -> None:
    """The query variants for servers with fewer views (before 12, 13) run too: PostgreSQL 16 (embedded) and
    15 (Debian's) are the versions this machine has; to_jsonb keeps the views' columns out of the SQL."""
    if server == "tcp_server":
        require_debian_postgres()
    found = request.getfixturevalue(server)
    url = found.url_for(found.create_database())
    try:
        with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as monitor:
            monitor.execute("CREATE TABLE held (id integer)")
            holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
            pid = holder.info.backend_pid
            for version in (90600, 120000, 130000, monitor.info.server_version):
                state, waiting, progress, locks = monitor.execute(
                    report_sql(version), {"pid": pid, "modes": list(STOPPING_LOCKS)}).fetchone()  # type: ignore[misc]
                assert (state, waiting, progress) == ("idle in transaction", False, None)
                assert [(lock["mode"], lock["relation"], lock["relkind"], lock["waiters"]) for lock in locks] == [
                    ("AccessExclusiveLock", "held", "r", 0)]
    finally:
        found.drop_database(url.rsplit("/", 1)[1].split("?")[0])


UNWATCHED = "[debug] no progress lines for long statements: no monitoring connection (progress is read on it)"


def said_unwatched(err: str) -> int:
    """The line's index in `err`; it is there exactly once."""
    lines = err.splitlines()
    said = [i for i, line in enumerate(lines) if "no progress lines" in line]
    assert [lines[i].split(" ", 1)[1] for i in said] == [UNWATCHED], err
    return said[0]


def test_without_a_monitoring_connection_no_progress_lines_and_it_is_said_once(empty_project: Path,
                                                                               database_url: str) -> None:
    role = owning_role(database_url, connection_limit=1)  # the migration session takes the one slot
    add_revision(empty_project, REV, None, 'op.execute("SELECT pg_sleep(2.5)")', name="long")
    try:
        result = migrate(empty_project, role.url, MIGRATOR_LOG_LEVEL="debug", MIGRATOR_STALL_TIMEOUT="1s").finish(60)
    finally:
        drop_role(database_url, role)
    assert result.code == 0, result.err
    said_unwatched(result.err)
    assert [line for line in result.err.splitlines() if "[info] ... " in line] == [], result.err


def test_once_the_monitoring_connection_is_refused_no_more_progress_lines_and_it_is_said_once(
        empty_project: Path, database_url: str) -> None:
    """The role's connections are all taken (the migration session and the monitor's); the monitor's is ended
    and a new one refused: progress is read on it, so the lines stop, and the log says so once at debug."""
    role = owning_role(database_url, connection_limit=2)
    add_revision(empty_project, REV, None, 'op.execute("SELECT pg_sleep(6)")', name="long")
    try:
        run = migrate(empty_project, role.url, MIGRATOR_LOG_LEVEL="debug")
        session = sleeping_backend(database_url)
        run.wait_for_line("[info] ... ")
        query(database_url, f"ALTER ROLE {role.name} CONNECTION LIMIT 1")
        [(monitor,)] = query(database_url, "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> %s",
                             role.name, session.pid)
        terminate(database_url, int(str(monitor)))
        result = run.finish(60)
    finally:
        drop_role(database_url, role)
    assert result.code == 0, result.err
    after = result.err.splitlines()[said_unwatched(result.err):]
    assert [line for line in after if "[info] ... " in line] == [], result.err
