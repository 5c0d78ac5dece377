"""Where a database stands against this image's scripts: current revision(s), heads, pending revisions,
revisions the scripts do not know (a newer release migrated it), and migrations left part-way.

At head, the answer comes from the files' text and one query (`status --check` in a readiness probe or a
`helm test`); otherwise Alembic computes what is pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator import scripts, server_session, validation, version_skew
from migrator.config import Settings
from migrator.database import Connection
from migrator.logs import get_logger
from migrator.scripts import Known
from migrator.tables import history
from migrator.targets import Target, connection, state


@dataclass
class Status:
    """Where a database stands against the scripts."""

    repo: str
    database: str
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: list[str]
    unknown: list[str]
    partial: list[str] = field(default_factory=list)  # migrations left part-way, described
    newer: str = ""  # why a newer database is accepted (--allow-newer and a proof), else empty
    changed: list[str] = field(default_factory=list)  # applied revisions whose file changed since they ran
    missing: list[str] = field(default_factory=list)  # applied revisions whose file is gone
    unrecorded: int = 0  # applied revisions whose checksum the next migrate records (first sight)

    def drift(self, found: validation.Drift | None) -> Status:
        """With what validation found (migrator.validation)."""
        if found is not None:
            self.changed = [f"{s.revision} ({validation.short(s.path)})" for s in found.changed]
            self.missing = found.missing
            self.unrecorded = len(found.unrecorded) + len(found.reformatted)
        return self

    @property
    def at_head(self) -> bool:
        if self.partial:
            return False
        if self.newer:
            return True
        return not self.pending and not self.unknown and set(self.current) == set(self.heads)

    def behind(self) -> str:
        """Why it is not at head, in a few words."""
        if self.partial:
            return f"left part-way: {self.partial[-1]}"
        if self.unknown:
            return f"at unknown revision {', '.join(self.unknown)}"
        return f"{len(self.pending)} pending: {', '.join(self.pending)}"


def status(target: Target, settings: Settings, allow_newer: bool = False) -> Status:
    """Current revision(s), head(s), pending revisions, revisions the scripts do not know, and migrations
    left part-way. With `allow_newer`, a newer database that the history proves descends from this image's
    heads counts as at head."""
    fast = validation.fast(target, settings)
    with connection(target, settings, purpose="status") as conn:
        found = fast.read(conn)
        if fast.view is not None and fast.at_head(found):
            where = Status(target.repo.name, target.db.description, found.versions, tuple(sorted(fast.view.heads)),
                           [], [])
            return where.drift(None if fast.valid(found) else validation.at_head(conn, target, fast.view))
        where, known = read(target, conn, settings)
        if where.unknown and allow_newer:
            proven, why = version_skew.descends(conn, target, where.current, known)
            if proven:
                where.newer = why
                get_logger().info(f"{target.db.description} is at newer revision {', '.join(where.unknown)}: {why} "
                                  "(--allow-newer)", repo=target.repo.name)
        return where


def read(target: Target, conn: Connection, settings: Settings | None = None) -> tuple[Status, Known]:
    """The full answer, from Alembic's view of the scripts; and what the scripts know (with `settings`, what
    validation finds: migrator.validation)."""
    from migrator import alembic_internals as internals  # noqa: PLC0415  (Alembic only off the fast path)

    _, script = scripts.load(target.repo)
    known = scripts.known_from(script)
    found = state(conn, target)
    unknown = known.unknown(found.versions)
    pending: list[str] = []
    if not unknown:
        pending = [internals.step_script(step).revision
                   for step in internals.upgrade_plan(script, "heads", found.versions)]
    partial: list[str] = []
    if found.partial:
        schema = server_session.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
        partial = [row.describe() for row in history.open_rows(conn, schema, target.repo.version_table)]
    where = Status(target.repo.name, target.db.description, found.versions, tuple(sorted(known.heads)), pending,
                   unknown, partial)
    if settings is not None and not unknown:
        where.drift(validation.for_status(conn, target, settings, script, found.versions))
    return where, known
