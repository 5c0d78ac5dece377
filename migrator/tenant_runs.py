"""One command over every tenant this process takes (migrator.tenants): each in turn, a tenant's failure never
stopping the others, and a summary at the end.

Each tenant's own lines are the command's usual ones, naming the tenant (`Migrated app@db/app schema acme to
...`; in JSON every line of the tenant carries `tenant`); a failed tenant gets one error line with its own
exit code and reason as it fails, and again at the end, before the summary line. Any failure ends the run with
exit 7 (TenantsFailed) once every other tenant was done. Only what no tenant can get past stops the run early:
a signal, or a server that no longer accepts connections (the tenants left are counted as not reached).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import psycopg
import structlog

from migrator import database, readiness, scripts, tenants
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection
from migrator.errors import ConfigError, DatabaseUnreachable, Interrupted, MigratorError, NotAtHead, TenantsFailed
from migrator.logs import get_logger
from migrator.scripts import Known
from migrator.shutdown import SHUTDOWN
from migrator.targets import Outcome, SharedConnection, Target

T = TypeVar("T")
SHOWN = 10  # failed tenants named in the summary line (each has a line of its own above it)
# The order of a summary's counts: what changed first, then what was found done.
CATEGORIES = ("migrated", "seeded", "already up", "unchanged", "newer accepted", "at head", "not at head")


def _rank(category: str) -> int:
    return CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)


@dataclass
class Run(Generic[T]):
    """One command over the tenants of one repo: what each tenant gave, or why it failed."""

    target: Target
    action: str
    listed: int
    done: dict[str, T] = field(default_factory=dict)
    failed: dict[str, MigratorError] = field(default_factory=dict)
    not_reached: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def counts(self, classify: Callable[[T], str]) -> str:
        counted = Counter(classify(result) for result in self.done.values())
        parts = [f"{counted[what]} {what}" for what in sorted(counted, key=_rank)]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.not_reached:
            parts.append(f"{len(self.not_reached)} not reached")
        return ", ".join(parts) or "nothing to do"

    def scope(self) -> str:
        """`500 tenants (schemas)`, or `125 of 500 tenants (schemas)` for a process that takes its share."""
        kind = self.target.repo.tenants.describe() if self.target.repo.tenants else "tenants"
        taken = len(self.done) + len(self.failed) + len(self.not_reached)
        if taken == self.listed:
            return f"{self.listed} tenants ({kind})"
        return f"{taken} of {self.listed} tenants ({kind})"


def each(target: Target, settings: Settings, work: Callable[[Target], T], action: str) -> Run[T]:
    """Run `work` on each tenant of `target`'s repo that this process takes, in name order."""
    # Schema tenants live in one database: one connection serves them all in turn (SharedConnection).
    shared = SharedConnection() if target.repo.tenants and target.repo.tenants.kind == "schema" else None
    try:
        return _each(replace(target, shared=shared), settings, work, action)
    finally:
        if shared is not None:
            shared.close()


def _each(target: Target, settings: Settings, work: Callable[[Target], T], action: str) -> Run[T]:
    names = tenants.listed(target, settings)
    mine = tenants.share(names, settings)
    run: Run[T] = Run(target, action, len(names))
    shard = f", {settings.shard.describe()}" if settings.shard.count > 1 else ""
    get_logger().info(f"{action}: {len(mine)} of {len(names)} tenants of repo {target.repo.name}{shard}",
                      repo=target.repo.name, tenants=len(mine), listed=len(names))
    for position, name in enumerate(mine):
        with structlog.contextvars.bound_contextvars(tenant=name):
            try:
                SHUTDOWN.check()  # a signal that came between two tenants stops the run before the next one
                run.done[name] = work(tenants.target_for(target, name, target.shared))
            except KeyboardInterrupt as exc:
                get_logger().info(f"{action} interrupted at tenant {name}: {run.counts(lambda _: 'done')} before it")
                if isinstance(exc, Interrupted):
                    _name_tenant(exc, run, name, len(mine) - position - 1)
                raise
            except Exception as exc:
                error = exc if isinstance(exc, MigratorError) else database.unhandled(exc)
                if error is None:
                    raise  # a bug: the CLI says so, with where
                run.failed[name] = error
                get_logger().error(f"tenant {name} failed (exit {error.exit_code}): {error}",
                                   exit_code=error.exit_code)
                if _server_gone(error, target):
                    run.not_reached = mine[position + 1:]
                    break
    return run


def _name_tenant(exc: Interrupted, run: Run[T], name: str, left: int) -> None:
    """The termination message of a run stopped by a signal names the tenant it stopped at and what the run
    had done: the tenants' own lines may be far above it, or gone with the pod."""
    what = exc.detail or f"interrupted by {exc.signal_name}; no migration or seed was running"
    failed = listing([f"{failed} (exit {error.exit_code})" for failed, error in run.failed.items()])
    exc.detail = (f"tenant {name}: {what}; before it {len(run.done)} done"
                  f"{f', {len(run.failed)} failed: {failed}' if run.failed else ''}; {left} not reached")


def _server_gone(error: MigratorError, target: Target) -> bool:
    """No tenant can get past this one's failure: the server did not accept a connection for
    MIGRATOR_CONNECT_TIMEOUT, or (schema tenants: one database, one login) refused it."""
    if not isinstance(error, DatabaseUnreachable):
        return False
    timed_out = hasattr(error, "no_answer")  # set only when the connect timeout ran out
    return timed_out or (target.repo.tenants is not None and target.repo.tenants.kind == "schema")


def finish(run: Run[T], classify: Callable[[T], str]) -> Outcome:
    """The run's end: each failed tenant's line again and the summary; TenantsFailed (exit 7) when any failed
    or was not reached, else the Outcome whose summary the termination message carries."""
    log = get_logger()
    repo = run.target.repo.name
    took = time.monotonic() - run.started
    summary = f"{run.scope()}: {run.counts(classify)} in {took:.1f}s"
    if not run.failed and not run.not_reached:
        log.info(f"Tenants of repo {repo} done: {summary}", repo=repo)
        return Outcome(repo, run.action, seconds=took, note=summary)
    for name, error in run.failed.items():
        log.error(f"tenant {name}: exit {error.exit_code}: {error}", tenant=name, exit_code=error.exit_code)
    if run.not_reached:
        log.error(f"not reached after the server stopped accepting connections: {listing(run.not_reached)}")
    failed = listing([f"{name} (exit {error.exit_code})" for name, error in run.failed.items()])
    raise TenantsFailed(f"{run.action} {repo}: {summary}; failed: {failed or 'none'}")


def listing(names: list[str]) -> str:
    """The first SHOWN of `names`, and how many more."""
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def fan_out(settings: Settings, work: Callable[[Target], Outcome], action: str,
            classify: Callable[[Outcome], str]) -> Callable[[Target], Outcome]:
    """`work` for one target; on a repo with tenants, on each of its tenants (unless --tenant chose one), with
    the summary."""
    def run(target: Target) -> Outcome:
        if target.repo.tenants is None or target.tenant is not None:
            return work(target)
        return finish(each(target, settings, work, action), classify)
    return run


def migrated(outcome: Outcome) -> str:
    if outcome.note:  # a newer revision, accepted with --allow-newer
        return "newer accepted"
    return "migrated" if outcome.changed else "already up"


def seeded(outcome: Outcome) -> str:
    return "seeded" if outcome.changed else "unchanged"


# --- wait: every tenant at head -----------------------------------------------------------------------

def wait_all(target: Target, settings: Settings, *, timeout: float, allow_newer: bool, interval: float,
             deadline: float) -> Outcome:
    """Poll until every tenant of `target`'s repo that this process takes is at the head this image knows
    (migrator.readiness, tenant by tenant); never locks, never migrates. The tenants are listed once the
    query answers (a repo migrated before this one may still be creating its table); the log says every 5 s
    how many are behind. NotAtHead (exit 5) at `deadline`, naming them."""
    started = time.monotonic()
    waiting = Waiting(target, settings, scripts.known_revisions(target.repo), allow_newer)
    last_log = -readiness.WAIT_LOG_EVERY
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAtHead(f"repo {target.repo.name}: not ready after {timeout:g}s: {waiting.describe()}")
            try:
                waiting.poll(deadline)
            except DatabaseUnreachable as exc:
                if time.monotonic() < deadline:
                    raise  # refused for good, or unreachable for MIGRATOR_CONNECT_TIMEOUT: exit 3, as readiness.wait
                waiting.why = f"database unreachable ({exc})"
                continue
            if waiting.ready():
                assert waiting.names is not None
                get_logger().info(f"Schema ready: {len(waiting.names)} tenants of repo {target.repo.name} at "
                                  f"{', '.join(sorted(waiting.known.heads))}", repo=target.repo.name,
                                  waited=round(time.monotonic() - started, 1))
                return Outcome(target.repo.name, "wait", seconds=time.monotonic() - started,
                               note=f"{len(waiting.names)} tenants ready after {time.monotonic() - started:.1f}s")
            if waiting.conn is not None and waiting.conn.pooled:  # a session pool's server connection is not
                waiting.close()                                   # held between polls (as readiness.wait)
            now = time.monotonic()
            if now - last_log >= readiness.WAIT_LOG_EVERY:
                get_logger().info(f"Waiting for repo {target.repo.name}: {waiting.describe()}", repo=target.repo.name,
                                  behind=len(waiting.behind))
                last_log = now
            SHUTDOWN.sleep(min(interval, deadline - now))
    finally:
        waiting.close()


@dataclass
class Waiting:
    """What `wait` knows so far: the tenants (once listed), and those not ready yet with why."""

    target: Target
    settings: Settings
    known: Known
    allow_newer: bool
    names: list[str] | None = None
    behind: dict[str, str] = field(default_factory=dict)  # tenant -> its state, in words
    why: str = "no answer from the database yet"  # before the tenants are listed
    conn: Connection | None = None  # the repo's database: schema tenants' and the tenants query's

    def ready(self) -> bool:
        return self.names is not None and not self.behind

    def describe(self) -> str:
        if self.names is None:
            return f"tenants not listed yet: {self.why}"
        shown = "; ".join(f"{name} {why}" for name, why in list(self.behind.items())[:SHOWN])
        more = f"; and {len(self.behind) - SHOWN} more" if len(self.behind) > SHOWN else ""
        return f"{len(self.behind)} of {len(self.names)} tenants behind: {shown}{more}"

    def poll(self, deadline: float) -> None:
        """One round: list the tenants if not done yet, then look again at each one not ready."""
        if self.names is None:
            self._list(deadline)
            if self.names is None:
                return
        for name in list(self.behind):
            if time.monotonic() >= deadline:
                return
            ready, why = self._probe(tenants.target_for(self.target, name), deadline)
            if ready:
                del self.behind[name]
            else:
                self.behind[name] = why

    def _list(self, deadline: float) -> None:
        try:
            conn = self._connection(self.target.db, deadline)
            names = tenants.share(list(tenants.query_or_list(conn, self.target)), self.settings)
        except ConfigError as exc:  # the query fails: its table may not exist yet
            self.why = str(exc)
            return
        except psycopg.OperationalError as exc:
            self.why = str(database.lost(self.conn, exc, "listing the tenants"))
            self._drop()
            return
        self.names = names
        self.behind = dict.fromkeys(names, "not looked at yet")

    def _probe(self, target: Target, deadline: float) -> tuple[bool, str]:
        """One tenant's readiness; a lost connection is a state to wait out, as in readiness.wait."""
        shared = target.search_path is not None  # schema tenants share the repo's database connection
        try:
            conn = self._connection(target.db, deadline) if shared else self._own(target.db, deadline)
            try:
                limit = min(self.settings.timeouts.stall, max(deadline - time.monotonic(), 0.1))
                ready, why, _ = readiness.poll(conn, target, self.known, self.allow_newer, limit)
            finally:
                if not shared:
                    conn.close()
        except psycopg.OperationalError as exc:
            self._drop()
            return False, str(database.lost(None, exc, "polling the version table"))
        return ready, why

    def _connection(self, db: DatabaseConfig, deadline: float) -> Connection:
        if self.conn is None:
            self.conn = self._own(db, deadline)
        self.conn.wait_limit = min(self.settings.timeouts.stall, max(deadline - time.monotonic(), 0.1))
        return self.conn

    def _own(self, db: DatabaseConfig, deadline: float) -> Connection:
        """A connection within what is left of the wait: DatabaseUnreachable (exit 3) when refused for good or
        unreachable for MIGRATOR_CONNECT_TIMEOUT, as readiness.wait."""
        remaining = max(deadline - time.monotonic(), 0.1)
        conn = database.connect(db, self.settings.timeouts, autocommit=True, purpose="wait",
                                connect_timeout=min(self.settings.timeouts.connect, remaining))
        conn.wait_limit = min(self.settings.timeouts.stall, remaining)
        conn.doing = "waiting for the schema"
        return conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self._drop()
