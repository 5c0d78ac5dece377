"""Progress lines from the server's rows (pure functions, no database).

The rows are shaped as `to_jsonb(view row)` returns them; each view's columns are those of the PostgreSQL
versions named (monitoring docs, "Progress Reporting", 12 to 17). tests/integration/test_progress.py reads real
rows from a real server; these cover the phases and versions a test server here cannot produce on demand.
"""

from __future__ import annotations

from typing import Any

import pytest

from migrator.blocking import Backend
from migrator.progress import Counter, Report, Running, Snapshot, counter, phase_text, report_sql, seconds_text

INDEX_ROW = {"view": "create_index", "command": "CREATE INDEX", "lockers_total": 0, "lockers_done": 0,
             "current_locker_pid": 0, "blocks_total": 0, "blocks_done": 0, "tuples_total": 0, "tuples_done": 0,
             "partitions_total": 0, "partitions_done": 0}
CLUSTER_ROW = {"view": "cluster", "command": "CLUSTER", "cluster_index_relid": 16390, "heap_tuples_scanned": 0,
               "heap_tuples_written": 0, "heap_blks_total": 0, "heap_blks_scanned": 0, "index_rebuild_count": 0}
VACUUM_16 = {"view": "vacuum", "heap_blks_total": 100, "heap_blks_scanned": 100, "heap_blks_vacuumed": 0,
             "index_vacuum_count": 0, "max_dead_tuples": 291, "num_dead_tuples": 12}
VACUUM_17 = {"view": "vacuum", "heap_blks_total": 100, "heap_blks_scanned": 100, "heap_blks_vacuumed": 0,
             "index_vacuum_count": 0, "max_dead_tuple_bytes": 67108864, "dead_tuple_bytes": 0,
             "num_dead_item_ids": 12, "indexes_total": 3, "indexes_processed": 1}
ANALYZE_ROW = {"view": "analyze", "sample_blks_total": 300, "sample_blks_scanned": 30, "ext_stats_total": 2,
               "ext_stats_computed": 0, "child_tables_total": 0, "child_tables_done": 0,
               "current_child_table_relid": 0}


def row(base: dict[str, Any], phase: str, **values: Any) -> dict[str, Any]:
    return {**base, "phase": phase, **values}


@pytest.mark.parametrize(("given", "expected"), [
    (row(INDEX_ROW, "initializing"), None),
    (row(INDEX_ROW, "waiting for writers before build", lockers_total=2, lockers_done=1),
     Counter(1, 2, "lockers")),
    (row(INDEX_ROW, "building index: scanning table", blocks_total=5440, blocks_done=668),
     Counter(668, 5440, "blocks")),
    # PostgreSQL sets the tuples to load as the sort begins: nothing is counted while it sorts.
    (row(INDEX_ROW, "building index: sorting live tuples", tuples_total=1000000), None),
    (row(INDEX_ROW, "building index: loading tuples in tree", tuples_total=1000000, tuples_done=81260),
     Counter(81260, 1000000, "tuples")),
    (row(INDEX_ROW, "building index", blocks_total=90, blocks_done=9), Counter(9, 90, "blocks")),  # GIN: no subphase
    (row(INDEX_ROW, "index validation: scanning index", blocks_total=11670, blocks_done=226),
     Counter(226, 11670, "blocks")),
    (row(INDEX_ROW, "index validation: sorting tuples", tuples_total=5), None),
    (row(INDEX_ROW, "waiting for old snapshots", lockers_total=0), None),
    (row(CLUSTER_ROW, "seq scanning heap", heap_blks_total=50, heap_blks_scanned=5), Counter(5, 50, "blocks")),
    (row(CLUSTER_ROW, "index scanning heap", heap_tuples_scanned=1234), Counter(1234, None, "tuples scanned")),
    (row(CLUSTER_ROW, "sorting tuples", heap_tuples_scanned=1234), None),
    (row(CLUSTER_ROW, "writing new heap", heap_tuples_written=99), Counter(99, None, "tuples written")),
    (row(CLUSTER_ROW, "rebuilding index", index_rebuild_count=1), Counter(1, None, "indexes rebuilt")),
    (row(VACUUM_16, "scanning heap"), Counter(100, 100, "blocks")),
    (row(VACUUM_17, "scanning heap"), Counter(100, 100, "blocks")),
    (row(VACUUM_16, "vacuuming indexes"), None),  # counted from PostgreSQL 17 on
    (row(VACUUM_17, "vacuuming indexes"), Counter(1, 3, "indexes")),
    (row(VACUUM_17, "cleaning up indexes"), Counter(1, 3, "indexes")),
    (row(ANALYZE_ROW, "acquiring sample rows"), Counter(30, 300, "blocks")),
    (row(ANALYZE_ROW, "computing extended statistics"), Counter(0, 2, "extended statistics")),
    (row(ANALYZE_ROW, "computing statistics"), None),
    ({"view": "a view of a later version", "phase": "scanning"}, None),
])
def test_each_phase_shows_the_counter_it_advances(given: dict[str, Any], expected: Counter | None) -> None:
    assert counter(given) == expected


def test_counter_text() -> None:
    assert Counter(12345, 30000, "blocks").text() == "41% (12,345 of 30,000 blocks)"
    assert Counter(30000, 30000, "blocks").text() == "100% (30,000 of 30,000 blocks)"
    assert Counter(1234567, None, "tuples written").text() == "(tuples written: 1,234,567)"


@pytest.mark.parametrize(("seconds", "text"), [(0.5, "0.5s"), (9.94, "9.9s"), (25.4, "25s"), (59.4, "59s"),
                                               (185, "3m05s"), (3599.6, "1h00m"), (3720, "1h02m")])
def test_seconds_text(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text


def test_phase_text_keeps_the_servers_words() -> None:
    assert phase_text("building index: scanning table") == "building index (scanning table)"
    assert phase_text("waiting for writers before build") == "waiting for writers before build"


def scanning(done: int, total: int = 1000) -> dict[str, Any]:
    return row(INDEX_ROW, "building index: scanning table", blocks_total=total, blocks_done=done)


def test_the_estimate_is_the_phases_average_rate_since_first_seen() -> None:
    running = Running("create index i", {}, started=0.0)
    first = scanning(100)
    assert running.estimate(first, counter(first), 10.0) == (None, "no estimate yet (first look at this phase)")
    still = scanning(100)
    assert running.estimate(still, counter(still), 20.0) == (
        None, "no estimate yet (no progress in this phase since the first look)")
    later = scanning(400)
    assert running.estimate(later, counter(later), 30.0) == (40.0, "about 40s left in this phase")  # 15 blocks/s
    loading = row(INDEX_ROW, "building index: loading tuples in tree", tuples_total=10, tuples_done=1)
    assert running.estimate(loading, counter(loading), 31.0) == (None, "no estimate yet (first look at this phase)")
    sorting = row(INDEX_ROW, "building index: sorting live tuples", tuples_total=10)
    assert running.estimate(sorting, counter(sorting), 32.0) == (
        None, "no estimate (PostgreSQL counts nothing in this phase)")
    written = row(CLUSTER_ROW, "writing new heap", heap_tuples_written=5)
    assert running.estimate(written, counter(written), 33.0) == (
        None, "no estimate (PostgreSQL reports no total for this phase)")


def lock(mode: str, relation: str, *, granted: bool = True, relkind: str = "r", waiters: int = 0,
         locktype: str = "relation") -> dict[str, Any]:
    return {"mode": mode, "relation": relation, "granted": granted, "relkind": relkind, "waiters": waiters,
            "locktype": locktype}


def test_held_table_locks_strongest_first_and_only_those_that_stop_others() -> None:
    snapshot = Snapshot("active", False, None, (
        lock("ShareLock", "a"), lock("AccessExclusiveLock", "a", waiters=3), lock("RowExclusiveLock", "b"),
        lock("AccessExclusiveLock", "a_pkey", relkind="i"), lock("ExclusiveLock", "c"), lock("ShareLock", "d"),
        lock("ShareRowExclusiveLock", "e")))
    report = Report(Running("alter table a", {}, started=0.0), snapshot, 12.0, None, "")
    assert report.line() == (
        "... alter table a: running, holds AccessExclusiveLock on a (every query on it waits, 3 sessions waiting for "
        "a lock on it) and ExclusiveLock on c (all but plain reads of it wait) and ShareRowExclusiveLock on e "
        "(writes to it wait) and 1 more, 12s elapsed, no estimate (PostgreSQL reports no progress for this "
        "statement)")
    assert report.fields()["holds"] == ["AccessExclusiveLock on a", "ExclusiveLock on c",
                                        "ShareRowExclusiveLock on e", "ShareLock on d"]


@pytest.mark.parametrize(("waited", "words"), [
    (lock("AccessExclusiveLock", "users", granted=False), "AccessExclusiveLock on users"),
    (lock("ShareLock", None, granted=False, locktype="virtualxid"), "an older transaction to end"),  # type: ignore[arg-type]
    (lock("ShareLock", None, granted=False, locktype="transactionid"),  # type: ignore[arg-type]
     "another transaction to end (it holds a row this statement needs)"),
    (lock("ExclusiveLock", "users", granted=False, locktype="tuple"), "a row lock on users"),
    (lock("ExclusiveLock", None, granted=False, locktype="advisory"), "ExclusiveLock (advisory lock)"),  # type: ignore[arg-type]
])
def test_the_lock_waited_for_in_words(waited: dict[str, Any], words: str) -> None:
    blocker = Backend(42, "app@pod-1", "idle in transaction", "10.0.0.7", 40.0, "select 1")
    snapshot = Snapshot("active", True, None, (waited,), (blocker,))
    report = Report(Running("update users", {"revision": "r1"}, started=0.0), snapshot, 6.0, None, "")
    assert report.line() == (
        f"... update users: waiting for {words}, blocked by pid 42 (app@pod-1 from 10.0.0.7), idle in transaction, "
        "transaction open for 40s, last query: select 1; 6.0s elapsed, no estimate (it waits for other sessions)")
    assert {k: report.fields()[k] for k in ("waiting_for", "blocked_by", "eta", "phase")} == {
        "waiting_for": words, "blocked_by": [42], "eta": None, "phase": None}


def test_a_session_whose_activity_is_not_tracked() -> None:
    report = Report(Running("update users", {}, started=0.0), Snapshot("disabled", False, None, ()), 7.0, None, "")
    assert report.line() == ("... update users: running, 7.0s elapsed, no estimate (track_activities is off for this "
                             "session: the server reports no progress)")


def test_partitions_of_a_partitioned_index() -> None:
    given = row(INDEX_ROW, "building index: scanning table", blocks_total=10, blocks_done=5, partitions_total=8,
                partitions_done=3)
    report = Report(Running("create index i", {}, started=0.0), Snapshot("active", False, given, ()), 30.0, 12.0,
                    "about 12s left in this phase")
    assert report.line() == ("... create index i: building index (scanning table) 50% (5 of 10 blocks), 3 of 8 "
                             "partitions done, 30s elapsed, about 12s left in this phase")
    assert {k: report.fields()[k] for k in ("phase", "done", "total", "unit", "percent", "elapsed", "eta")} == {
        "phase": "building index: scanning table", "done": 5, "total": 10, "unit": "blocks", "percent": 50,
        "elapsed": 30.0, "eta": 12.0}


@pytest.mark.parametrize(("version", "views"), [
    (90500, []),
    (110000, ["pg_stat_progress_vacuum"]),
    (120000, ["pg_stat_progress_create_index", "pg_stat_progress_cluster", "pg_stat_progress_vacuum"]),
    (130000, ["pg_stat_progress_create_index", "pg_stat_progress_cluster", "pg_stat_progress_vacuum",
              "pg_stat_progress_analyze"]),
    (170000, ["pg_stat_progress_create_index", "pg_stat_progress_cluster", "pg_stat_progress_vacuum",
              "pg_stat_progress_analyze"]),
])
def test_only_the_views_a_version_has_are_queried(version: int, views: list[str]) -> None:
    sql = report_sql(version)
    assert [name for name in ("pg_stat_progress_create_index", "pg_stat_progress_cluster", "pg_stat_progress_vacuum",
                              "pg_stat_progress_analyze") if name in sql] == views
