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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from migrator import alembic_ini, database, heads, history, versions
from migrator.config import DatabaseConfig, Settings
from migrator.database import Connection
from migrator.errors import (
    ConfigError,
    DatabaseUnreachable,
    LockTimeout,
    MigrationFailed,
    MigratorError,
    NotAtHead,
    PartiallyApplied,
    RevisionError,
)
from migrator.logs import get_logger
from migrator.repos import Repo

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from migrator.runner import MigrationSession


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

    @property
    def at_head(self) -> bool:
        if self.partial:
            return False
        if self.newer:
            return True
        return not self.pending and not self.unknown and set(self.current) == set(self.heads)


# --- what the scripts know ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Known:
    """The revisions this image's scripts know, with their parents, and their heads."""

    parents: dict[str, tuple[str, ...]]
    heads: frozenset[str]

    def unknown(self, current: tuple[str, ...]) -> list[str]:
        return sorted(set(current) - self.parents.keys())

    def at_head(self, current: tuple[str, ...]) -> bool:
        return bool(self.heads) and set(current) == self.heads


_deferred: set[str] = set()


def _graph(repo: Repo) -> heads.ScriptGraph | None:
    """The scripts' graph from their text, or None when only Alembic can tell (the fast path steps aside)."""
    try:
        return _scan(repo)
    except heads.Uncertain as exc:
        if repo.name not in _deferred:  # once per repo and process
            _deferred.add(repo.name)
            get_logger().info(f"fast path not taken, Alembic reads the scripts: {exc}", repo=repo.name)
        return None


def _scan(repo: Repo) -> heads.ScriptGraph:
    """Read the version locations alembic.ini names (or migrations/versions), as Alembic would."""
    ini = alembic_ini.read(repo.project_dir, repo.alembic_ini)
    if ini is not None and ini.sourceless:
        raise heads.Uncertain("alembic.ini sets sourceless: revision files are read by Alembic")
    dirs = list(ini.version_locations) if ini is not None and ini.version_locations else [repo.versions_dir]
    return heads.scan(dirs, recursive=bool(ini and ini.recursive))


def _script(repo: Repo) -> tuple[Config, ScriptDirectory]:
    from migrator import alembic_internals as internals  # noqa: PLC0415  (Alembic only when there is work)

    config = internals.alembic_config(repo)
    return config, internals.load_script(config)


def known_revisions(repo: Repo) -> Known:
    """From the files' text when it is certain, else from Alembic."""
    graph = _graph(repo)
    if graph is not None:
        return Known(dict(graph.parents), graph.heads)
    from migrator import alembic_internals as internals  # noqa: PLC0415

    _, script = _script(repo)
    return Known(internals.known_parents(script), frozenset(script.get_heads()))


def _known_from(script: ScriptDirectory) -> Known:
    from migrator import alembic_internals as internals  # noqa: PLC0415

    return Known(internals.known_parents(script), frozenset(script.get_heads()))


# --- shared pieces --------------------------------------------------------------------------------------

@contextmanager
def _connection(target: Target, settings: Settings, purpose: str = "migrations") -> Iterator[Connection]:
    """The autocommit connection that reads the state and, when there is work, becomes the migration session."""
    with database.connect(target.db, settings.timeouts, autocommit=True, purpose=purpose) as conn:
        conn.doing = "reading the version table"
        yield conn


@contextmanager
def _locked(target: Target, settings: Settings, conn: Connection,
            satisfied: Callable[[], bool] | None = None) -> Iterator[MigrationSession | None]:
    """The locked migration session, or None when `satisfied()` said while waiting that another migrator
    did the work."""
    from migrator import lock  # noqa: PLC0415  (not on the no-op path, which never locks)

    with lock.held(target.db, settings.timeouts, conn, version_table=target.repo.version_table,
                   schema=target.repo.version_table_schema, satisfied=satisfied) as held:
        if held is None:
            yield None
            return
        from migrator import runner  # noqa: PLC0415  (SQLAlchemy and Alembic only once this process holds the lock)

        yield runner.MigrationSession(target.db, settings, conn, held.server, held.key, held.server.schema)


def _state(conn: Connection, repo: Repo) -> versions.DbState:
    return versions.read(conn, repo.version_table, repo.version_table_schema)


def _already_up(target: Target, current: tuple[str, ...], started: float) -> Outcome:
    get_logger().info(f"Migrations already up: {target.db.description} at {', '.join(current)}",
                      repo=target.repo.name, revision=list(current))
    return Outcome(target.repo.name, "migrate", current, current, [], time.monotonic() - started)


def _newer(target: Target, conn: Connection, state: versions.DbState, known: Known, *, allow_newer: bool,
           action: str, started: float) -> Outcome:
    """A database at a revision this image does not know: accepted (exit 0, nothing done) when allowed and
    the history proves it descends from this image's heads; refused otherwise (exit 2)."""
    unknown = known.unknown(state.versions)
    at = ", ".join(unknown)
    if not allow_newer:
        raise RevisionError(f"{target.db.description} is at revision {at}, which these migrations do not have (a "
                            "newer release migrated it?): deploy that release's migrator image, or pass "
                            "--allow-newer if your migrations are expand/contract")
    proven, found = _descends(conn, target, state.versions, known)
    if not proven:
        raise RevisionError(f"{target.db.description} is at revision {at}, which these migrations do not have, "
                            f"and --allow-newer cannot accept it: {found}; deploy the newer release's migrator "
                            "image")
    note = f"{target.db.description} is at newer revision {at}: {found}; nothing to do for this image"
    get_logger().info(f"Accepted a newer database (--allow-newer): {note}", repo=target.repo.name,
                      revision=list(state.versions))
    return Outcome(target.repo.name, action, state.versions, state.versions, [], time.monotonic() - started,
                   note=f"accepted newer revision {at} (--allow-newer)")


def _refuse_partial(target: Target, conn: Connection) -> None:
    """A migration left part-way needs a decision; name it (exit 6)."""
    schema = database.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
    rows = history.open_rows(conn, schema, target.repo.version_table)
    if rows:
        raise PartiallyApplied(f"{target.db.description}: migration {rows[-1].describe()}; decide with `migrator "
                               f"resolve {rows[-1].revision} --rerun|--mark-applied` (see migrator status)")


# --- migrate ------------------------------------------------------------------------------------------

def migrate(target: Target, settings: Settings, to: str | None = None, allow_newer: bool = False) -> Outcome:
    """Upgrade to the head revision (or `to`), one transaction per migration, under the migration lock.

    When the database already holds the scripts' heads (and nothing is left part-way), answer from the files'
    text and one query, without the lock and without Alembic. Several heads are refused unless `to` names the
    target. A database at a newer revision is refused, or with `allow_newer` accepted when the history proves
    it descends from this image's heads.
    """
    started = time.monotonic()
    graph = _graph(target.repo) if to is None else None
    with _connection(target, settings) as conn:
        state = _state(conn, target.repo)
        if graph is not None and not state.partial and heads.at_head(graph, state.versions):
            return _already_up(target, state.versions, started)

        def done_by_another() -> bool:
            now = _state(conn, target.repo)
            return graph is not None and not now.partial and heads.at_head(graph, now.versions)

        # Waiting replicas stop waiting as soon as the holder's migrations reached head.
        with _locked(target, settings, conn, satisfied=done_by_another) as session:
            state = _state(conn, target.repo)  # read again: another migrator may have finished meanwhile
            if session is None or (graph is not None and not state.partial and heads.at_head(graph, state.versions)):
                return _already_up(target, state.versions, started)
            return _upgrade(target, session, to, allow_newer=allow_newer, state=state, started=started)


def _upgrade(target: Target, session: MigrationSession, to: str | None, *, allow_newer: bool,
             state: versions.DbState, started: float) -> Outcome:
    from migrator import alembic_internals as internals  # noqa: PLC0415
    from migrator import runner  # noqa: PLC0415

    config, script = _script(target.repo)
    known = _known_from(script)
    if known.unknown(state.versions):
        return _newer(target, session.conn, state, known, allow_newer=allow_newer, action="migrate", started=started)
    script_heads = script.get_heads()
    if to is None and len(script_heads) > 1:
        raise RevisionError(f"the migrations have several heads ({', '.join(sorted(script_heads))}): merge "
                            "them (alembic merge heads) or choose one with migrate --to REV")
    destination = internals.resolve(script, to) if to is not None else "head"
    run = runner.Migrations(session, config, script, target.repo.version_table, runner.FORWARD)
    done = run.run(lambda current: internals.upgrade_plan(script, destination, current), destination)
    after = _state(session.conn, target.repo).versions
    _check_stamped(target, done, after, forward=True)
    if not done:
        return _already_up(target, after, started)
    outcome = Outcome(target.repo.name, "migrate", state.versions, after, done, time.monotonic() - started)
    get_logger().info(f"Migrated {target.db.description} to {', '.join(after)}", repo=target.repo.name,
                      revision=list(after), applied=len(done), duration=round(outcome.seconds, 3))
    return outcome


def _check_stamped(target: Target, done: list[str], after: tuple[str, ...], *, forward: bool) -> None:
    """Never exit 0 when the version table does not show the last step (a commit Alembic did not expect)."""
    if done and (done[-1] in after) != forward:
        raise MigrationFailed(f"{target.db.description} is at {', '.join(after) or 'base'} after migrator ran "
                              f"{done[-1]}: its version was not stamped as expected; check `migrator status` and "
                              "`migrator history` before running it again")


# --- rollback -----------------------------------------------------------------------------------------

def rollback(target: Target, settings: Settings, to: str | None = None, steps: int | None = None,
             dry_run: bool = False) -> Outcome:
    """Downgrade so that `to` is the newest applied revision (`base` undoes all), or by `steps` migrations.

    Alembic's meaning of `downgrade REV`: REV itself stays applied (Ecto's `to:` would revert it too).
    `steps` is Alembic's `downgrade -N`, which refuses an ambiguous walk across a merge point (exit 2).
    A target that is not below the current revision is a revision error; being at it already is a no-op.
    `dry_run` logs the same plan and changes nothing.
    """
    from migrator import alembic_internals as internals  # noqa: PLC0415
    from migrator import runner  # noqa: PLC0415

    started = time.monotonic()
    config, script = _script(target.repo)
    if to is not None:
        internals.resolve(script, to)  # an unknown or ambiguous target fails before any lock or change
    with _connection(target, settings) as conn:
        state = _state(conn, target.repo)
        if dry_run:
            return _rollback_plan(target, script, state, to=to, steps=steps, started=started, dry_run=True)[1]
        with _locked(target, settings, conn) as session:
            assert session is not None
            state = _state(conn, target.repo)
            destination, outcome = _rollback_plan(target, script, state, to=to, steps=steps, started=started)
            if destination is None:
                return outcome
            run = runner.Migrations(session, config, script, target.repo.version_table, runner.BACKWARD)
            done = run.run(lambda current: internals.downgrade_plan(script, destination, current), destination)
            after = _state(conn, target.repo).versions
            _check_stamped(target, done, after, forward=False)
    get_logger().info(f"Rolled back {target.db.description} to {', '.join(after) or 'base'}",
                      repo=target.repo.name, revision=list(after), reverted=len(done))
    return Outcome(target.repo.name, "rollback", state.versions, after, done, time.monotonic() - started)


def _rollback_plan(target: Target, script: ScriptDirectory, state: versions.DbState, *, to: str | None,
                   steps: int | None, started: float, dry_run: bool = False) -> tuple[str | None, Outcome]:
    """(absolute destination, outcome so far): None as destination when there is nothing to do."""
    from migrator import alembic_internals as internals  # noqa: PLC0415
    from migrator.runner import BACKWARD, module_name  # noqa: PLC0415

    current = state.versions
    known = _known_from(script)
    if known.unknown(current):
        raise RevisionError(f"{target.db.description} is at revision {', '.join(known.unknown(current))}, which "
                            "these migrations do not have: roll back with the image that has it")
    nothing = Outcome(target.repo.name, "rollback", current, current, [], time.monotonic() - started)
    destination = _rollback_destination(script, current, to, steps)
    if destination is None:
        get_logger().info(f"Nothing to roll back: {target.db.description} is at {to}", repo=target.repo.name)
        return None, nothing
    plan = internals.downgrade_plan(script, destination, current)
    if destination.startswith("-"):  # fixed now, so that a retry after a lock timeout does not walk further
        last = plan[-1] if plan else None
        below = tuple(last.to_revisions) if last is not None else current
        destination = below[0] if len(below) == 1 else "base" if not below else ",".join(below)
    if dry_run:
        for step in plan:
            script_ = internals.step_script(step)
            get_logger().info(f"== Would run {script_.revision} {module_name(script_)}.downgrade {BACKWARD}",
                              revision=script_.revision, direction=BACKWARD, dry_run=True)
        get_logger().info(f"Dry run: {len(plan)} migration(s) would be reverted; nothing was changed",
                          repo=target.repo.name)
        return None, nothing
    return destination, nothing


def _rollback_destination(script: ScriptDirectory, current: tuple[str, ...], to: str | None,
                          steps: int | None) -> str | None:
    """The downgrade destination (`-N` for steps), or None when already there; RevisionError when the target
    is not below current."""
    from migrator import alembic_internals as internals  # noqa: PLC0415

    applied = [s.revision for s in script.iterate_revisions(current, "base")] if current else []
    if steps is not None:
        if steps > len(applied):
            raise RevisionError(f"cannot roll back {steps} migration(s): only {len(applied)} applied")
        return f"-{steps}"
    assert to is not None
    target = internals.resolve(script, to)
    if (target == "base" and not current) or (len(current) == 1 and target == current[0]):
        return None
    if target == "base" or target in applied[1:] or (target in applied and len(current) > 1):
        return target
    raise RevisionError(f"rollback target {target} is not below the current revision "
                        f"{', '.join(current) or 'base'} (it is not applied); use migrate --to {target} to go forward")


# --- seed ---------------------------------------------------------------------------------------------

def seed(target: Target, settings: Settings, force: bool = False, allow_newer: bool = False) -> Outcome:
    """Run the seed files whose content has not run yet (all with `force`), under the migration lock.

    Seeds are written against the latest schema, so a database behind head is refused (exit 5). A newer
    database is refused, or with `allow_newer` accepted without running this image's seeds (the newer
    release's seeds apply there).
    """
    from migrator import seeds  # noqa: PLC0415

    started = time.monotonic()
    files = seeds.seed_files(target.repo.seeds)
    with _connection(target, settings) as conn, _locked(target, settings, conn) as session:
        assert session is not None
        found, known = _status(target, conn)
        if found.unknown:
            return _newer(target, conn, _state(conn, target.repo), known, allow_newer=allow_newer, action="seed",
                          started=started)
        if found.partial:
            _refuse_partial(target, conn)
        if not found.at_head:
            raise NotAtHead(f"seed refused: {target.db.description} is not at head ({describe_behind(found)}); "
                            "run migrate first")
        ran = seeds.run_seeds(session, files, target.repo.version_table_schema, force)
    outcome = Outcome(target.repo.name, "seed", found.current, found.current, ran, time.monotonic() - started)
    get_logger().info(f"Seeds done: {len(ran)} ran, {len(files) - len(ran)} unchanged", repo=target.repo.name)
    return outcome


# --- status -------------------------------------------------------------------------------------------

def status(target: Target, settings: Settings, allow_newer: bool = False) -> Status:
    """Current revision(s), head(s), pending revisions, revisions the scripts do not know, and migrations
    left part-way. With `allow_newer`, a newer database that the history proves descends from this image's
    heads counts as at head.

    At head, the answer comes from the files' text and one query (this is `status --check` in a readiness
    probe or a `helm test`); otherwise Alembic computes what is pending.
    """
    graph = _graph(target.repo)
    with _connection(target, settings, purpose="status") as conn:
        state = _state(conn, target.repo)
        if graph is not None and not state.partial and heads.at_head(graph, state.versions):
            return Status(target.repo.name, target.db.description, state.versions, tuple(sorted(graph.heads)), [],
                          [])
        found, known = _status(target, conn)
        if found.unknown and allow_newer:
            proven, why = _descends(conn, target, found.current, known)
            if proven:
                found.newer = why
                get_logger().info(f"{target.db.description} is at newer revision {', '.join(found.unknown)}: {why} "
                                  "(--allow-newer)", repo=target.repo.name)
        return found


def _descends(conn: Connection, target: Target, current: tuple[str, ...], known: Known) -> tuple[bool, str]:
    """Whether the history proves that `current` descends from every head this image knows."""
    schema = database.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
    if not history.exists(conn, schema):
        return False, "there is no migration history to prove its ancestry"
    return history.descends_from(conn, schema, target.repo.version_table, current, known=known.parents,
                                 heads=known.heads)


def _status(target: Target, conn: Connection) -> tuple[Status, Known]:
    from migrator import alembic_internals as internals  # noqa: PLC0415

    _, script = _script(target.repo)
    known = _known_from(script)
    state = _state(conn, target.repo)
    unknown = known.unknown(state.versions)
    pending: list[str] = []
    if not unknown:
        pending = [internals.step_script(step).revision
                   for step in internals.upgrade_plan(script, "heads", state.versions)]
    partial: list[str] = []
    if state.partial:
        schema = database.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
        partial = [row.describe() for row in history.open_rows(conn, schema, target.repo.version_table)]
    return Status(target.repo.name, target.db.description, state.versions, tuple(sorted(known.heads)), pending,
                  unknown, partial), known


def describe_behind(status: Status) -> str:
    if status.partial:
        return f"left part-way: {status.partial[-1]}"
    if status.unknown:
        return f"at unknown revision {', '.join(status.unknown)}"
    return f"{len(status.pending)} pending: {', '.join(status.pending)}"


# --- wait ---------------------------------------------------------------------------------------------

WAIT_LOG_EVERY = 5.0


def wait(target: Target, settings: Settings, timeout: float, *, allow_newer: bool = False,
         interval: float = 2.0, deadline: float | None = None) -> Outcome:
    """Poll until the database is at the head this image knows; never locks, never migrates.

    For app pods' init containers: the app starts only against the schema it was built for. A database at a
    revision this image does not know means a newer release is migrating or has migrated; by default that
    is waited out too (this pod's code may not work with the newer schema); `allow_newer` accepts it when
    the history proves it descends from this image's heads (expand/contract migrations keep old code
    working). A migration left part-way is waited out (an operator decides). NotAtHead after `timeout`, or at
    `deadline` (time.monotonic) when several databases share one timeout. Every wait is bounded by the
    deadline, also a connection attempt or a query on a server that stopped answering.
    """
    started = time.monotonic()
    known = known_revisions(target.repo)
    deadline = deadline if deadline is not None else started + timeout
    conn: Connection | None = None
    last_log = -WAIT_LOG_EVERY
    state_text = "no answer from the database yet"
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAtHead(f"{target.db.description} not ready after {timeout:g}s: {state_text}")
            try:
                if conn is None:
                    conn = database.connect(target.db, settings.timeouts, autocommit=True, purpose="wait",
                                            connect_timeout=min(settings.timeouts.connect, remaining))
                ready, state_text, current = _poll(conn, target, known, allow_newer, min(settings.timeouts.stall,
                                                                                        remaining))
            except DatabaseUnreachable as exc:
                if time.monotonic() < deadline:
                    raise  # refused for good, or unreachable for MIGRATOR_CONNECT_TIMEOUT: exit 3
                state_text = f"database unreachable: {getattr(exc, 'reason', exc)}"
                continue
            except psycopg.OperationalError as exc:  # lost, or no answer within the stall timeout: reconnect
                state_text = str(database.lost(conn, exc, "polling the version table"))
                if conn is not None:
                    conn.close()
                    conn = None
                continue
            if ready:
                get_logger().info(f"Schema ready: {target.db.description} {state_text}", repo=target.repo.name,
                                  revision=list(current), waited=round(time.monotonic() - started, 1))
                return Outcome(target.repo.name, "wait", current, current, [], time.monotonic() - started)
            if conn is not None and conn.pooled:  # a session pool's server connection is not held between polls
                conn.close()
                conn = None
            now = time.monotonic()
            if now - last_log >= WAIT_LOG_EVERY:
                get_logger().info(f"Waiting for {target.db.description}: {state_text}", repo=target.repo.name)
                last_log = now
            time.sleep(max(min(interval, deadline - now), 0))
    finally:
        if conn is not None:
            conn.close()


def _poll(conn: Connection, target: Target, known: Known, allow_newer: bool,
          limit: float) -> tuple[bool, str, tuple[str, ...]]:
    conn.wait_limit = limit
    conn.doing = "waiting for the schema"
    conn.lock_wait = 0  # a locked version table is a state to report and poll again, not a wait of its own
    conn.lock_attempt = min(conn.lock_attempt, limit / 2)  # answered (lock_timeout) before the poll's deadline
    try:
        return _readiness(conn, target, known, allow_newer)
    except LockTimeout as exc:
        return False, str(exc), ()


def _readiness(conn: Connection, target: Target, known: Known,
               allow_newer: bool) -> tuple[bool, str, tuple[str, ...]]:
    state = _state(conn, target.repo)
    current = state.versions
    heads_text = ", ".join(sorted(known.heads))
    if state.partial:
        return False, "a migration was left part-way (see migrator status); waiting for an operator", current
    unknown = known.unknown(current)
    if unknown:
        newer = f"at {', '.join(unknown)}, which this image does not know (a newer release?)"
        if not allow_newer:
            return False, newer + f"; waiting for {heads_text} (--allow-newer accepts a proven descendant)", current
        proven, found = _descends(conn, target, current, known)
        if proven:
            return True, f"{newer}; accepted (--allow-newer): {found}", current
        return False, f"{newer}; not accepted: {found}", current
    if known.at_head(current):
        return True, f"at {heads_text}", current
    return False, f"at {', '.join(current) or 'base'}, waiting for {heads_text}", current


# --- history and resolve --------------------------------------------------------------------------------

def history_rows(target: Target, settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` rows of the migration history, oldest first (none when it does not exist yet)."""
    with _connection(target, settings, purpose="history") as conn:
        schema = database.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
        if not history.exists(conn, schema):
            return []
        return history.recent(conn, schema, target.repo.version_table, limit)


def resolve(target: Target, settings: Settings, revision: str, *, rerun: bool) -> Outcome:
    """Decide a migration left part-way: run it again on the next migrate (`rerun`), or mark it done.

    For `--mark-applied` the operator has completed the migration by hand: its version is stamped (an
    upgrade: its parents -> it; a downgrade: it -> its parents), which needs the database at the revision
    the interrupted step started from.
    """
    from migrator import alembic_internals as internals  # noqa: PLC0415
    from migrator import runner  # noqa: PLC0415

    started = time.monotonic()
    _, script = _script(target.repo)
    rev = internals.resolve(script, revision)
    with _connection(target, settings) as conn, _locked(target, settings, conn) as session:
        assert session is not None
        rows = [r for r in runner.prepare_history(session, target.repo.version_table) if r.revision == rev]
        if not rows:
            raise RevisionError(f"nothing to resolve: {rev} is not left part-way on {target.db.description} "
                                "(see migrator status and migrator history)")
        state = _state(conn, target.repo)
        how = "operator: run it again" if rerun else "operator: marked done by hand"
        conn.autocommit = False
        if not rerun:
            _stamp_done(conn, session, target, script, row=rows[-1], current=state.versions)
        history.resolve_open(conn, session.history_schema, target.repo.version_table, rev, how)
        conn.commit()
        conn.autocommit = True
    again = "migrate" if rows[-1].direction == history.UP else "rollback through it"
    note = (f"{rev} will run again on the next {again}" if rerun else f"{rev} marked as done")
    get_logger().info(f"Resolved {rev} on {target.db.description}: {note}", repo=target.repo.name, revision=rev)
    after = state.versions if rerun else _state_after(target, settings)
    return Outcome(target.repo.name, "resolve", state.versions, after, [rev], time.monotonic() - started,
                   note=note)


def _state_after(target: Target, settings: Settings) -> tuple[str, ...]:
    with _connection(target, settings, purpose="status") as conn:
        return _state(conn, target.repo).versions


def _stamp_done(conn: Connection, session: MigrationSession, target: Target, script: ScriptDirectory, *,
                row: history.OpenRow, current: tuple[str, ...]) -> None:
    from psycopg import sql  # noqa: PLC0415

    from migrator import alembic_internals as internals  # noqa: PLC0415

    revision = script.get_revision(row.revision)
    assert revision is not None
    parents = internals.parents(revision)
    before, after = (parents, (row.revision,)) if row.direction == history.UP else ((row.revision,), parents)
    if set(before) - set(current) or (set(current) & set(after)):
        raise RevisionError(f"cannot mark {row.revision} as done: the database is at {', '.join(current) or 'base'}, "
                            f"not at {', '.join(before) or 'base'} where that step started")
    table = (sql.Identifier(target.repo.version_table_schema, target.repo.version_table)
             if target.repo.version_table_schema else sql.Identifier(target.repo.version_table))
    for old in before:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version_num = %s").format(table), (old,))
    for new in after:
        conn.execute(sql.SQL("INSERT INTO {} (version_num) VALUES (%s)").format(table), (new,))
    history.insert(conn, session.history_schema, version_table=target.repo.version_table, revision=row.revision,
                   parents=parents, direction=row.direction,
                   outcome="applied" if row.direction == history.UP else "reverted",
                   started_at=row.started_at, finished=True, detail="marked done by an operator (migrator resolve)")


# --- sql, new, lint: offline, no database -------------------------------------------------------------

def sql(repo: Repo, start: str = "base", end: str = "heads") -> str:
    """The SQL that migrating from `start` to `end` would run, rendered by Alembic offline.

    Backwards (a rollback) when `end` is below `start`. Nothing connects to a database.
    """
    from migrator import runner  # noqa: PLC0415

    config = runner.alembic_config(repo)
    script = runner.load_script(config)
    return render_sql(config, script, runner.resolve(script, start), runner.resolve(script, end))


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

        try:
            runner.run_alembic(config, script, None, plan, as_sql=True, output_buffer=buffer,
                               starting_rev=None if start == "base" else start, destination_rev=end)
        except (MigratorError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the migration's own code: it reads the database, or fails without one
            running = [line for line in buffer.getvalue().splitlines() if line.startswith("-- Running ")]
            where = running[-1].removeprefix("-- Running ") if running else "a migration"
            raise RevisionError(f"{where} cannot be rendered offline ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}): it needs a database (it reads data, or "
                                "branches on what it finds); review it in the migration file instead") from None
    return buffer.getvalue()


def lint(repo: Repo, start: str = "base") -> str:
    """Run squawk on the SQL of each migration after `start`; returns its report, LintFailed on findings."""
    from migrator import linting, runner  # noqa: PLC0415

    config = runner.alembic_config(repo)
    script = runner.load_script(config)
    start = runner.resolve(script, start)
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
