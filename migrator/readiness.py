"""`migrator wait`: the app pods' init container polls until the database is at the head this image knows.

It never locks and never migrates. Every wait is bounded by one deadline, also a connection attempt or a
query on a server that stopped answering.
"""

from __future__ import annotations

import time

import psycopg

from migrator import database, scripts, version_skew
from migrator.config import Settings
from migrator.database import Connection
from migrator.errors import DatabaseUnreachable, LockTimeout, NotAtHead
from migrator.logs import get_logger
from migrator.scripts import Known
from migrator.shutdown import SHUTDOWN
from migrator.targets import Outcome, Target, state

WAIT_LOG_EVERY = 5.0


def wait(target: Target, settings: Settings, timeout: float, *, allow_newer: bool = False,
         interval: float = 2.0, deadline: float | None = None) -> Outcome:
    """Poll until the database is at the head this image knows; never locks, never migrates.

    For app pods' init containers: the app starts only against the schema it was built for. A database at a
    revision this image does not know means a newer release is migrating or has migrated; by default that
    is waited out too (this pod's code may not work with the newer schema); `allow_newer` accepts it when
    the history proves it descends from this image's heads (expand/contract migrations keep old code
    working). A migration left part-way is waited out (an operator decides). NotAtHead after `timeout`, or at
    `deadline` (time.monotonic) when several databases share one timeout. Every wait is bounded by the
    deadline, also a connection attempt or a query on a server that stopped answering.
    """
    started = time.monotonic()
    known = scripts.known_revisions(target.repo)
    deadline = deadline if deadline is not None else started + timeout
    conn: Connection | None = None
    last_log = -WAIT_LOG_EVERY
    state_text = "no answer from the database yet"
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAtHead(f"{target.db.description} not ready after {timeout:g}s: {state_text}")
            try:
                if conn is None:
                    conn = database.connect(target.db, settings.timeouts, autocommit=True, purpose="wait",
                                            connect_timeout=min(settings.timeouts.connect, remaining))
                ready, state_text, current = poll(conn, target, known, allow_newer,
                                                   min(settings.timeouts.stall, remaining))
            except DatabaseUnreachable as exc:
                if time.monotonic() < deadline:
                    raise  # refused for good, or unreachable for MIGRATOR_CONNECT_TIMEOUT: exit 3
                state_text = f"database unreachable: {getattr(exc, 'reason', exc)}"
                continue
            except psycopg.OperationalError as exc:  # lost, or no answer within the stall timeout: reconnect
                state_text = str(database.lost(conn, exc, "polling the version table"))
                if conn is not None:
                    conn.close()
                    conn = None
                continue
            if ready:
                get_logger().info(f"Schema ready: {target.db.description} {state_text}", repo=target.repo.name,
                                  revision=list(current), waited=round(time.monotonic() - started, 1))
                return Outcome(target.repo.name, "wait", current, current, [], time.monotonic() - started)
            if conn is not None and conn.pooled:  # a session pool's server connection is not held between polls
                conn.close()
                conn = None
            now = time.monotonic()
            if now - last_log >= WAIT_LOG_EVERY:
                get_logger().info(f"Waiting for {target.db.description}: {state_text}", repo=target.repo.name)
                last_log = now
            SHUTDOWN.sleep(min(interval, deadline - now))
    finally:
        if conn is not None:
            conn.close()


def poll(conn: Connection, target: Target, known: Known, allow_newer: bool,
         limit: float) -> tuple[bool, str, tuple[str, ...]]:
    """One poll of `target` within `limit` seconds: whether it is ready, in words, and its current revisions."""
    conn.wait_limit = limit
    conn.doing = "waiting for the schema"
    conn.lock_wait = 0  # a locked version table is a state to report and poll again, not a wait of its own
    conn.lock_attempt = min(conn.lock_attempt, limit / 2)  # answered (lock_timeout) before the poll's deadline
    try:
        return _readiness(conn, target, known, allow_newer)
    except LockTimeout as exc:
        return False, str(exc), ()


def _readiness(conn: Connection, target: Target, known: Known,
               allow_newer: bool) -> tuple[bool, str, tuple[str, ...]]:
    found = state(conn, target)
    current = found.versions
    heads_text = ", ".join(sorted(known.heads))
    if found.partial:
        return False, "a migration was left part-way (see migrator status); waiting for an operator", current
    unknown = known.unknown(current)
    if unknown:
        newer = f"at {', '.join(unknown)}, which this image does not know (a newer release?)"
        if not allow_newer:
            return False, newer + f"; waiting for {heads_text} (--allow-newer accepts a proven descendant)", current
        proven, why = version_skew.descends(conn, target, current, known)
        if proven:
            return True, f"{newer}; accepted (--allow-newer): {why}", current
        return False, f"{newer}; not accepted: {why}", current
    if known.at_head(current):
        return True, f"at {heads_text}", current
    return False, f"at {', '.join(current) or 'base'}, waiting for {heads_text}", current
