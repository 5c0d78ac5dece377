"""The migrator's commands: one small documented function each, like alembic/command.py.

Each takes a Target (one repo and its database) and Settings, logs what it does, and returns what it did;
none parses arguments or prints results (that is the CLI's job), and none catches errors (they carry their
exit codes up to the CLI). Alembic and SQLAlchemy are imported only on the paths that need them, so that
`migrate`, `status --check` and `wait` cost a psycopg connection and one query when nothing is pending.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from migrator import database, heads, lock
from migrator.config import DatabaseConfig, Settings
from migrator.errors import NotAtHead, RevisionError
from migrator.logs import get_logger
from migrator.repos import Repo

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from migrator.runner import Run


@dataclass(frozen=True)
class Target:
    """One repo and the database it migrates."""

    repo: Repo
    db: DatabaseConfig


@dataclass
class Outcome:
    """What a command did to one database, for the log's last line and the termination message."""

    repo: str
    action: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        at = ",".join(self.after) or "base"
        if not self.changed:
            return f"{self.action} {self.repo}: nothing to do, at {at}"
        verb = {"migrate": "applied", "rollback": "rolled back", "seed": "seeded"}.get(self.action, "done")
        return (f"{self.action} {self.repo}: {len(self.changed)} {verb} ({', '.join(self.changed)}), "
                f"{','.join(self.before) or 'base'} -> {at} in {self.seconds:.1f}s")


@dataclass
class Status:
    """Where a database stands against the scripts."""

    repo: str
    database: str
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: list[str]
    unknown: list[str]

    @property
    def at_head(self) -> bool:
        return not self.pending and not self.unknown and set(self.current) == set(self.heads)


# --- shared pieces ------------------------------------------------------------------------------------

def _graph(repo: Repo) -> heads.ScriptGraph | None:
    """The scripts' graph from their text, or None when only Alembic can tell (the fast path steps aside)."""
    try:
        return heads.scan(repo.versions_dir)
    except heads.Uncertain as exc:
        get_logger().debug(f"fast path not taken: {exc}")
        return None


def _versions(conn: psycopg.Connection[Any], repo: Repo) -> tuple[str, ...]:
    return heads.read_versions(conn, repo.version_table, repo.version_table_schema) or ()


@contextmanager
def _connection(target: Target, settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """The autocommit connection that reads the version table and holds the migration lock."""
    with database.connect(target.db, settings.timeouts.connect, autocommit=True, purpose="lock") as conn:
        yield conn


@contextmanager
def _locked(target: Target, settings: Settings, conn: psycopg.Connection[Any]) -> Iterator[None]:
    dbname, schema = lock.current_schema(conn, target.repo.version_table_schema)
    key = lock.lock_key(dbname, schema, target.repo.version_table)
    with lock.migration_lock(conn, key, settings.timeouts.lock, what=target.db.description):
        yield


def _run(target: Target, settings: Settings, conn: psycopg.Connection[Any]) -> Run:
    from migrator import runner  # noqa: PLC0415  (Alembic only when there is work)

    config = runner.alembic_config(target.repo)
    return runner.Run(target.repo, target.db, settings, conn, config, runner.load_script(config))


def _unknown(script: ScriptDirectory, versions: tuple[str, ...]) -> list[str]:
    known = {s.revision for s in script.walk_revisions()}
    return sorted(set(versions) - known)


def _refuse_unknown(target: Target, script: ScriptDirectory, versions: tuple[str, ...]) -> None:
    unknown = _unknown(script, versions)
    if unknown:
        raise RevisionError(f"{target.db.description} is at revision {', '.join(unknown)}, which these migrations "
                            "do not have (a newer release ran?); deploy that release's migrator image instead")


def _already_up(target: Target, versions: tuple[str, ...], started: float) -> Outcome:
    get_logger().info(f"Migrations already up: {target.db.description} at {', '.join(versions)}",
                      repo=target.repo.name, revision=list(versions))
    return Outcome(target.repo.name, "migrate", versions, versions, [], time.monotonic() - started)


# --- migrate ------------------------------------------------------------------------------------------

def migrate(target: Target, settings: Settings, to: str | None = None) -> Outcome:
    """Upgrade to the head revision (or `to`), one transaction per migration, under the migration lock.

    When the database already holds the scripts' heads, answer from the files' text and one query, without
    the lock and without Alembic. Several heads are refused unless `to` names the target.
    """
    started = time.monotonic()
    graph = _graph(target.repo) if to is None else None
    with _connection(target, settings) as conn:
        before = _versions(conn, target.repo)
        if graph is not None and heads.at_head(graph, before):
            return _already_up(target, before, started)
        with _locked(target, settings, conn):
            before = _versions(conn, target.repo)  # another migrator may have finished while we waited
            if graph is not None and heads.at_head(graph, before):
                return _already_up(target, before, started)
            return _upgrade(target, settings, conn, to, before=before, started=started)


def _upgrade(target: Target, settings: Settings, conn: psycopg.Connection[Any], to: str | None, *,
             before: tuple[str, ...], started: float) -> Outcome:
    from migrator.runner import FORWARD, StepLog, revision_errors  # noqa: PLC0415

    run = _run(target, settings, conn)
    _refuse_unknown(target, run.script, before)
    with revision_errors():
        script_heads = run.script.get_heads()
        if to is None and len(script_heads) > 1:
            raise RevisionError(f"the migrations have several heads ({', '.join(sorted(script_heads))}): merge "
                                "them (alembic merge heads) or choose one with migrate --to REV")
        destination = _resolve(run.script, to) if to is not None else "head"
    steps = StepLog(FORWARD, target.repo.version_table)
    done = run.execute(steps, lambda current: run.script._upgrade_revs(destination, current),  # type: ignore[arg-type]
                       destination)
    after = _versions(conn, target.repo)
    if not done:
        return _already_up(target, after, started)
    outcome = Outcome(target.repo.name, "migrate", before, after, done, time.monotonic() - started)
    get_logger().info(f"Migrated {target.db.description} to {', '.join(after)}", repo=target.repo.name,
                      revision=list(after), applied=len(done), duration=round(outcome.seconds, 3))
    return outcome


# --- rollback -----------------------------------------------------------------------------------------

def rollback(target: Target, settings: Settings, to: str | None = None, steps: int | None = None,
             dry_run: bool = False) -> Outcome:
    """Downgrade so that `to` is the newest applied revision (`base` undoes all), or by `steps` migrations.

    Alembic's meaning of `downgrade REV`: REV itself stays applied (Ecto's `to:` would revert it too).
    A target that is not below the current revision is a revision error; being at it already is a no-op.
    `dry_run` logs what would be reverted and changes nothing.
    """
    from migrator.runner import BACKWARD, StepLog  # noqa: PLC0415

    started = time.monotonic()
    with _connection(target, settings) as conn:
        run = _run(target, settings, conn)
        if to is not None:
            _resolve(run.script, to)  # an unknown or ambiguous target fails before any lock or change
        with _locked(target, settings, conn) if not dry_run else nullcontext():
            before = _versions(conn, target.repo)
            _refuse_unknown(target, run.script, before)
            destination = _rollback_destination(run.script, before, to, steps)
            if destination is None:
                get_logger().info(f"Nothing to roll back: {target.db.description} is at {to}", repo=target.repo.name)
                return Outcome(target.repo.name, "rollback", before, before, [], time.monotonic() - started)
            plan = run.script._downgrade_revs(destination, before)  # type: ignore[arg-type]
            if dry_run:
                return _dry_run(target, before, plan, started)
            done = run.execute(StepLog(BACKWARD, target.repo.version_table),
                               lambda current: run.script._downgrade_revs(destination, current),  # type: ignore[arg-type]
                               destination)
            after = _versions(conn, target.repo)
    get_logger().info(f"Rolled back {target.db.description} to {', '.join(after) or 'base'}",
                      repo=target.repo.name, revision=list(after), reverted=len(done))
    return Outcome(target.repo.name, "rollback", before, after, done, time.monotonic() - started)


def _dry_run(target: Target, before: tuple[str, ...], plan: list[Any], started: float) -> Outcome:
    from migrator.runner import BACKWARD, StepLog  # noqa: PLC0415

    log = StepLog(BACKWARD, target.repo.version_table, dry_run=True)
    for step in plan:
        log.begin(step.revision)
    get_logger().info(f"Dry run: {len(plan)} migration(s) would be reverted; nothing was changed",
                      repo=target.repo.name)
    return Outcome(target.repo.name, "rollback", before, before, [], time.monotonic() - started)


def _resolve(script: ScriptDirectory, rev: str) -> str:
    """The full id of `rev` (a unique prefix of four or more characters will do), or `base`/`head(s)`."""
    from alembic.script.revision import ResolutionError  # noqa: PLC0415

    if rev in ("base", "head", "heads"):
        return rev
    try:
        found = script.revision_map.get_revision(rev)
    except ResolutionError as exc:
        if str(exc).startswith("Multiple revisions"):
            raise RevisionError(f"revision {rev!r} is ambiguous: {str(exc).split(': ', 1)[1]} "
                                "(give more characters)") from None
        raise RevisionError(f"unknown revision {rev!r}: it is not in {script.versions}") from None
    except Exception as exc:  # Alembic's own errors for malformed identifiers (relative, branch@rev)
        raise RevisionError(f"bad revision {rev!r}: {' '.join(str(exc).split())}") from None
    if found is None:
        raise RevisionError(f"unknown revision {rev!r}: it is not in {script.versions}")
    return found.revision


def _rollback_destination(script: ScriptDirectory, current: tuple[str, ...], to: str | None,
                          steps: int | None) -> str | None:
    """The downgrade destination, or None when already there; RevisionError when it is not below current."""
    applied = [s.revision for s in script.iterate_revisions(current, "base")] if current else []
    if steps is not None:
        if len(current) > 1:
            raise RevisionError(f"--steps needs one current revision, the database has {', '.join(current)}: "
                                "name the target revision instead")
        if steps > len(applied):
            raise RevisionError(f"cannot roll back {steps} migration(s): only {len(applied)} applied")
        return applied[steps] if steps < len(applied) else "base"
    assert to is not None
    target = _resolve(script, to)
    if (target == "base" and not current) or (len(current) == 1 and target == current[0]):
        return None
    if target == "base" or target in applied[1:] or (target in applied and len(current) > 1):
        return target
    raise RevisionError(f"rollback target {target} is not below the current revision "
                        f"{', '.join(current) or 'base'} (it is not applied); use migrate --to {target} to go forward")


# --- seed ---------------------------------------------------------------------------------------------

def seed(target: Target, settings: Settings, force: bool = False) -> Outcome:
    """Run the seed files whose content has not run yet (all with `force`), under the migration lock.

    Seeds are written against the latest schema, so a database that is not at head is refused.
    """
    from migrator import runner, seeds  # noqa: PLC0415

    started = time.monotonic()
    files = seeds.seed_files(target.repo.seeds)
    with _connection(target, settings) as conn, _locked(target, settings, conn):
        status = _status(target, conn)
        if not status.at_head:
            raise NotAtHead(f"seed refused: {target.db.description} is not at head ({describe_behind(status)}); "
                            "run migrate first")
        seed_log = seeds.SeedLog()
        with runner.migration_connection(target.db, settings, seed_log.statement) as mc:
            ran = seeds.run_seeds(mc.connection, files, target.repo.version_table_schema, force, seed_log)
    outcome = Outcome(target.repo.name, "seed", status.current, status.current, ran, time.monotonic() - started)
    get_logger().info(f"Seeds done: {len(ran)} ran, {len(files) - len(ran)} unchanged", repo=target.repo.name)
    return outcome


# --- status -------------------------------------------------------------------------------------------

def status(target: Target, settings: Settings) -> Status:
    """Current revision(s), head(s), pending revisions and revisions the scripts do not know.

    At head, the answer comes from the files' text and one query (this is `status --check` in a readiness
    probe or a `helm test`); otherwise Alembic computes what is pending.
    """
    graph = _graph(target.repo)
    with _connection(target, settings) as conn:
        current = _versions(conn, target.repo)
        if graph is not None and heads.at_head(graph, current):
            return Status(target.repo.name, target.db.description, current, tuple(sorted(graph.heads)), [], [])
        return _status(target, conn)


def _status(target: Target, conn: psycopg.Connection[Any]) -> Status:
    from migrator import runner  # noqa: PLC0415

    script = runner.load_script(runner.alembic_config(target.repo))
    current = _versions(conn, target.repo)
    unknown = _unknown(script, current)
    pending: list[str] = []
    if not unknown:
        with runner.revision_errors():
            steps = script._upgrade_revs("heads", current)  # type: ignore[arg-type]
        pending = [step.revision.revision for step in steps]
    return Status(target.repo.name, target.db.description, current, tuple(sorted(script.get_heads())),
                  pending, unknown)


def describe_behind(status: Status) -> str:
    if status.unknown:
        return f"at unknown revision {', '.join(status.unknown)}"
    return f"{len(status.pending)} pending: {', '.join(status.pending)}"
