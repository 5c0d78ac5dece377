"""Version skew: an older image meets a database a newer release migrated.

By default a database at a revision this image's scripts do not have is refused (exit 2) or waited out: this
image's code was not written for that schema. With --allow-newer it is accepted when the migration history
proves that the database's revisions descend from every head this image knows: unknown revisions are followed
through the parents the history recorded for them, known ones through this image's scripts (expand/contract
migrations keep old code working on the newer schema). Anything the history cannot prove is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from migrator import server_session
from migrator.database import Connection
from migrator.errors import RevisionError
from migrator.logs import get_logger
from migrator.scripts import Known
from migrator.tables import history, versions
from migrator.targets import Outcome, Target


def accept_newer(target: Target, conn: Connection, state: versions.DbState, known: Known, *, allow_newer: bool,
                 action: str, started: float) -> Outcome:
    """A database at a revision this image does not know: accepted (exit 0, nothing done) when allowed and
    the history proves it descends from this image's heads; refused otherwise (exit 2)."""
    unknown = known.unknown(state.versions)
    at = ", ".join(unknown)
    if not allow_newer:
        raise RevisionError(f"{target.db.description} is at revision {at}, which these migrations do not have (a "
                            "newer release migrated it?): deploy that release's migrator image, or pass "
                            "--allow-newer if your migrations are expand/contract")
    proven, found = descends(conn, target, state.versions, known)
    if not proven:
        raise RevisionError(f"{target.db.description} is at revision {at}, which these migrations do not have, "
                            f"and --allow-newer cannot accept it: {found}; deploy the newer release's migrator "
                            "image")
    note = f"{target.db.description} is at newer revision {at}: {found}; nothing to do for this image"
    get_logger().info(f"Accepted a newer database (--allow-newer): {note}", repo=target.repo.name,
                      revision=list(state.versions))
    return Outcome(target.repo.name, action, state.versions, state.versions, [], time.monotonic() - started,
                   note=f"accepted newer revision {at} (--allow-newer)")


def descends(conn: Connection, target: Target, current: tuple[str, ...], known: Known) -> tuple[bool, str]:
    """Whether the history proves that `current` descends from every head this image knows."""
    schema = server_session.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
    if not history.exists(conn, schema):
        return False, "there is no migration history to prove its ancestry"
    recorded = history.applied_parents(conn, schema, target.repo.version_table)
    return descends_from(current, recorded=recorded, known=known.parents, heads=known.heads)


def descends_from(current: Iterable[str], *, recorded: Mapping[str, tuple[str, ...]],
                  known: Mapping[str, tuple[str, ...]], heads: Iterable[str]) -> tuple[bool, str]:
    """Whether `current` descends from every one of `heads` (this image's), as far as can be proven: unknown
    revisions are followed through their `recorded` parents (the history's), known ones through `known`
    (revision -> parents from this image's scripts). Returns (proven, what was found)."""
    reached: set[str] = set()
    frontier = list(current)
    while frontier:
        revision = frontier.pop()
        if revision in reached:
            continue
        reached.add(revision)
        if revision in known:
            frontier.extend(known[revision])
        elif revision in recorded:
            frontier.extend(recorded[revision])
        else:
            return False, f"the history has no record of revision {revision}, so its ancestry is unknown"
    missing = sorted(set(heads) - reached)
    if missing:
        return False, f"it does not descend from {', '.join(missing)} (a different branch, or rolled back)"
    return True, f"it descends from {', '.join(sorted(heads))} (proven by the migration history)"
