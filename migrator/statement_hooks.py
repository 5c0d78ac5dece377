"""SQLAlchemy cursor events of the running step: each statement described and logged in Ecto's words,
CONCURRENTLY statements given their own lock_timeout, and a statement that would end the step's transaction
refused or (a COMMIT in a migration) recorded as the boundary where the step becomes non-transactional.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import psycopg

from migrator import progress, statements
from migrator.errors import MigrationFailed
from migrator.logs import get_logger
from migrator.session import MigrationSession
from migrator.steps import Step
from migrator.tables import history

if TYPE_CHECKING:
    from migrator.monitor import Monitor


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
        step.gap = time.monotonic() - step.last_answer
        op = statements.describe(statement)
        if op.touches(self.version_table) or op.touches(history.TABLE):
            return  # Alembic's and migrator's own bookkeeping
        fields = {"seed": step.revision} if step.is_seed else {"revision": step.revision}
        (self._log.debug if op.quiet else self._log.info)(op.text, **fields)
        step.statements.append(op.text)
        self._running = op.text
        _began(self.session.monitor, op.text, fields)
        if op.index:
            step.indexes.add(op.index)
        if op.ends_transaction:
            self._ending(step, op.ending or "a transaction control statement")
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

    def _ending(self, step: Step, verb: str) -> None:
        """`verb` (the statement that ends the transaction, of possibly several sent as one text): a COMMIT in a
        migration is a boundary; anything else, or any of them in a seed, is refused before it is sent."""
        if not step.allow_commit or not verb.startswith(("COMMIT", "END")) or "PREPARED" in verb:
            step.statements.pop()
            raise MigrationFailed(f"{step.label} executes {verb}, which would end the transaction migrator runs it "
                                  "in (it was not sent). "
                                  + ("Seeds run in one transaction with their ledger row: remove it"
                                     if step.is_seed else
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
        _ended(self.session.monitor)
        step = self.session.current
        if step is not None:
            step.answered += 1
            step.last_answer, step.gap = time.monotonic(), 0.0  # answered: the gap before it did no harm
            if step.autocommit and self._running is not None:
                step.committed.append(self._running)  # it succeeded outside any transaction: it is committed
                step.settled = len(step.statements)
        self._running = None
        if self._restore_lock_timeout:
            self._restore_lock_timeout = False
            self._set_lock_timeout(self.session.settings.timeouts.ddl_lock)

    def failed(self, _context: Any) -> None:
        _ended(self.session.monitor)
        self._running = None
        if self._restore_lock_timeout:
            self._restore_lock_timeout = False
            with suppress(psycopg.Error):  # the connection is failing; the next step resets every setting anyway
                self._set_lock_timeout(self.session.settings.timeouts.ddl_lock)

    def _set_lock_timeout(self, seconds: float) -> None:
        self.session.conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{round(seconds * 1000)}ms",))


def _began(monitor: Monitor | None, statement: str, fields: Mapping[str, Any]) -> None:
    """A migration statement was sent: its progress is reported while it runs, if a monitor watches."""
    if monitor is None:
        progress.unwatched()
        return
    monitor.progress.began(statement, fields)


def _ended(monitor: Monitor | None) -> None:
    if monitor is not None:
        monitor.progress.ended()
