"""One migration or seed while it runs: what it has sent, what the server answered, what is known to have
committed, and the checks made before it may commit (no part-way rollback, no INVALID index left behind).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from migrator.database import Connection
from migrator.errors import MigrationFailed, MigratorError
from migrator.tables import history

FORWARD, BACKWARD, SEED = "forward", "backward", "seed"
# INVALID plain indexes (a failed or interrupted concurrent build); a partitioned table's index made ON ONLY
# is invalid by design until its partitions' indexes are attached, and is not counted.
INVALID_INDEXES = ("SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                   "WHERE NOT i.indisvalid AND c.relkind = 'i' AND c.relpersistence <> 't'")


@dataclass
class Step:
    """One migration (or seed) while it runs, and what it has done so far."""

    revision: str
    label: str  # `20211104101500 (add_users_email_index)` or `seed 01_users.py`
    direction: str
    parents: tuple[str, ...] = ()
    rerunnable: bool = False
    started: float = field(default_factory=time.monotonic)
    last_answer: float = field(default_factory=time.monotonic)  # when the server last answered one of its statements
    gap: float = 0.0  # how long its own code ran, between that answer and the statement it sent last
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

    @property
    def is_seed(self) -> bool:
        return self.direction == SEED

    @property
    def history_direction(self) -> str:
        return history.UP if self.direction == FORWARD else history.DOWN

    def what_committed(self) -> str:
        shown = self.committed
        if not shown:
            return "nothing yet"
        return "; ".join(shown[:8]) + (f"; ... ({len(shown)} in all)" if len(shown) > 8 else "")


def refuse_own_rollback(step: Step) -> None:
    """A step that rolled back its own transaction part-way lost what it ran before: it must not commit the rest."""
    if step.rollbacks:
        raise MigrationFailed(f"{step.label} rolled back its own transaction part-way (op.get_bind().rollback() or "
                              "similar): what it ran before that was undone while the rest went on, so none of it "
                              "is committed; raise an exception to fail a migration instead")


def invalid_indexes(conn: Connection, step: Step) -> list[str]:
    """INVALID indexes that appeared during the step, or that its statements named."""
    rows = conn.execute(INVALID_INDEXES).fetchall()
    touched = {_bare(name) for name in step.indexes}
    return sorted(r[0] for r in rows if r[0] not in step.invalid_before or _bare(r[0]) in touched)


def check_indexes(conn: Connection, step: Step) -> None:
    """No exit 0 with an INVALID index the step built or touched (a concurrent build that did not finish)."""
    bad = invalid_indexes(conn, step)
    if bad:
        raise IndexLeftInvalid(f"{step.label} left {invalid_text(bad)}")


class IndexLeftInvalid(MigratorError):
    """Raised inside the step's final transaction; reported as a failure after part of the step committed."""


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"')


def invalid_text(indexes: list[str]) -> str:
    repair = " ".join(f"DROP INDEX CONCURRENTLY {name};" for name in indexes)
    return (f"INVALID index(es) {', '.join(indexes)} (a concurrent build that did not finish: queries do not use "
            f"it, and a unique one enforces nothing); repair with `{repair}` before running it again")
