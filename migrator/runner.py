"""Running migrations and seeds: the one place for the migration session, its lock, its steps and its logs.

Like Ecto.Migrator: one session (migrator.database.Connection) takes the migration lock and runs every
migration and seed, so the lock shares its fate (migrator.lock). Each step:

- starts from migrator's settings (lock_timeout, statement_timeout, idle_in_transaction_session_timeout,
  keepalives) with the lock proven held: nothing a previous migration SET leaks into the next, and no step runs
  without the lock. The reset and the proof travel right after the previous step's COMMIT, in its round trip;
  the first step of a run, and any step after a failure, sends them on its own;
- runs in its own transaction (Alembic's transaction_per_migration), each statement logged in Ecto's words,
  with a longer lock_timeout for CONCURRENTLY statements (they wait for older transactions by design, without
  queueing application traffic);
- is recorded in the migration history in the transaction that stamps its version.

A migration that commits part of itself (Alembic's autocommit_block, an explicit COMMIT) is non-transactional
from that point: the history records it as running first, it is never retried automatically, it may not leave
an INVALID index behind, and when it fails the message lists what committed. The next run decides: a revision
that declares `rerunnable = True` runs again, any other stops with exit 6 until `migrator resolve`.

A monitor thread on a second connection names the sessions that block a step and notices a migration session
that died or stopped answering (migrator.monitor). Messages say only what the server confirmed.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from psycopg import sql as psql

from migrator import alembic_internals as internals
from migrator import database, history, lock, operations, progress, retries
from migrator.blocking import describe_all
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection, ServerSession
from migrator.errors import (
    ConfigError,
    ConnectionLost,
    Interrupted,
    LockLost,
    MigrationFailed,
    MigratorError,
    PartiallyApplied,
)
from migrator.logs import get_logger
from migrator.monitor import Monitor
from migrator.redaction import redact

LOCK_NOT_AVAILABLE = "55P03"
FORWARD, BACKWARD = "forward", "backward"
# INVALID plain indexes (a failed or interrupted concurrent build); a partitioned table's index made ON ONLY
# is invalid by design until its partitions' indexes are attached, and is not counted.
_INVALID_INDEXES = ("SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE NOT i.indisvalid AND c.relkind = 'i' AND c.relpersistence <> 't'")


def module_name(script: Script) -> str:
    return internals.module_name(script)


# The offline commands (sql, new, lint) use these through the runner.
alembic_config = internals.alembic_config
load_script = internals.load_script
revision_errors = internals.revision_errors
run_alembic = internals.run_env
resolve = internals.resolve


# --- the migration session ------------------------------------------------------------------------------

@dataclass
class MigrationSession:
    """The locked session migrations and seeds run on, with its SQLAlchemy connection."""

    db: DatabaseConfig
    settings: Settings
    conn: Connection
    server: ServerSession
    key: int
    history_schema: str
    engine: sa.Engine | None = None
    sa_conn: sa.Connection | None = None
    current: Step | None = None
    monitor: Monitor | None = None
    # The reset and lock proof (server clock, lock held) that the previous step's COMMIT carried, for the next
    # step; None when the next step must send its own.
    prepared: tuple[datetime, bool] | None = None

    @functools.cached_property
    def reset_sql(self) -> str:
        """What every step starts from: every session setting back to the session's defaults (a migration's
        SET search_path, SET ROLE or session_replication_role included), then migrator's settings, the
        server's clock, and whether this session still holds the lock. The same text for every step of the
        session: composed once."""
        settings = database.session_settings(self.settings.timeouts, self.server.server_version)
        calls = psql.SQL(", ").join(psql.SQL("set_config({}, {}, false)").format(psql.Literal(k), psql.Literal(v))
                                    for k, v in settings.items())
        owned = psql.SQL(lock.OWNED % {"pid": self.server.pid, "key": self.key})  # integers only
        return psql.SQL("RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE; SELECT clock_timestamp(), {}, {}"
                        ).format(owned, calls).as_string(self.conn)

    def start_step(self, step: Step) -> None:
        """Start `step` from a reset session whose lock is proven: the reset the previous step's COMMIT carried
        (nothing ran on the session since), or else a round trip of its own, in autocommit right before the
        step's transaction begins, so that a rollback inside the step cannot undo it. The caller makes sure no
        transaction is open."""
        conn = self.conn
        conn.doing = f"running {'' if step.direction == 'seed' else 'migration '}{step.label}"
        prepared, self.prepared = self.prepared, None
        if prepared is None or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = True
            try:
                prepared = _reset_row(conn.execute(self.reset_sql))
            finally:
                conn.autocommit = False
        started, owned = prepared
        if not owned:
            raise LockLost(f"the migration lock on {self.db.description} is no longer held by this session "
                           f"(released by a statement such as pg_advisory_unlock_all() or DISCARD ALL, or the "
                           f"session changed under a pooler); stopped before {step.label}")
        step.server_started = started
        self.current = step

    def commit_with(self, statement: str) -> None:
        """Commit the running step with its last `statement` (its history row), then reset the session and
        prove the lock for the next step, in one round trip: the bookkeeping costs a step no round trip of its
        own. The reset follows the COMMIT (PostgreSQL runs and commits it as an implicit transaction), so that
        what the migration SET LOCAL still governs its own COMMIT (synchronous_commit). Alembic's commit then
        finds the transaction ended, and psycopg sends nothing for it."""
        self.prepared = _reset_row(self.conn.execute(f"{statement}; COMMIT; {self.reset_sql}"))


def _reset_row(cur: psycopg.Cursor[Any]) -> tuple[datetime, bool]:
    """The reset's SELECT row (clock, lock held), past the RESETs' results before it."""
    while cur.description is None:
        if not cur.nextset():
            raise AssertionError("the session reset returned no row")
    row = cur.fetchone()
    assert row is not None
    return row[0], bool(row[1])


@dataclass
class Step:
    """One migration (or seed) while it runs, and what it has done so far."""

    revision: str
    label: str  # `20211104101500 (add_users_email_index)` or `seed 01_users.py`
    direction: str
    parents: tuple[str, ...] = ()
    rerunnable: bool = False
    started: float = field(default_factory=time.monotonic)
    server_started: datetime | None = None
    statements: list[str] = field(default_factory=list)
    answered: int = 0  # statements the server answered (successfully)
    partial: bool = False  # part of it committed outside its transaction (a boundary passed)
    committed: list[str] = field(default_factory=list)  # what is known to have committed, described
    settled: int = 0  # how many of `statements` are accounted for in `committed`
    autocommit: bool = False  # inside an autocommit block: each statement commits as it succeeds
    stamped: bool = False  # Alembic stamped its version: the next commit is the step's own
    # A step must not roll back its own transaction part-way (op.get_bind().rollback()): what ran before would
    # be gone while the rest commits. Counted by the SQLAlchemy rollback event, refused when the step ends.
    rollbacks: int = 0
    history_id: int | None = None
    invalid_before: frozenset[str] = frozenset()
    indexes: set[str] = field(default_factory=set)
    reruns: list[history.OpenRow] = field(default_factory=list)
    allow_commit: bool = True

    def what_committed(self) -> str:
        shown = self.committed
        if not shown:
            return "nothing yet"
        return "; ".join(shown[:8]) + (f"; ... ({len(shown)} in all)" if len(shown) > 8 else "")


def _engine(session: MigrationSession, hooks: StatementHooks) -> sa.Engine:
    """A SQLAlchemy engine over the session's one psycopg connection, its statements seen by `hooks`."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: session.conn, poolclass=sa.pool.StaticPool,
                              pool_reset_on_return=None)
    # The session owns the connection: SQLAlchemy closes a connection it invalidates (after a signal, or an
    # error it takes for a disconnect), which would lose the lock and the chance to confirm the rollback.
    engine.dialect.do_close = lambda _dbapi_connection: None  # type: ignore[method-assign,assignment]
    sa.event.listen(engine, "before_cursor_execute", hooks.before)
    sa.event.listen(engine, "after_cursor_execute", hooks.after)
    sa.event.listen(engine, "handle_error", hooks.failed)
    sa.event.listen(engine, "commit", hooks.committing)
    sa.event.listen(engine, "rollback", hooks.rolling_back)
    return engine


@contextmanager
def running(session: MigrationSession, hooks: StatementHooks) -> Iterator[sa.Connection]:
    """The session's SQLAlchemy connection, with the monitor watching, for the steps of one command."""
    session.conn.autocommit = False
    session.engine = _engine(session, hooks)
    session.sa_conn = session.engine.connect()
    timeouts = session.settings.timeouts
    # Statements may run long (index builds): the monitor watches them; with statement_timeout set, the
    # client also gives up a little after the server should have.
    session.conn.wait_limit = timeouts.statement + timeouts.stall if timeouts.statement else None
    session.conn.doing = "running migrations"
    with Monitor(session.db, timeouts, session.conn, session.server.pid) as monitor:
        session.monitor = monitor
        try:
            yield session.sa_conn
        finally:
            session.monitor = None
            session.prepared = None  # a later command's first step proves the lock itself
            session.conn.wait_limit = timeouts.stall
            _back_to_autocommit(session)


def _back_to_autocommit(session: MigrationSession) -> None:
    """After the steps: SQLAlchemy lets go of the connection, which reads and unlocks in autocommit again.
    On a failing or lost connection this does what it can; the failure itself is reported by the caller."""
    conn = session.conn
    if session.sa_conn is not None:
        with suppress(Exception):
            session.sa_conn.close()
        session.sa_conn = None
    if conn.closed or conn.broken:
        return
    with suppress(psycopg.Error):
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True


def prepare_history(session: MigrationSession, version_table: str) -> list[history.OpenRow]:
    """Create the history table when missing (in autocommit, before any step); its open rows."""
    conn, schema = session.conn, session.history_schema
    if not history.exists(conn, schema):
        try:
            history.create(conn, schema)
        except psycopg.errors.InsufficientPrivilege:
            raise ConfigError(f"cannot create the migration history table {schema}.{history.TABLE} on "
                              f"{session.db.description}: permission denied; grant the migrator's role CREATE on "
                              f"schema {schema} (PostgreSQL 15 and later no longer grant it on public by "
                              "default), or create the table once as its owner") from None
    return history.open_rows(conn, schema, version_table)


_LEADING_WORDS = re.compile(r"(?:\s|--[^\n]*\n|/\*.*?\*/)*(\w+)(?:\s+(\w+))?", re.DOTALL)


# --- statements -----------------------------------------------------------------------------------------

class StatementHooks:
    """SQLAlchemy cursor events: describe and log each statement of the running step, give CONCURRENTLY
    statements their own lock_timeout, and notice a statement that commits part of the step."""

    def __init__(self, session: MigrationSession, version_table: str,
                 on_boundary: Callable[[], None] = lambda: None) -> None:
        # on_boundary: the running step is about to commit part of itself (a COMMIT statement, or a commit
        # through SQLAlchemy such as op.get_bind().commit()).
        self.session = session
        self.version_table = version_table  # Alembic's bookkeeping table (or the seeds' ledger): not logged
        self.on_boundary = on_boundary
        self._restore_lock_timeout = False
        self._running: str | None = None  # the statement sent, until it succeeds
        self._log = get_logger()  # for this command's run, configured by now

    def before(self, _conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, *_: Any) -> None:
        step = self.session.current
        if step is None or self._stamping(context):
            return
        op = operations.describe(statement)
        if op.touches(self.version_table) or op.touches(history.TABLE):
            return  # Alembic's and migrator's own bookkeeping
        fields = {"seed": step.revision} if step.direction == "seed" else {"revision": step.revision}
        (self._log.debug if op.quiet else self._log.info)(op.text, **fields)
        step.statements.append(op.text)
        self._running = op.text
        progress.began(self.session.monitor, op.text, fields)
        if op.index:
            step.indexes.add(op.index)
        if op.ends_transaction:
            self._ending(step, statement)
        if op.concurrent:
            self._set_lock_timeout(self.session.settings.timeouts.concurrent_lock)
            self._restore_lock_timeout = True

    def _stamping(self, context: Any) -> bool:
        """An INSERT, UPDATE or DELETE that SQLAlchemy compiled for the version table (Alembic stamping a step,
        or the seeds' ledger row): known without reading the statement's text."""
        if context is None or not (context.isinsert or context.isupdate or context.isdelete):
            return False
        table = getattr(getattr(context.compiled, "statement", None), "table", None)
        return getattr(table, "name", None) == self.version_table

    def _ending(self, step: Step, statement: str) -> None:
        words = _LEADING_WORDS.match(statement)
        verb = " ".join(w for w in words.groups() if w).upper() if words else "a transaction control statement"
        if not step.allow_commit or not verb.startswith(("COMMIT", "END")) or "PREPARED" in verb:
            step.statements.pop()
            raise MigrationFailed(f"{step.label} executes {verb}, which would end the transaction migrator runs it "
                                  "in (it was not sent). "
                                  + ("Seeds run in one transaction with their ledger row: remove it"
                                     if step.direction == "seed" else
                                     "Use op.get_context().autocommit_block() for statements that cannot run in "
                                     "a transaction"))
        self.on_boundary()

    def committing(self, _conn: Any) -> None:
        """SQLAlchemy is about to commit: the end of a step (Alembic's, after the version stamp), an autocommit
        block's placeholder, or the migration committing part of itself."""
        step = self.session.current
        if step is None or step.stamped or step.autocommit:
            return
        if not step.allow_commit:
            raise MigrationFailed(f"{step.label} commits the transaction it runs in through SQLAlchemy (it was not "
                                  "committed): seeds run in one transaction with their ledger row; use "
                                  "session.flush() to send statements, and let migrator commit")
        self.on_boundary()

    def rolling_back(self, _conn: Any) -> None:
        if self.session.current is not None:
            self.session.current.rollbacks += 1

    def after(self, *_: Any) -> None:
        progress.ended(self.session.monitor)
        step = self.session.current
        if step is not None:
            step.answered += 1
            if step.autocommit and self._running is not None:
                step.committed.append(self._running)  # it succeeded outside any transaction: it is committed
                step.settled = len(step.statements)
        self._running = None
        if self._restore_lock_timeout:
            self._restore_lock_timeout = False
            self._set_lock_timeout(self.session.settings.timeouts.ddl_lock)

    def failed(self, _context: Any) -> None:
        progress.ended(self.session.monitor)
        self._running = None
        if self._restore_lock_timeout:
            self._restore_lock_timeout = False
            with suppress(psycopg.Error):  # the connection is failing; the next step resets every setting anyway
                self._set_lock_timeout(self.session.settings.timeouts.ddl_lock)

    def _set_lock_timeout(self, seconds: float) -> None:
        self.session.conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{round(seconds * 1000)}ms",))


# --- migrations -------------------------------------------------------------------------------------------

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

    def run(self, plan: Plan, destination: str) -> list[str]:
        """Run `plan`'s steps, retrying a migration that hit lock_timeout and left nothing behind."""
        session = self.session
        self._prepare()
        with running(session, StatementHooks(session, self.version_table, self._boundary)) as sa_conn:
            attempts: dict[str, int] = {}
            while True:
                try:
                    self._once(sa_conn, plan, destination)
                except MigratorError as exc:
                    raise self._failure(session.current, exc) from None
                except sa.exc.DBAPIError as exc:
                    step = session.current
                    if step is None or _sqlstate(exc) != LOCK_NOT_AVAILABLE or step.partial:
                        raise self._failure(step, exc) from None
                    blockers = session.monitor.blockers_since(step.started) if session.monitor else []
                    self._rolled_back_or_fail(step, exc)
                    self._record_failure(step, "failed", f"lock_timeout: {_first_line(exc)}")
                    session.current = None
                    attempts[step.revision] = attempts.get(step.revision, 0) + 1
                    self._retry_or_give_up(step, attempts[step.revision], describe_all(blockers))
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
        try:
            internals.run_env(self.config, self.script, sa_conn, self._steps(plan), hooks,
                              destination_rev=destination)
        except KeyboardInterrupt as exc:
            raise self._interrupted(exc) from None
        except (MigratorError, sa.exc.DBAPIError):
            raise
        except Exception as exc:
            raise self._failure(self.session.current, exc) from exc

    def _steps(self, plan: Plan) -> Callable[..., Iterator[Any]]:
        """Alembic's `fn`: yields the plan's steps, starting and logging each one."""
        def migrations_fn(heads: tuple[str, ...], _context: MigrationContext) -> Iterator[Any]:
            steps = list(plan(heads))
            self._refuse_open_rows_elsewhere(steps)
            for alembic_step in steps:
                script = internals.step_script(alembic_step)
                module = module_name(script)
                step = Step(script.revision, f"{script.revision} ({module})", self.direction,
                            parents=internals.parents(script), rerunnable=internals.rerunnable(script))
                self._decide_open_rows(step)
                phase = "upgrade" if self.direction == FORWARD else "downgrade"
                get_logger().info(f"== Running {script.revision} {module}.{phase} {self.direction}",
                                  revision=script.revision, direction=self.direction, module=module)
                if self.session.sa_conn is not None and self.session.sa_conn.in_transaction():
                    self.session.sa_conn.commit()  # Alembic's preamble (the version table), before the first step
                self.session.start_step(step)
                yield alembic_step
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

    def _refuse_open_rows_elsewhere(self, steps: Sequence[RevisionStep]) -> None:
        """A migration left part-way that this run will not run (the other direction, or not in its plan)
        stops the run: going on would build on a half-applied schema."""
        direction = history.UP if self.direction == FORWARD else history.DOWN
        planned = {internals.step_script(s).revision for s in steps}
        for rows in self.open_rows.values():
            row = rows[-1]
            if row.direction != direction or row.revision not in planned:
                phase = "migrate" if row.direction == history.UP else "rollback"
                raise PartiallyApplied(
                    f"migration {row.describe()}; this {'migrate' if direction == history.UP else 'rollback'} does "
                    f"not run it, and would build on a half-applied schema. Finish it first: run the {phase} again "
                    f"if it is rerunnable, or decide with `migrator resolve {row.revision} --rerun|--mark-applied`")

    def _decide_open_rows(self, step: Step) -> None:
        """A migration left part-way by an earlier run: run it again only if it says it may."""
        rows = self.open_rows.get(step.revision, [])
        if not rows:
            return
        if not step.rerunnable:
            raise PartiallyApplied(
                f"migration {step.label} was left part-way: {rows[-1].describe()}. Its committed part stays, so "
                "running it again could fail or do it twice. Check the database, then either complete or undo "
                f"it by hand and run `migrator resolve {step.revision} --mark-applied` (it is done) or "
                f"`migrator resolve {step.revision} --rerun` (run it again), or declare `rerunnable = True` in "
                "the revision file if it is safe to run again")
        get_logger().warning(f"{step.label} was left part-way ({rows[-1].describe()}); it declares itself "
                             "rerunnable, so it runs again", revision=step.revision)
        step.reruns = rows

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
        step.invalid_before = frozenset(r[0] for r in conn.execute(_INVALID_INDEXES).fetchall())
        assert step.server_started is not None
        step.history_id = history.insert(
            conn, self.session.history_schema, version_table=self.version_table, revision=step.revision,
            parents=step.parents, direction=_history_direction(step), outcome="running",
            started_at=step.server_started, finished=False,
            detail="its non-transactional part began: what ran before it is committed")
        step.partial = True
        get_logger().debug(f"{step.label} commits part of itself here (non-transactional from now on)",
                          revision=step.revision)

    def _on_version_apply(self, **_: Any) -> None:
        """Inside the step's transaction, after Alembic stamped the version: check and record the step."""
        step = self.session.current
        assert step is not None
        conn, schema = self.session.conn, self.session.history_schema
        refuse_own_rollback(step)
        if step.partial:
            self._check_indexes(step)
        outcome = "applied" if step.direction == FORWARD else "reverted"
        if step.reruns:
            history.resolve_open(conn, schema, self.version_table, step.revision, "ran again successfully")
        if step.history_id is None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            step.stamped = True  # the common case: the row and the COMMIT, in flight together
            self.session.commit_with(history.insert_statement(
                schema, version_table=self.version_table, revision=step.revision, parents=step.parents,
                direction=_history_direction(step), outcome=outcome,
                started_at=step.server_started or datetime.now().astimezone()))
        elif step.history_id is not None:
            history.finish(conn, schema, step.history_id, outcome, "completed")
        else:
            history.insert(conn, schema, version_table=self.version_table, revision=step.revision,
                           parents=step.parents, direction=_history_direction(step), outcome=outcome,
                           started_at=step.server_started or datetime.now().astimezone(), finished=True)
        step.stamped = True

    def _check_indexes(self, step: Step) -> None:
        """No exit 0 with an INVALID index the step built or touched (a concurrent build that did not finish)."""
        bad = self._invalid_indexes(step)
        if bad:
            raise _IndexLeftInvalid(f"{step.label} left {_invalid_text(bad)}")

    def _invalid_indexes(self, step: Step) -> list[str]:
        return invalid_indexes(self.session.conn, step)

    # --- failures -------------------------------------------------------------------------------------

    def _failure(self, step: Step | None, exc: BaseException) -> MigratorError:
        """The one line for a failed run, saying only what the server confirmed."""
        session = self.session
        session.current = None
        conn = session.conn
        if isinstance(exc, MigratorError) and not isinstance(exc, _IndexLeftInvalid) and (
                step is None or isinstance(exc, ConnectionLost)):
            return exc
        if database.is_connection_error(exc) or conn.closed or conn.broken or isinstance(exc, ConnectionLost):
            return self._lost(step, exc)
        cause = str(exc) if isinstance(exc, MigratorError) else _first_line(exc)
        if step is None:
            confirmed = database.rolled_back(conn)
            return MigrationFailed(f"migrations on {session.db.description} failed before any step ran: {cause}"
                                   + ("" if confirmed else "; the server did not confirm the rollback"))
        confirmed = database.rolled_back(conn)
        if step.stamped and confirmed and self._committed(step):
            # The error came after the step's COMMIT, from the reset that travels with it.
            return MigrationFailed(f"migration {step.label} was committed (the version table shows it), but resetting "
                                   f"the session after it failed: {cause}; run migrate again to go on from there")
        if step.partial:
            if confirmed and not isinstance(exc, _IndexLeftInvalid):
                with suppress(psycopg.Error):
                    bad = self._invalid_indexes(step)
                    if bad:
                        cause += f"; it left {_invalid_text(bad)}"
            self._record_failure(step, "partial", cause)
            return self._partial_failure(step, cause, confirmed)
        return self._transactional_failure(step, cause, confirmed)

    def _transactional_failure(self, step: Step, cause: str, confirmed: bool) -> MigratorError:
        if not confirmed:
            return MigrationFailed(f"migration {step.label} failed: {cause}; the server did not confirm that its "
                                   "transaction rolled back (it ends it when it notices the lost connection)")
        self._record_failure(step, "failed", cause)
        earlier = "earlier migrations stay applied" if self.done else "nothing was applied"
        return MigrationFailed(f"migration {step.label} failed and was rolled back: {cause}; {earlier}")

    def _partial_failure(self, step: Step, cause: str, confirmed: bool) -> MigratorError:
        running = "its last statement was rolled back" if confirmed else "the server did not confirm the rollback"
        text = (f"migration {step.label} failed after part of it committed: {cause}. Committed: "
                f"{step.what_committed()}; {running}; its version is not stamped. ")
        if step.rerunnable:
            return MigrationFailed(text + "It declares itself rerunnable: the next migrate runs it again")
        return PartiallyApplied(text + f"The next migrate stops here (exit 6) until `migrator resolve "
                                       f"{step.revision} --rerun|--mark-applied`; `migrator status` shows it")

    def _lost(self, step: Step | None, exc: BaseException) -> ConnectionLost:
        base = database.lost(self.session.conn, exc, "running migrations")
        timeouts = self.session.settings.timeouts
        if step is None:
            return ConnectionLost(f"{base}; no migration was running")
        if step.stamped:
            return ConnectionLost(f"{base}; migration {step.label} was committing: whether it committed is not "
                                  "known here (the next migrate reads the version table: it finds it applied, or "
                                  "runs it again)")
        fate = (f"the server rolls back its open transaction when it notices: within MIGRATOR_IDLE_TIMEOUT="
                f"{timeouts.idle:g}s of its last statement, or by TCP keepalives (about {timeouts.stall:g}s) if the "
                "network is down; not confirmed here")
        if not step.partial and not step.answered:
            # Also a session lost between two steps (their reset and lock proof travel with the previous
            # COMMIT): the step's first statement is what notices it.
            return ConnectionLost(f"{base}; migration {step.label} got no answer to its first statement, so nothing "
                                  f"of it was committed (no COMMIT was sent; {fate}); the next migrate runs it from "
                                  "the start")
        if step.partial:
            left = "it runs again on the next migrate" if step.rerunnable else \
                "the next migrate stops at it (exit 6) until `migrator resolve`"
            return ConnectionLost(f"{base}; migration {step.label} was running and had committed "
                                  f"{step.what_committed()}: {fate}; {left}")
        return ConnectionLost(f"{base}; migration {step.label} was running: {fate}; the next migrate runs it "
                              "again from the start")

    def _interrupted(self, exc: KeyboardInterrupt) -> Interrupted:
        step = self.session.current
        if step is not None and step.stamped:
            return self._interrupted_committing(step, exc)
        if step is not None and database.rolled_back(self.session.conn):
            self._record_failure(step, "partial" if step.partial else "interrupted", "interrupted by a signal")
        return interrupted(self.session, exc, step.label if step else None)

    def _interrupted_committing(self, step: Step, exc: KeyboardInterrupt) -> Interrupted:
        """The signal came while the step's COMMIT was in flight (a synchronous standby that does not answer):
        only the version table can tell whether it committed."""
        self.session.current = None
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        committed = self._committed(step) if database.rolled_back(self.session.conn) else None
        fate = {None: "whether it committed is not confirmed (the version table will tell the next run)",
                True: "it committed (the version table shows it)",
                False: "it did not commit (the version table does not show it); run it again to resume"}[committed]
        return Interrupted(name, code, f"interrupted by {name} while {step.label} was committing: {fate}")

    def _committed(self, step: Step) -> bool | None:
        """Whether the version table shows `step` done (applied, or reverted for a rollback), read outside any
        transaction; None when it cannot be read."""
        conn = self.session.conn
        try:
            found = conn.execute(psql.SQL("SELECT count(*) FROM {} WHERE version_num = %s").format(
                psql.Identifier(self.session.server.schema, self.version_table)), (step.revision,)).fetchone()
            conn.rollback()
        except psycopg.Error:
            return None
        return bool(found and found[0]) == (self.direction == FORWARD)

    def _rolled_back_or_fail(self, step: Step, exc: BaseException) -> None:
        if not database.rolled_back(self.session.conn):
            raise self._lost(step, exc)

    def _record_failure(self, step: Step, outcome: str, detail: str) -> None:
        """Best effort: a row saying how the step ended, in its own transaction."""
        conn, schema = self.session.conn, self.session.history_schema
        if conn.closed or conn.broken:
            return
        try:
            if step.history_id is not None:
                history.finish(conn, schema, step.history_id, outcome, redact(detail)[:2000])
            else:
                history.insert(conn, schema, version_table=self.version_table, revision=step.revision,
                               parents=step.parents, direction=_history_direction(step), outcome=outcome,
                               started_at=step.server_started or datetime.now().astimezone(), finished=True,
                               detail=redact(detail)[:2000])
            conn.commit()
        except (psycopg.Error, MigratorError):
            database.rolled_back(conn)

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
        time.sleep(delay)


def refuse_own_rollback(step: Step) -> None:
    """A step that rolled back its own transaction part-way lost what it ran before: it must not commit the rest."""
    if step.rollbacks:
        raise MigrationFailed(f"{step.label} rolled back its own transaction part-way (op.get_bind().rollback() or "
                              "similar): what it ran before that was undone while the rest went on, so none of it "
                              "is committed; raise an exception to fail a migration instead")


def invalid_indexes(conn: Connection, step: Step) -> list[str]:
    """INVALID indexes that appeared during the step, or that its statements named."""
    rows = conn.execute(_INVALID_INDEXES).fetchall()
    touched = {_bare(name) for name in step.indexes}
    return sorted(r[0] for r in rows if r[0] not in step.invalid_before or _bare(r[0]) in touched)


def interrupted(session: MigrationSession, exc: KeyboardInterrupt, what: str | None) -> Interrupted:
    """The Interrupted to report for a signal during `what` (a step's label), saying what the server confirmed."""
    step = session.current
    session.current = None
    name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
    code = exc.exit_code if isinstance(exc, Interrupted) else 130
    if what is None:
        return Interrupted(name, code, f"interrupted by {name} between steps; nothing was running")
    if database.rolled_back(session.conn):
        fate = "its running statement was cancelled and its transaction rolled back (confirmed by the server)"
        if step is not None and step.partial:
            with suppress(psycopg.Error):
                bad = invalid_indexes(session.conn, step)
                if bad:
                    fate += f"; it left {_invalid_text(bad)}"
    else:
        timeouts = session.settings.timeouts
        fate = ("the server did not confirm the rollback; it ends the transaction when it notices the closed "
                f"connection (within MIGRATOR_IDLE_TIMEOUT={timeouts.idle:g}s of the last statement, or about "
                f"{timeouts.stall:g}s of TCP keepalives if the network is down)")
    if step is not None and step.partial:
        nxt = "it runs again on the next migrate" if step.rerunnable else \
            "the next migrate stops at it (exit 6) until `migrator resolve`"
        return Interrupted(name, code, f"interrupted by {name} during {what} after part of it committed "
                                       f"({step.what_committed()}): {fate}; {nxt}")
    return Interrupted(name, code, f"interrupted by {name} during {what}: {fate}; run it again to resume")


class _IndexLeftInvalid(MigratorError):
    """Raised inside the step's final transaction; reported as a failure after part of the step committed."""


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"')


def _invalid_text(indexes: list[str]) -> str:
    repair = " ".join(f"DROP INDEX CONCURRENTLY {name};" for name in indexes)
    return (f"INVALID index(es) {', '.join(indexes)} (a concurrent build that did not finish: queries do not use "
            f"it, and a unique one enforces nothing); repair with `{repair}` before running it again")


def _history_direction(step: Step) -> str:
    return history.UP if step.direction == FORWARD else history.DOWN


def _sqlstate(exc: sa.exc.DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return redact(f"{type(exc.orig).__name__}: {text}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
