"""What a command works on, and what it did: one repo and its database (Target), the autocommit connection
that reads where the database stands, and the Outcome that the log's last line and the termination message
summarise. Light on purpose: the no-op path (`migrate` at head, `status --check`, `wait`) loads nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from migrator import database
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection
from migrator.errors import MigratorError
from migrator.repos import Repo
from migrator.tables import versions


@dataclass(frozen=True)
class Target:
    """One repo and the database it migrates; of a repo with tenants, one tenant (migrator.tenants)."""

    repo: Repo
    db: DatabaseConfig
    tenant: str | None = None
    # Schema-per-tenant: the search_path every migration and seed starts from (migrator.session).
    search_path: str | None = None
    shared: SharedConnection | None = field(default=None, compare=False, repr=False)


@dataclass
class Outcome:
    """What a command did to one database, for the log's last line and the termination message."""

    repo: str
    action: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    def summary(self) -> str:
        at = ",".join(self.after) or "base"
        if self.note:
            return f"{self.action} {self.repo}: {self.note}"
        if self.action == "wait":
            return f"wait {self.repo}: ready at {at} after {self.seconds:.1f}s"
        if not self.changed:
            return f"{self.action} {self.repo}: nothing to do, at {at}"
        verb = {"migrate": "applied", "rollback": "rolled back", "seed": "seeded"}.get(self.action, "done")
        return (f"{self.action} {self.repo}: {len(self.changed)} {verb} ({', '.join(self.changed)}), "
                f"{','.join(self.before) or 'base'} -> {at} in {self.seconds:.1f}s")


@contextmanager
def connection(target: Target, settings: Settings, purpose: str = "migrations") -> Iterator[Connection]:
    """The autocommit connection that reads the state and, when there is work, becomes the migration session:
    a new one, or the one a repo's schema tenants share (SharedConnection)."""
    if target.shared is not None:
        with target.shared.lent(target, settings, purpose) as conn:
            yield conn
        return
    with database.connect(target.db, settings.timeouts, autocommit=True, purpose=purpose) as conn:
        conn.doing = "reading the version table"
        try:
            yield conn
        except MigratorError:
            # A failure on its way out, explained (and recorded) already: closed without psycopg's rollback,
            # whose wait a signal that came meanwhile would interrupt, making it the outcome instead of the
            # failure. The server ends whatever the session still had open.
            conn.close()
            raise


class SharedConnection:
    """One connection that the schema tenants of a repo use in turn (one database, one login), instead of one
    each: a connection costs the server a process, an authentication and cold caches, most of what a tenant
    already at head costs. A tenant's command borrows it and gives it back when it ended well, emptied with
    DISCARD ALL (its settings, temporary tables, prepared statements and advisory locks: nothing one tenant's
    migrations left in the session reaches the next); after a failure it is closed, and the next tenant
    connects anew."""

    def __init__(self) -> None:
        self.conn: Connection | None = None

    @contextmanager
    def lent(self, target: Target, settings: Settings, purpose: str) -> Iterator[Connection]:
        conn, self.conn = self.conn, None
        if conn is None:
            conn = database.connect(target.db, settings.timeouts, autocommit=True, purpose=purpose)
            # psycopg prepares a query it ran five times, and would not know that DISCARD ALL dropped it.
            conn.prepare_threshold = None
        conn.doing = "reading the version table"
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self.conn = self._emptied(conn)

    @staticmethod
    def _emptied(conn: Connection) -> Connection | None:
        if conn.closed or conn.broken or not conn.autocommit or \
                conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return None
        conn.doing = "emptying the session for the next tenant"
        try:
            conn.execute("DISCARD ALL")
        except psycopg.Error:  # the tenant's work is done; the next one connects anew
            conn.close()
            return None
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def state(conn: Connection, target: Target) -> versions.DbState:
    """Where the database stands: its version table's revisions, and whether a migration was left part-way."""
    return versions.read(conn, target.repo.version_table, target.repo.version_table_schema)
