"""Why a run stopped, in one line that says only what the server confirmed.

`confirm` asks the server what it can still tell after a failure (did the transaction roll back, does the
version table show the step, which INVALID indexes did it leave); `explain` turns the step, the error and
those answers into the one error the run ends with, and the history row it leaves (`record`). Migrations and
seeds, failures, lost connections and signals: every message about a failed step is written here.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql as psql

from migrator import database
from migrator.config import Timeouts
from migrator.errors import ConnectionLost, Interrupted, MigrationFailed, MigratorError, PartiallyApplied
from migrator.redaction import redact
from migrator.session import MigrationSession
from migrator.shutdown import SHUTDOWN, SIGNAL_GRACE
from migrator.steps import FORWARD, IndexLeftInvalid, Step, invalid_indexes, invalid_text
from migrator.tables import history

Failure = MigratorError | Interrupted


@dataclass(frozen=True)
class Confirmed:
    """What the server confirmed after a failure."""

    lost: bool  # the session is gone (or the error says so): nothing more can be asked
    rolled_back: bool  # the session is alive and has no open transaction
    committed: bool | None = None  # the version table shows the step done; None: not known
    invalid: tuple[str, ...] = ()  # INVALID indexes the step left (asked after part of it committed)


@dataclass(frozen=True)
class Run:
    """What the explanation needs to know about the run the step belongs to."""

    database: str  # its description
    timeouts: Timeouts
    earlier: bool  # earlier steps of this run were applied
    conn: psycopg.Connection[Any] | None = None  # the session's connection (why the watchdog shut it down)

    @classmethod
    def of(cls, session: MigrationSession, earlier: bool = False) -> Run:
        return cls(session.db.description, session.settings.timeouts, earlier, session.conn)


@dataclass(frozen=True)
class Verdict:
    """The error the run ends with, and the history row the failed step leaves (outcome, detail), if any."""

    error: Failure
    record: tuple[str, str] | None = None


def confirm(session: MigrationSession, step: Step | None, exc: BaseException, version_table: str,
            direction: str = FORWARD) -> Confirmed:
    """Ask the server what it can confirm about `step` after `exc`; every question bounded."""
    conn = session.conn
    if not isinstance(exc, KeyboardInterrupt) and (
            conn.closed or conn.broken or isinstance(exc, ConnectionLost)
            or (database.is_connection_error(exc) and not _elsewhere(exc, conn))):
        return Confirmed(lost=True, rolled_back=False)
    rolled_back = database.rolled_back(conn)
    committed = None
    if step is not None and step.stamped and not step.is_seed and rolled_back:
        committed = _committed(session, step, version_table, direction)
    invalid: tuple[str, ...] = ()
    if step is not None and step.partial and rolled_back and not isinstance(exc, IndexLeftInvalid):
        with suppress(psycopg.Error):
            invalid = tuple(invalid_indexes(conn, step))
    return Confirmed(lost=False, rolled_back=rolled_back, committed=committed, invalid=invalid)


def _elsewhere(exc: BaseException, conn: psycopg.Connection[Any]) -> bool:
    """The error came from another connection than the session's: one the migration opened itself."""
    orig = getattr(exc, "orig", None) or exc
    source = getattr(orig, "pgconn", None)
    return source is not None and source is not conn.pgconn


def _committed(session: MigrationSession, step: Step, version_table: str, direction: str) -> bool | None:
    """Whether the version table shows `step` done (applied, or reverted for a rollback), read outside any
    transaction; None when it cannot be read."""
    conn = session.conn
    try:
        found = conn.execute(psql.SQL("SELECT count(*) FROM {} WHERE version_num = %s").format(
            psql.Identifier(session.server.schema, version_table)), (step.revision,)).fetchone()
        conn.rollback()
    except psycopg.Error:
        return None
    return bool(found and found[0]) == (direction == FORWARD)


def explain(step: Step | None, exc: BaseException, said: Confirmed, run: Run) -> Verdict:
    """The one line for a run that failed in `step` (None: between steps) with `exc`, saying only what `said`."""
    if said.lost and SHUTDOWN.signalled and not isinstance(exc, KeyboardInterrupt):
        exc = Interrupted(SHUTDOWN.signal_name, SHUTDOWN.exit_code)  # the grace ended: connections were shut down
    if isinstance(exc, KeyboardInterrupt):
        return _interrupted(step, exc, said, run)
    if isinstance(exc, MigratorError) and not isinstance(exc, IndexLeftInvalid) and (
            step is None or isinstance(exc, ConnectionLost)):
        return Verdict(exc)  # it says what happened already
    if said.lost:
        return Verdict(_idle_too_long(step, exc, run) or lost(step, exc, run))
    cause = str(exc) if isinstance(exc, MigratorError) else first_line(exc)
    if database.is_connection_error(exc):  # not the session's own connection (that would be `said.lost`)
        cause += " (on a connection the migration opened itself; migrator's session was not affected)"
    if step is None:
        return Verdict(MigrationFailed(f"migrations on {run.database} failed before any step ran: {cause}"
                                       + ("" if said.rolled_back else "; the server did not confirm the rollback")))
    if step.is_seed:
        return Verdict(_seed_failure(step, exc, cause, said, run))
    return _step_failure(step, cause, said, run)


def _step_failure(step: Step, cause: str, said: Confirmed, run: Run) -> Verdict:
    if step.stamped and said.rolled_back and said.committed:
        # The error came after the step's COMMIT, from the reset that travels with it.
        return Verdict(MigrationFailed(
            f"migration {step.label} was committed (the version table shows it), but resetting the session after "
            f"it failed: {cause}; run migrate again to go on from there"))
    if step.partial:
        if said.invalid:
            cause += f"; it left {invalid_text(list(said.invalid))}"
        return Verdict(_partial_failure(step, cause, said.rolled_back), ("partial", cause))
    if not said.rolled_back:
        return Verdict(MigrationFailed(f"migration {step.label} failed: {cause}; the server did not confirm that its "
                                       "transaction rolled back (it ends it when it notices the lost connection)"))
    earlier = "earlier migrations stay applied" if run.earlier else "nothing was applied"
    return Verdict(MigrationFailed(f"migration {step.label} failed and was rolled back: {cause}; {earlier}"),
                   ("failed", cause))


def _seed_failure(step: Step, exc: BaseException, cause: str, said: Confirmed, run: Run) -> MigratorError:
    """A seed runs in one transaction with its ledger row: rolled back, or the connection is gone."""
    if not said.rolled_back:
        return database.lost(run.conn, exc, f"running {step.label}")
    return MigrationFailed(f"{step.label} failed and was rolled back: {cause}")


def _partial_failure(step: Step, cause: str, confirmed: bool) -> MigratorError:
    running = "its last statement was rolled back" if confirmed else "the server did not confirm the rollback"
    text = (f"migration {step.label} failed after part of it committed: {cause}. Committed: "
            f"{step.what_committed()}; {running}; its version is not stamped. ")
    if step.rerunnable:
        return MigrationFailed(text + "It declares itself rerunnable: the next migrate runs it again")
    return PartiallyApplied(text + f"The next migrate stops here (exit 6) until `migrator resolve "
                                   f"{step.revision} --rerun|--mark-applied`; `migrator status` shows it")


def lost(step: Step | None, exc: BaseException, run: Run) -> ConnectionLost:
    """The connection is gone: what was running, and what the server will do about it, within what bound."""
    if step is not None and step.is_seed:
        return database.lost(run.conn, exc, f"running {step.label}")
    timeouts = run.timeouts
    base = database.lost(run.conn, exc, "running migrations")
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


IDLE_IN_TRANSACTION_TIMEOUT = "25P03"  # the server's own word for it, when its FATAL message reached the client


def _idle_too_long(step: Step | None, exc: BaseException, run: Run) -> MigratorError | None:
    """The session was lost while the migration's own code ran between two statements for longer than the
    server's idle_in_transaction_session_timeout: the server ended it for that (it says so, when its message
    got through; otherwise the gap shows it, since a session running a statement is never idle)."""
    orig = getattr(exc, "orig", None) or exc
    timeouts = run.timeouts
    if step is None or step.is_seed or step.partial or not (
            getattr(orig, "sqlstate", None) == IDLE_IN_TRANSACTION_TIMEOUT or step.gap > timeouts.idle):
        return None
    return MigrationFailed(
        f"migration {step.label} failed: the server ended its session because the migration ran its own code for "
        f"{step.gap:.1f}s after its last statement, longer than idle_in_transaction_session_timeout allows "
        f"(MIGRATOR_IDLE_TIMEOUT={timeouts.idle:g}s); its transaction ended with the session, so nothing of it was "
        "committed. Raise MIGRATOR_IDLE_TIMEOUT for a migration that computes this long between statements, then "
        "run migrate again")


def _interrupted(step: Step | None, exc: KeyboardInterrupt, said: Confirmed, run: Run) -> Verdict:
    """A signal: what was running, and what the server confirmed about it."""
    name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
    code = exc.exit_code if isinstance(exc, Interrupted) else 130
    if step is None:
        return Verdict(Interrupted(name, code, f"interrupted by {name} between steps; nothing was running"))
    if step.stamped and not step.is_seed:
        # The signal came while the step's COMMIT was in flight (a synchronous standby that does not answer):
        # only the version table can tell whether it committed.
        fate = {None: "whether it committed is not confirmed (the version table will tell the next run)",
                True: "it committed (the version table shows it)",
                False: "it did not commit (the version table does not show it); run it again to resume"}[said.committed]
        return Verdict(Interrupted(name, code, f"interrupted by {name} while {step.label} was committing: {fate}"))
    record = None
    if said.rolled_back and not step.is_seed:
        record = ("partial" if step.partial else "interrupted", "interrupted by a signal")
    if said.rolled_back:
        fate = "its running statement was cancelled and its transaction rolled back (confirmed by the server)"
        if said.invalid:
            fate += f"; it left {invalid_text(list(said.invalid))}"
    else:
        timeouts = run.timeouts
        unanswered = "the server did not confirm the rollback"
        if SHUTDOWN.grace_passed:
            unanswered += f" within {SIGNAL_GRACE:g}s of {name}, so every connection was shut down"
        fate = (f"{unanswered}; it ends the transaction when it notices the closed connection (within "
                f"MIGRATOR_IDLE_TIMEOUT={timeouts.idle:g}s of the last statement, or about {timeouts.stall:g}s of "
                "TCP keepalives if the network is down)")
    what = step.label
    if step.partial:
        nxt = "it runs again on the next migrate" if step.rerunnable else \
            "the next migrate stops at it (exit 6) until `migrator resolve`"
        return Verdict(Interrupted(name, code, f"interrupted by {name} during {what} after part of it committed "
                                               f"({step.what_committed()}): {fate}; {nxt}"), record)
    return Verdict(Interrupted(name, code, f"interrupted by {name} during {what}: {fate}; run it again to resume"),
                   record)


def record(session: MigrationSession, step: Step, version_table: str, outcome: str, detail: str) -> None:
    """Best effort: a history row saying how the step ended, in its own transaction."""
    conn, schema = session.conn, session.history_schema
    if conn.closed or conn.broken:
        return
    try:
        if step.history_id is not None:
            history.finish(conn, schema, step.history_id, outcome, redact(detail)[:2000])
        else:
            history.insert(conn, schema, version_table=version_table, revision=step.revision, parents=step.parents,
                           direction=step.history_direction, outcome=outcome,
                           started_at=step.server_started or datetime.now().astimezone(), finished=True,
                           detail=redact(detail)[:2000])
        conn.commit()
    except (psycopg.Error, MigratorError):
        database.rolled_back(conn)


def first_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return redact(f"{type(exc.orig).__name__}: {text}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
