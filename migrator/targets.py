"""What a command works on, and what it did: one repo and its database (Target), the autocommit connection
that reads where the database stands, and the Outcome that the log's last line and the termination message
summarise. Light on purpose: the no-op path (`migrate` at head, `status --check`, `wait`) loads nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from migrator import database
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection
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
    """The autocommit connection that reads the state and, when there is work, becomes the migration session."""
    with database.connect(target.db, settings.timeouts, autocommit=True, purpose=purpose) as conn:
        conn.doing = "reading the version table"
        yield conn


def state(conn: Connection, target: Target) -> versions.DbState:
    """Where the database stands: its version table's revisions, and whether a migration was left part-way."""
    return versions.read(conn, target.repo.version_table, target.repo.version_table_schema)
