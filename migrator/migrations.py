"""The run loop: one upgrade or downgrade of one repo on the locked migration session.

Alembic runs the project's env.py on migrator's connection (migrator.alembic_internals); this module feeds it
the plan's steps one at a time, each in its own transaction (Alembic's transaction_per_migration), started on
a reset session whose lock is proven (migrator.session), its statements described and logged
(migrator.statement_hooks), and recorded in the migration history in the transaction that stamps its version.
A migration that hit lock_timeout and left nothing behind is retried with backoff.

A migration that commits part of itself (Alembic's autocommit_block, an explicit COMMIT) is non-transactional
from that point: the history records it as running first, it is never retried automatically, it may not leave
an INVALID index behind, and when it fails the message lists what committed (migrator.failures). The next run
decides: a revision that declares `rerunnable = True` runs again, any other stops with exit 6 until
`migrator resolve` (migrator.partway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory

from migrator import alembic_internals as internals
from migrator import partway, retries
from migrator.blocking import describe_all
from migrator.database import rolled_back
from migrator.engine import running
from migrator.errors import MigrationFailed
from migrator.file_sums import Sums
from migrator.logs import get_logger
from migrator.session import MigrationSession, prepare_history
from migrator.shutdown import SHUTDOWN
from migrator.statement_hooks import StatementHooks
from migrator.steps import FORWARD, INVALID_INDEXES, Step, check_indexes, refuse_own_rollback
from migrator.tables import history

if TYPE_CHECKING:
    from migrator import failures

LOCK_NOT_AVAILABLE = "55P03"


Plan = Callable[[tuple[str, ...]], Sequence[RevisionStep]]


@dataclass
class Migrations:
    """One upgrade or downgrade of one repo on a locked session."""

    session: MigrationSession
    config: Config
    script: ScriptDirectory
    version_table: str
    direction: str
    open_rows: dict[str, list[history.OpenRow]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    sums: Sums | None = None  # each revision file's checksums, recorded with its upgrade

    def run(self, plan: Plan, destination: str) -> list[str]:
        """Run `plan`'s steps, retrying a migration that hit lock_timeout and left nothing behind."""
        session = self.session
        self._prepare()
        with running(session, StatementHooks(session, self.version_table, self._boundary)) as sa_conn:
            attempts: dict[str, int] = {}
            while True:
                try:
                    self._once(sa_conn, plan, destination)
                except sa.exc.DBAPIError as exc:
                    step = session.current
                    if step is None or step.partial or getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                        raise self._fail(exc) from None
                    with SHUTDOWN.deferred():  # a signal waits for the import (see _fail), as for any bookkeeping
                        from migrator import failures  # noqa: PLC0415
                    blockers = session.monitor.blockers_since(step.started) if session.monitor else []
                    if not rolled_back(session.conn):
                        raise failures.lost(step, exc, self._run()) from None
                    failures.record(session, step, self.version_table, "failed",
                                    f"lock_timeout: {failures.first_line(exc)}")
                    session.current = None
                    attempts[step.revision] = attempts.get(step.revision, 0) + 1
                    self._retry_or_give_up(step, attempts[step.revision], describe_all(blockers))
                except (Exception, KeyboardInterrupt, SystemExit) as exc:  # SystemExit: a migration's sys.exit()
                    raise self._fail(exc) from None
                else:
                    return self.done

    def _prepare(self) -> None:
        """The history table (created once), and the migrations earlier runs left part-way."""
        self.open_rows = {}
        for row in prepare_history(self.session, self.version_table):
            self.open_rows.setdefault(row.revision, []).append(row)

    def _once(self, sa_conn: sa.Connection, plan: Plan, destination: str) -> None:
        hooks = internals.Hooks(on_version_apply=self._on_version_apply, on_commit_boundary=self._boundary,
                                on_autocommit=self._autocommit)
        internals.run_env(self.config, self.script, sa_conn, self._steps(plan), hooks, destination_rev=destination)

    def _steps(self, plan: Plan) -> Callable[..., Iterator[Any]]:
        """Alembic's `fn`: yields the plan's steps, starting and logging each one."""
        def migrations_fn(heads: tuple[str, ...], _context: MigrationContext) -> Iterator[Any]:
            steps = list(plan(heads))
            partway.refuse_elsewhere(self.open_rows, (internals.step_script(s).revision for s in steps),
                                     self.direction)
            for alembic_step in steps:
                script = internals.step_script(alembic_step)
                module = internals.module_name(script)
                step = Step(script.revision, f"{script.revision} ({module})", self.direction,
                            parents=internals.parents(script), rerunnable=internals.rerunnable(script),
                            sums=self._sums_of(script.path))
                partway.decide(self.open_rows, step)
                phase = "upgrade" if self.direction == FORWARD else "downgrade"
                get_logger().info(f"== Running {script.revision} {module}.{phase} {self.direction}",
                                  revision=script.revision, direction=self.direction, module=module)
                if self.session.sa_conn is not None and self.session.sa_conn.in_transaction():
                    self.session.sa_conn.commit()  # Alembic's preamble (the version table), before the first step
                self.session.start_step(step)  # from here on the migration's own code runs: a signal stops it
                yield alembic_step
                with SHUTDOWN.deferred():
                    # Alembic resumes the generator only after the step's transaction ended. A migration that
                    # committed part of itself through SQLAlchemy left the rest, version stamp included, in a
                    # transaction Alembic no longer tracks (its own template loses it): commit it here.
                    if self.session.sa_conn is not None and self.session.sa_conn.in_transaction():
                        self.session.sa_conn.commit()
                    took = time.monotonic() - step.started
                    get_logger().info(f"== Migrated {script.revision} in {took:.1f}s", revision=script.revision,
                                      direction=self.direction, duration=round(took, 3))
                    self.done.append(script.revision)
                    self.session.current = None
        return migrations_fn

    def _sums_of(self, path: str) -> history.FileSums | None:
        """An upgrade's file checksums, when the history can hold them."""
        if self.sums is None or self.direction != FORWARD or not self.session.history_checksums:
            return None
        return self.sums.of(path)

    def _autocommit(self, on: bool) -> None:
        if self.session.current is not None:
            self.session.current.autocommit = on

    def _boundary(self) -> None:
        """The running step is about to commit part of itself: record that first, in the same transaction."""
        step = self.session.current
        if step is None:
            return
        # Everything it ran so far commits now (autocommit statements were counted as they succeeded).
        step.committed += step.statements[step.settled:]
        step.settled = len(step.statements)
        if step.partial:
            return
        conn = self.session.conn
        step.invalid_before = frozenset(r[0] for r in conn.execute(INVALID_INDEXES).fetchall())
        assert step.server_started is not None
        step.history_id = history.insert(
            conn, self.session.history_schema, version_table=self.version_table, revision=step.revision,
            parents=step.parents, direction=step.history_direction, outcome="running",
            started_at=step.server_started, finished=False,
            detail="its non-transactional part began: what ran before it is committed")
        step.partial = True
        get_logger().debug(f"{step.label} commits part of itself here (non-transactional from now on)",
                          revision=step.revision)

    def _on_version_apply(self, **_: Any) -> None:
        """Inside the step's transaction, after Alembic stamped the version: check and record the step, and
        (the common case) commit it with its history row; a signal may interrupt that COMMIT, as any wait."""
        with SHUTDOWN.deferred():
            row = self._record_done()
        if row is not None:
            self.session.commit_with(row)

    def _record_done(self) -> str | None:
        """The step's checks and its history row; the row's INSERT to send with the COMMIT, or None when it
        was written here already."""
        step = self.session.current
        assert step is not None
        conn, schema = self.session.conn, self.session.history_schema
        refuse_own_rollback(step)
        if step.partial:
            check_indexes(conn, step)
        outcome = "applied" if step.direction == FORWARD else "reverted"
        if step.reruns:
            history.resolve_open(conn, schema, self.version_table, step.revision, "ran again successfully")
        if step.history_id is None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            step.stamped = True  # the common case: the row and the COMMIT, in flight together
            return history.insert_statement(conn, schema, version_table=self.version_table, revision=step.revision,
                                            parents=step.parents, direction=step.history_direction, outcome=outcome,
                                            started_at=step.server_started or datetime.now().astimezone(),
                                            sums=step.sums)
        if step.history_id is not None:
            history.finish(conn, schema, step.history_id, outcome, "completed", sums=step.sums)
        else:
            history.insert(conn, schema, version_table=self.version_table, revision=step.revision,
                           parents=step.parents, direction=step.history_direction, outcome=outcome,
                           started_at=step.server_started or datetime.now().astimezone(), finished=True,
                           sums=step.sums)
        step.stamped = True  # the next commit is the step's own
        return None

    def _fail(self, exc: BaseException) -> failures.Failure:
        """The one error the run ends with (migrator.failures), and the failed step's history row. A signal
        does not interrupt this: what the server confirmed is asked under bounds of its own."""
        with SHUTDOWN.deferred():
            # Imported by the runs that fail, inside the deferral (a signal must not cut the import short and
            # leave the failure unexplained): its explanations and their classes would cost every start.
            from migrator import failures  # noqa: PLC0415

            step, self.session.current = self.session.current, None
            said = failures.confirm(self.session, step, exc, self.version_table, self.direction)
            verdict = failures.explain(step, exc, said, self._run())
            if verdict.record is not None and step is not None:
                failures.record(self.session, step, self.version_table, *verdict.record)
            return verdict.error

    def _run(self) -> failures.Run:
        from migrator import failures  # noqa: PLC0415  (see _fail)

        return failures.Run.of(self.session, earlier=bool(self.done))

    def _retry_or_give_up(self, step: Step, attempt: int, who: str) -> None:
        timeouts = self.session.settings.timeouts
        if attempt > timeouts.ddl_retries:
            earlier = "earlier migrations stay applied" if self.done else "nothing was applied"
            raise MigrationFailed(
                f"migration {step.label} gave up after {attempt} tries: a lock it needs was held longer than "
                f"MIGRATOR_DDL_LOCK_TIMEOUT={timeouts.ddl_lock:g}s, by {who}; nothing of it was applied (the "
                f"server confirmed the rollback), {earlier}")
        backoff = retries.ddl_retry_backoff()
        for _ in range(attempt - 1):
            backoff.delay()
        delay = backoff.delay()
        get_logger().warning(
            f"{step.revision} could not get a lock within {timeouts.ddl_lock:g}s (blocked by {who}); rolled back, "
            f"retry {attempt}/{timeouts.ddl_retries} in {delay:.1f}s", revision=step.revision, attempt=attempt)
        SHUTDOWN.sleep(delay)
