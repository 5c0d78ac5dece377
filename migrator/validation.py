"""Validation of applied migrations (Flyway's validate and repair, Atlas's atlas.sum): has an applied revision's
file changed since it ran, or gone?

The history records each applied revision's checksum (migrator.source_checksum: what Python executes, not how
it is written) and the sha256 of its file's bytes, in the row written with the step's COMMIT
(migrator.tables.history). `migrate` and `status` compare them with the files:

- at head, with one value read in the version table's round trip: the digest of (revision, sha256) over the
  applied revisions, computed by the server, against the same digest over the files (the manifest's, or the
  scanner's); only when they differ are the rows fetched and the files' checksums compared;
- a file whose bytes changed but whose checksum did not (reformatted, a comment edited) is no change: its new
  sha256 is recorded, so that the next start answers with one query again;
- revisions applied before checksums were recorded, or by plain Alembic, have their checksums recorded on
  first sight (never an alarm), under the migration lock, so that replicas starting at once record them once;
- a changed file, or an applied revision whose file is gone, is refused by `migrate` (exit 2, one line naming
  them) unless MIGRATOR_VALIDATE (or migrator.toml's `validate`) says `warn` or `off`; `status` shows them;
  `migrator resolve REV --accept-checksum` accepts a deliberate change (Flyway's repair), in the history.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migrator import database, file_sums, manifest, server_session
from migrator.config import Settings
from migrator.database import Connection
from migrator.errors import ConfigError, RevisionError
from migrator.logs import get_logger
from migrator.manifest import RevisionSource, View
from migrator.tables import history, versions
from migrator.targets import Outcome, Target

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from migrator.session import MigrationSession

ERROR, WARN, OFF = "error", "warn", "off"
FIRST_SIGHT = "checksum recorded on first sight (applied before checksums were recorded, or by plain Alembic)"
REFORMATTED = "file reformatted since it ran (same checksum): its new file hash recorded"


class ChecksumMismatch(RevisionError):
    """An applied revision's file changed since it ran, or is gone (exit 2)."""


def policy(target: Target, settings: Settings) -> str:
    """MIGRATOR_VALIDATE, else the repo's `validate`, else error."""
    return settings.validate or target.repo.validate or ERROR


# --- the no-op path --------------------------------------------------------------------------------------

@dataclass
class Fast:
    """The no-op path of one target: the files' view (None: only Alembic can tell) and the policy."""

    target: Target
    policy: str
    view: View | None

    def read(self, conn: Connection) -> versions.DbState:
        """The version table, with the history's digest in the same round trip when validating."""
        repo = self.target.repo
        return versions.read(conn, repo.version_table, repo.version_table_schema,
                             digest=self.view is not None and self.policy != OFF)

    def at_head(self, found: versions.DbState) -> bool:
        view = self.view
        return view is not None and not found.partial and bool(view.heads) and set(found.versions) == view.heads

    def valid(self, found: versions.DbState) -> bool:
        """Nothing to compare: validation is off, or the applied revisions' file hashes are the files'."""
        return self.policy == OFF or (found.digest_read and self.view is not None
                                      and found.digest == self.view.digest)


def fast(target: Target, settings: Settings) -> Fast:
    return Fast(target, policy(target, settings), manifest.view(target.repo))


# --- comparing --------------------------------------------------------------------------------------------

@dataclass
class Drift:
    """How the applied revisions' files differ from what ran."""

    changed: list[RevisionSource] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unrecorded: list[RevisionSource] = field(default_factory=list)
    reformatted: list[RevisionSource] = field(default_factory=list)

    @property
    def alarm(self) -> bool:
        return bool(self.changed or self.missing)

    def describe(self) -> str:
        parts = []
        if self.changed:
            shown = ", ".join(f"{s.revision} ({short(s.path)})" for s in self.changed)
            parts.append(f"applied migration{_s(self.changed)} {shown} changed since {_it(self.changed)} ran")
        if self.missing:
            parts.append(f"applied migration{_s(self.missing)} {', '.join(self.missing)} "
                         f"{'is' if len(self.missing) == 1 else 'are'} missing from the files")
        return "; ".join(parts)


def _s(items: Collection[object]) -> str:
    return "" if len(items) == 1 else "s"


def _it(items: Collection[object]) -> str:
    return "it" if len(items) == 1 else "they"


def short(path: str) -> str:
    """A revision file as messages name it: its directory and name."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def compare(expected: dict[str, RevisionSource], known: Collection[str], recorded: dict[str, history.Recorded],
            sums: file_sums.Sums) -> Drift:
    """`expected`: the revisions applied according to the files (all of them at head); `known`: every revision
    the files have; `recorded`: what the history says is applied, with its checksums."""
    from migrator.source_checksum import ALGORITHM  # noqa: PLC0415

    drift = Drift()
    for revision, source in sorted(expected.items()):
        found = recorded.get(revision)
        if found is None or found.sums is None or not found.sums.checksum.startswith(ALGORITHM + ":"):
            drift.unrecorded.append(source)
        elif found.sums.file_hash != source.file_hash:
            same = sums.of(source.path).checksum == found.sums.checksum
            (drift.reformatted if same else drift.changed).append(source)
    drift.missing = sorted(set(recorded) - set(known))
    return drift


def _recorded(conn: Connection, target: Target) -> tuple[str, dict[str, history.Recorded]]:
    """The history's schema, and what it says is applied (nothing when there is no history yet)."""
    schema = server_session.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
    if not history.exists(conn, schema):
        return schema, {}
    return schema, history.applied(conn, schema, target.repo.version_table)


def at_head(conn: Connection, target: Target, view: View) -> Drift:
    """At head every revision of the files is applied: compare them all."""
    revisions = view.revisions()
    _, recorded = _recorded(conn, target)
    return compare(revisions, revisions.keys(), recorded, file_sums.sums_for(target.repo))


def judge(target: Target, drift: Drift, rule: str) -> None:
    """Refuse (exit 2) or warn about a changed or missing file, as the policy says."""
    if not drift.alarm or rule == OFF:
        return
    line = (f"{target.db.description}: {drift.describe()}: the database no longer matches these files. Restore "
            "them as they were, or accept a deliberate change with `migrator resolve REV --accept-checksum` "
            "(MIGRATOR_VALIDATE=warn lets migrate go on)")
    if rule == ERROR:
        raise ChecksumMismatch(line)
    get_logger().warning(line, repo=target.repo.name, changed=[s.revision for s in drift.changed],
                         missing=drift.missing)


# --- recording --------------------------------------------------------------------------------------------

def settle_at_head(target: Target, settings: Settings, conn: Connection, fast_path: Fast) -> None:
    """At head, the history's digest is not the files': judge what differs, and record what was not
    recorded (under the lock: replicas starting at once record it once)."""
    from migrator.session import locked  # noqa: PLC0415

    assert fast_path.view is not None
    drift = at_head(conn, target, fast_path.view)
    judge(target, drift, fast_path.policy)
    if not (drift.unrecorded or drift.reformatted):
        return
    with locked(target, settings, conn, satisfied=lambda: fast_path.valid(fast_path.read(conn))) as session:
        if session is None:
            return  # another migrator recorded them meanwhile
        if prepare(session, target):
            record(session, target, at_head(conn, target, fast_path.view))


def prepare(session: MigrationSession, target: Target) -> bool:
    """The history table, with its checksum columns (False when they could not be added this time)."""
    from migrator.session import prepare_history  # noqa: PLC0415

    prepare_history(session, target.repo.version_table)
    return session.history_checksums


def record(session: MigrationSession, target: Target, drift: Drift) -> None:
    """Record the checksums of revisions not recorded yet, and the new file hash of reformatted files, in
    one transaction."""
    rows = [(s.revision, s.parents, session_sums(target, s), FIRST_SIGHT) for s in drift.unrecorded]
    rows += [(s.revision, s.parents, session_sums(target, s), REFORMATTED) for s in drift.reformatted]
    if not rows:
        return
    conn = session.conn
    with _one_transaction(conn, "recording the checksums of applied revisions"):
        history.record_sums(conn, session.history_schema, target.repo.version_table, history.RECORDED, rows)
    get_logger().info(f"Recorded the checksums of {len(rows)} applied revision(s) on {target.db.description}",
                      repo=target.repo.name, first_sight=len(drift.unrecorded), reformatted=len(drift.reformatted))


@contextmanager
def _one_transaction(conn: Connection, doing: str) -> Iterator[None]:
    """A transaction on the autocommit session (`doing`: what a lost connection's line names). A failure inside
    (a signal, a lost session) is reported as itself: the transaction is rolled back where the server still
    answers, and the session is back in autocommit only then (psycopg refuses the switch inside a failed
    transaction, which would hide the cause)."""
    conn.doing = doing
    conn.autocommit = False
    try:
        yield
        conn.commit()
    except BaseException:
        if database.rolled_back(conn):
            conn.autocommit = True
        raise
    conn.autocommit = True


def session_sums(target: Target, source: RevisionSource) -> history.FileSums:
    return file_sums.sums_for(target.repo).of(source.path)


# --- the runs that load Alembic -----------------------------------------------------------------------------

def from_script(script: ScriptDirectory, current: tuple[str, ...],
                sums: file_sums.Sums) -> tuple[dict[str, RevisionSource], set[str]]:
    """The revisions applied according to Alembic's view of the files (the ancestors of `current`), and every
    revision the files have."""
    from migrator import alembic_internals as internals  # noqa: PLC0415

    known = {s.revision: s for s in internals.revisions(script)}
    applied = script.iterate_revisions(current, "base") if current else []
    expected = {s.revision: RevisionSource(s.revision, s.path, internals.parents(s), sums.hash_of(s.path))
                for s in applied if s is not None and s.revision in known}
    return expected, set(known)


def before_upgrade(target: Target, settings: Settings, session: MigrationSession, script: ScriptDirectory,
                   current: tuple[str, ...]) -> None:
    """Under the lock, before any step: judge the applied revisions' files, record what was not recorded."""
    rule = policy(target, settings)
    if rule == OFF or not prepare(session, target):
        return
    sums = file_sums.sums_for(target.repo)
    expected, known = from_script(script, current, sums)
    recorded = history.applied(session.conn, session.history_schema, target.repo.version_table)
    drift = compare(expected, known, recorded, sums)
    judge(target, drift, rule)
    record(session, target, drift)


def for_status(conn: Connection, target: Target, settings: Settings, script: ScriptDirectory,
               current: tuple[str, ...]) -> Drift | None:
    """What `status` shows (None when validation is off); reads only."""
    if policy(target, settings) == OFF:
        return None
    sums = file_sums.sums_for(target.repo)
    expected, known = from_script(script, current, sums)
    _, recorded = _recorded(conn, target)
    return compare(expected, known, recorded, sums)


# --- resolve --accept-checksum ------------------------------------------------------------------------------

def accept(target: Target, settings: Settings, revision: str) -> Outcome:
    """Accept the file of `revision` as it is now (changed), or its absence (missing): recorded in the history,
    so that validation compares with it from now on."""
    from migrator import scripts  # noqa: PLC0415
    from migrator.session import locked  # noqa: PLC0415
    from migrator.targets import connection  # noqa: PLC0415

    started = time.monotonic()
    _, script = scripts.load(target.repo)
    with connection(target, settings) as conn, locked(target, settings, conn) as session:
        assert session is not None
        if not prepare(session, target):
            raise ConfigError(f"the migration history on {target.db.description} is busy (its checksum columns "
                              "could not be added within MIGRATOR_DDL_LOCK_TIMEOUT); try again")
        current = versions.read(conn, target.repo.version_table, target.repo.version_table_schema).versions
        sums = file_sums.sums_for(target.repo)
        expected, known = from_script(script, current, sums)
        drift = compare(expected, known, history.applied(conn, session.history_schema, target.repo.version_table),
                        sums)
        rev, source = _accepted(target, drift, revision)
        with _one_transaction(conn, f"recording the accepted checksum of {rev}"):
            history.record_sums(conn, session.history_schema, target.repo.version_table, history.ACCEPTED, [
                (rev, source.parents if source else (), sums.of(source.path) if source else None,
                 "checksum accepted by an operator (migrator resolve --accept-checksum)" if source else
                 "file removed; accepted by an operator (migrator resolve --accept-checksum)")])
    note = f"{rev}'s {'changed file' if source else 'missing file'} accepted"
    get_logger().info(f"Accepted on {target.db.description}: {note}", repo=target.repo.name, revision=rev)
    return Outcome(target.repo.name, "resolve", current, current, [rev], time.monotonic() - started, note=note)


def _accepted(target: Target, drift: Drift, revision: str) -> tuple[str, RevisionSource | None]:
    """The revision to accept: one the comparison found changed or missing, named whole or by a unique prefix."""
    candidates: dict[str, RevisionSource | None] = {s.revision: s for s in drift.changed}
    candidates.update(dict.fromkeys(drift.missing))
    matches = [rev for rev in candidates if rev == revision] or [rev for rev in candidates if rev.startswith(revision)]
    if len(matches) != 1:
        what = "matches several" if matches else "is not an applied migration whose file changed or is missing"
        raise RevisionError(f"nothing to accept: {revision} {what} on {target.db.description} "
                            f"(see migrator status)")
    return matches[0], candidates[matches[0]]
