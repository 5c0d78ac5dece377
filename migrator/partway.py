"""Migrations left part-way: a non-transactional migration that committed part of itself and did not finish.

golang-migrate's dirty flag, made explicit: the history's open rows (`running`, `partial`) name them. A run
stops at one (exit 6) unless its revision declares `rerunnable = True`, and never builds on one it does not
run; an operator decides with `migrator resolve REV --rerun` (run it again) or `--mark-applied` (completed by
hand: its version is stamped).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from alembic.script import ScriptDirectory

from migrator import alembic_internals as internals
from migrator import scripts, server_session
from migrator.config import Settings
from migrator.database import Connection
from migrator.errors import PartiallyApplied, RevisionError
from migrator.logs import get_logger
from migrator.session import MigrationSession, locked, prepare_history
from migrator.steps import FORWARD, Step
from migrator.tables import history, versions
from migrator.targets import Outcome, Target, connection, state


def refuse(target: Target, conn: Connection) -> None:
    """A migration left part-way needs a decision; name it (exit 6)."""
    schema = server_session.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
    rows = history.open_rows(conn, schema, target.repo.version_table)
    if rows:
        raise PartiallyApplied(f"{target.db.description}: migration {rows[-1].describe()}; decide with `migrator "
                               f"resolve {rows[-1].revision} --rerun|--mark-applied` (see migrator status)")


def refuse_elsewhere(open_rows: dict[str, list[history.OpenRow]], planned: Iterable[str], direction: str) -> None:
    """A migration left part-way that this run will not run (the other direction, or not in its plan)
    stops the run: going on would build on a half-applied schema."""
    wanted = history.UP if direction == FORWARD else history.DOWN
    planned = set(planned)
    for rows in open_rows.values():
        row = rows[-1]
        if row.direction != wanted or row.revision not in planned:
            phase = "migrate" if row.direction == history.UP else "rollback"
            raise PartiallyApplied(
                f"migration {row.describe()}; this {'migrate' if wanted == history.UP else 'rollback'} does "
                f"not run it, and would build on a half-applied schema. Finish it first: run the {phase} again "
                f"if it is rerunnable, or decide with `migrator resolve {row.revision} --rerun|--mark-applied`")


def decide(open_rows: dict[str, list[history.OpenRow]], step: Step) -> None:
    """A migration left part-way by an earlier run: run it again only if it says it may."""
    rows = open_rows.get(step.revision, [])
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


def resolve(target: Target, settings: Settings, revision: str, *, rerun: bool) -> Outcome:
    """Decide a migration left part-way: run it again on the next migrate (`rerun`), or mark it done.

    For `--mark-applied` the operator has completed the migration by hand: its version is stamped (an
    upgrade: its parents -> it; a downgrade: it -> its parents), which needs the database at the revision
    the interrupted step started from.
    """
    started = time.monotonic()
    _, script = scripts.load(target.repo)
    rev = internals.resolve(script, revision)
    with connection(target, settings) as conn, locked(target, settings, conn) as session:
        assert session is not None
        rows = [r for r in prepare_history(session, target.repo.version_table) if r.revision == rev]
        if not rows:
            raise RevisionError(f"nothing to resolve: {rev} is not left part-way on {target.db.description} "
                                "(see migrator status and migrator history)")
        before = state(conn, target).versions
        how = "operator: run it again" if rerun else "operator: marked done by hand"
        conn.autocommit = False
        if not rerun:
            _stamp_done(session, target, script, row=rows[-1], current=before)
        history.resolve_open(conn, session.history_schema, target.repo.version_table, rev, how)
        conn.commit()
        conn.autocommit = True
        after = state(conn, target).versions
    again = "migrate" if rows[-1].direction == history.UP else "rollback through it"
    note = (f"{rev} will run again on the next {again}" if rerun else f"{rev} marked as done")
    get_logger().info(f"Resolved {rev} on {target.db.description}: {note}", repo=target.repo.name, revision=rev)
    return Outcome(target.repo.name, "resolve", before, after, [rev], time.monotonic() - started, note=note)


def _stamp_done(session: MigrationSession, target: Target, script: ScriptDirectory, *, row: history.OpenRow,
                current: tuple[str, ...]) -> None:
    revision = script.get_revision(row.revision)
    assert revision is not None
    parents = internals.parents(revision)
    before, after = (parents, (row.revision,)) if row.direction == history.UP else ((row.revision,), parents)
    if set(before) - set(current) or (set(current) & set(after)):
        raise RevisionError(f"cannot mark {row.revision} as done: the database is at {', '.join(current) or 'base'}, "
                            f"not at {', '.join(before) or 'base'} where that step started")
    versions.stamp(session.conn, target.repo.version_table, target.repo.version_table_schema, remove=before,
                   add=after)
    history.insert(session.conn, session.history_schema, version_table=target.repo.version_table,
                   revision=row.revision, parents=parents, direction=row.direction,
                   outcome="applied" if row.direction == history.UP else "reverted",
                   started_at=row.started_at, finished=True, detail="marked done by an operator (migrator resolve)")
