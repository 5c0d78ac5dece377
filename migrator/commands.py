"""The migrator's commands: one small documented function each, like alembic/command.py.

Each takes a Target (one repo and its database) and Settings, logs what it does, and returns what it did;
none parses arguments or prints results (that is the CLI's job), and none catches errors (they carry their
exit codes up to the CLI). Alembic and SQLAlchemy are imported only on the paths that need them, so that
`migrate`, `status --check` and `wait` cost a psycopg connection and one query when nothing is pending.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from migrator import database, heads, lock
from migrator.config import DatabaseConfig, Settings
from migrator.errors import ConfigError, NotAtHead, RevisionError
from migrator.logs import get_logger
from migrator.repos import Repo

if TYPE_CHECKING:
    from alembic.config import Config
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
        if self.action == "wait":
            return f"wait {self.repo}: ready at {at} after {self.seconds:.1f}s"
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
def _locked(target: Target, settings: Settings, conn: psycopg.Connection[Any],
            satisfied: Callable[[], bool] | None = None) -> Iterator[bool]:
    dbname, schema = lock.current_schema(conn, target.repo.version_table_schema)
    key = lock.lock_key(dbname, schema, target.repo.version_table)
    with lock.migration_lock(conn, key, settings.timeouts.lock, target.db.description, satisfied) as held:
        yield held


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

        def at_head() -> bool:
            return graph is not None and heads.at_head(graph, _versions(conn, target.repo))

        # Waiting replicas stop waiting as soon as the holder's migrations reached head.
        with _locked(target, settings, conn, satisfied=at_head) as held:
            before = _versions(conn, target.repo)  # read again: another migrator may have finished meanwhile
            if not held or (graph is not None and heads.at_head(graph, before)):
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


# --- wait ---------------------------------------------------------------------------------------------

WAIT_LOG_EVERY = 5.0


@dataclass(frozen=True)
class Known:
    """The revisions this image's scripts know, and their heads."""

    revisions: frozenset[str]
    heads: frozenset[str]


def known_revisions(repo: Repo) -> Known:
    """From the files' text when it is certain, else from Alembic."""
    graph = _graph(repo)
    if graph is not None:
        return Known(frozenset(graph.parents), graph.heads)
    from migrator import runner  # noqa: PLC0415

    script = runner.load_script(runner.alembic_config(repo))
    return Known(frozenset(s.revision for s in script.walk_revisions()), frozenset(script.get_heads()))


def wait(target: Target, settings: Settings, timeout: float, *, allow_newer: bool = False,
         interval: float = 2.0, deadline: float | None = None) -> Outcome:
    """Poll until the database is at the head this image knows; never locks, never migrates.

    For app pods' init containers: the app starts only against the schema it was built for. A database at a
    revision this image does not know means a newer release is migrating or has migrated; by default that
    is waited out too (this pod's code may not work with the newer schema), `allow_newer` accepts it (for
    expand/contract migrations, where old code works on the new schema). NotAtHead after `timeout`, or at
    `deadline` (time.monotonic) when several databases share one timeout.
    """
    started = time.monotonic()
    known = known_revisions(target.repo)
    deadline = deadline if deadline is not None else started + timeout
    conn: psycopg.Connection[Any] | None = None
    last_log = -WAIT_LOG_EVERY
    try:
        while True:
            if conn is None:
                conn = database.connect(target.db, settings.timeouts.connect, autocommit=True, purpose="wait")
            try:
                current = _versions(conn, target.repo)
            except psycopg.OperationalError:
                conn.close()
                conn = None
                continue
            ready, state = _readiness(known, current, allow_newer)
            if ready:
                get_logger().info(f"Schema ready: {target.db.description} {state}", repo=target.repo.name,
                                  revision=list(current), waited=round(time.monotonic() - started, 1))
                return Outcome(target.repo.name, "wait", current, current, [], time.monotonic() - started)
            now = time.monotonic()
            if now >= deadline:
                raise NotAtHead(f"{target.db.description} not ready after {timeout:g}s: {state}")
            if now - last_log >= WAIT_LOG_EVERY:
                get_logger().info(f"Waiting for {target.db.description}: {state}", repo=target.repo.name)
                last_log = now
            time.sleep(min(interval, deadline - now))
    finally:
        if conn is not None:
            conn.close()


def _readiness(known: Known, current: tuple[str, ...], allow_newer: bool) -> tuple[bool, str]:
    heads_text = ", ".join(sorted(known.heads))
    unknown = sorted(set(current) - known.revisions)
    if unknown:
        newer = f"at {', '.join(unknown)}, which this image does not know (a newer release?)"
        if allow_newer:
            return True, newer + "; accepted (--allow-newer)"
        return False, newer + f"; waiting for {heads_text} (--allow-newer accepts it)"
    if set(current) == known.heads:
        return True, f"at {heads_text}"
    return False, f"at {', '.join(current) or 'base'}, waiting for {heads_text}"


# --- sql, new, lint: offline, no database -------------------------------------------------------------

def sql(repo: Repo, start: str = "base", end: str = "heads") -> str:
    """The SQL that migrating from `start` to `end` would run, rendered by Alembic offline.

    Backwards (a rollback) when `end` is below `start`. Nothing connects to a database.
    """
    from migrator import runner  # noqa: PLC0415

    config = runner.alembic_config(repo)
    script = runner.load_script(config)
    return render_sql(config, script, _resolve(script, start), _resolve(script, end))


def render_sql(config: Config, script: ScriptDirectory, start: str, end: str) -> str:
    """Offline rendering of `start` -> `end` (resolved ids, `base` or `heads`)."""
    from migrator import runner  # noqa: PLC0415

    with runner.revision_errors():
        if start in ("head", "heads"):
            heads_now = script.get_heads()
            if len(heads_now) > 1:
                raise RevisionError(f"--from {start} is ambiguous with several heads ({', '.join(heads_now)})")
            start = heads_now[0]
        below = {s.revision for s in script.iterate_revisions(start, "base")} - {start} if start != "base" else set()
        backward = (end == "base" and start != "base") or end in below
        buffer = io.StringIO()

        def plan(current: Any, _context: Any) -> Any:
            return script._downgrade_revs(end, current) if backward else script._upgrade_revs(end, current)

        runner.run_alembic(config, script, None, plan, as_sql=True, output_buffer=buffer,
                           starting_rev=None if start == "base" else start, destination_rev=end)
    return buffer.getvalue()


def lint(repo: Repo, start: str = "base") -> str:
    """Run squawk on the SQL of each migration after `start`; returns its report, LintFailed on findings."""
    from migrator import linting, runner  # noqa: PLC0415

    config = runner.alembic_config(repo)
    script = runner.load_script(config)
    start = _resolve(script, start)
    after = {s.revision for s in script.iterate_revisions(start, "base")} if start != "base" else set()
    files: list[tuple[str, str]] = []
    for revision in reversed(list(script.walk_revisions())):
        if revision.revision in after or len(revision._versioned_down_revisions) > 1:
            continue  # already linted, or a merge point (it runs no SQL of its own)
        parent = revision.down_revision if isinstance(revision.down_revision, str) else "base"
        rendered = render_sql(config, script, parent or "base", revision.revision)
        name = f"{len(files) + 1:04d}_{revision.revision}_{runner.module_name(revision)}.sql"
        files.append((name, linting.without_version_table(rendered, repo.version_table)))
    return linting.squawk(files, repo.project_dir)


TIMESTAMP = "%Y%m%d%H%M%S"


def new(repo: Repo, message: str) -> Path:
    """Write a revision file with a timestamp id (YYYYMMDDHHMMSS) on top of the single head."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from alembic import command  # noqa: PLC0415

    from migrator import runner  # noqa: PLC0415

    message = " ".join(message.split())  # one line: the template may put it in a comment as well as a docstring
    if not message:
        raise ConfigError("new needs a message describing the change, e.g. migrator new \"add users.age\"")
    if not message.isprintable():
        raise ConfigError(f"new: the message must be printable text, not {message!r}")
    config = runner.alembic_config(repo)
    script = runner.load_script(config)
    current_heads = script.get_heads()
    if len(current_heads) > 1:
        raise RevisionError(f"the migrations have several heads ({', '.join(sorted(current_heads))}): merge them "
                            "first (alembic merge heads), then add the new revision")
    # Ids sort in creation order, as Ecto's do: a clock behind the newest existing id must not sort before it.
    stamps = [s.revision for s in script.walk_revisions() if len(s.revision) == 14 and s.revision.isdigit()]
    when = datetime.now(UTC).replace(microsecond=0)
    if stamps:
        newest = datetime.strptime(max(stamps), TIMESTAMP).replace(tzinfo=UTC)
        when = max(when, newest + timedelta(seconds=1))
    rev_id = when.strftime(TIMESTAMP)
    with runner.revision_errors():
        try:
            created = command.revision(config, message=source_text(message), rev_id=rev_id)
        except OSError as exc:
            raise ConfigError(f"cannot write {exc.filename or script.versions}: {exc.strerror or exc}") from None
    path = Path(created.path)  # type: ignore[union-attr]
    get_logger().info(f"Created {path} ({rev_id}, on top of {', '.join(current_heads) or 'base'})",
                      revision=rev_id, path=str(path))
    return path


def source_text(message: str) -> str:
    """`message` escaped for the inside of a Python string literal (the template's docstring): it reads back
    as `message` and cannot end the literal, so a message never becomes code. The file name's slug is made
    of the message's words, which escaping does not change."""
    return message.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
