"""The migrator's commands: one small documented function each, like alembic/command.py.

Each takes a Target (one repo and its database) and Settings, logs what it does, and returns what it did;
none parses arguments or prints results (that is the CLI's job), and none catches errors (they carry their
exit codes up to the CLI). The policies live in modules named for them: where a database stands
(migrator.status), an older image meeting a newer database (migrator.version_skew), migrations left part-way
(migrator.partway), rollback plans (migrator.plans), `wait` (migrator.readiness), the offline commands
(migrator.offline, migrator.new_revision). Alembic and SQLAlchemy are imported only on the paths that need
them, so that `migrate`, `status --check` and `wait` cost a psycopg connection and one query when nothing is
pending.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator import file_sums, manifest, scripts, server_session, tenants, validation
from migrator.config import Settings
from migrator.errors import MigrationFailed, NotAtHead, RevisionError
from migrator.logs import get_logger
from migrator.repos import Repo
from migrator.tables import history, versions
from migrator.targets import Outcome, Target, connection, state

if TYPE_CHECKING:
    from migrator.session import MigrationSession
    from migrator.status import Status


# --- migrate ------------------------------------------------------------------------------------------

def migrate(target: Target, settings: Settings, to: str | None = None, allow_newer: bool = False) -> Outcome:
    """Upgrade to the head revision (or `to`), one transaction per migration, under the migration lock.

    When the database already holds the scripts' heads (and nothing is left part-way), answer from the files'
    text and one query, without the lock and without Alembic. Several heads are refused unless `to` names the
    target. A database at a newer revision is refused, or with `allow_newer` accepted when the history proves
    it descends from this image's heads.
    """
    started = time.monotonic()
    fast = validation.fast(target, settings) if to is None else None

    def at_head(found: versions.DbState) -> bool:
        return fast is not None and fast.at_head(found)

    with connection(target, settings) as conn:
        found = fast.read(conn) if fast is not None else state(conn, target)
        if fast is not None and at_head(found):
            if not fast.valid(found):  # an applied file changed, or checksums not recorded yet
                validation.settle_at_head(target, settings, conn, fast)
            return _already_up(target, found.versions, started)
        from migrator.session import locked  # noqa: PLC0415  (the lock only when there is work)

        # Waiting replicas stop waiting as soon as the holder's migrations reached head.
        with locked(target, settings, conn, satisfied=lambda: at_head(state(conn, target))) as session:
            found = state(conn, target)  # read again: another migrator may have finished meanwhile
            if session is None or at_head(found):
                return _already_up(target, found.versions, started)
            tenants.create_schema(conn, target)  # a schema tenant's, before its version table
            return _upgrade(target, session, to, allow_newer=allow_newer, before=found, started=started)


def _upgrade(target: Target, session: MigrationSession, to: str | None, *, allow_newer: bool,
             before: versions.DbState, started: float) -> Outcome:
    from migrator import alembic_internals as internals  # noqa: PLC0415
    from migrator import version_skew  # noqa: PLC0415
    from migrator.migrations import Migrations  # noqa: PLC0415  (SQLAlchemy and Alembic only when there is work)
    from migrator.steps import FORWARD  # noqa: PLC0415

    config, script = scripts.load(target.repo)
    known = scripts.known_from(script)
    if known.unknown(before.versions):
        return version_skew.accept_newer(target, session.conn, before, known, allow_newer=allow_newer,
                                         action="migrate", started=started)
    script_heads = script.get_heads()
    if to is None and len(script_heads) > 1:
        raise RevisionError(f"the migrations have several heads ({', '.join(sorted(script_heads))}): merge "
                            "them (alembic merge heads) or choose one with migrate --to REV")
    destination = internals.resolve(script, to) if to is not None else "head"
    validation.before_upgrade(target, session.settings, session, script, before.versions)
    run = Migrations(session, config, script, target.repo.version_table, FORWARD,
                     sums=file_sums.sums_for(target.repo))
    done = run.run(lambda current: internals.upgrade_plan(script, destination, current), destination)
    after = state(session.conn, target).versions
    _check_stamped(target, done, after, forward=True)
    if not done:
        return _already_up(target, after, started)
    outcome = Outcome(target.repo.name, "migrate", before.versions, after, done, time.monotonic() - started)
    get_logger().info(f"Migrated {target.db.description} to {', '.join(after)}", repo=target.repo.name,
                      revision=list(after), applied=len(done), duration=round(outcome.seconds, 3))
    return outcome


def _already_up(target: Target, current: tuple[str, ...], started: float) -> Outcome:
    get_logger().info(f"Migrations already up: {target.db.description} at {', '.join(current)}",
                      repo=target.repo.name, revision=list(current))
    return Outcome(target.repo.name, "migrate", current, current, [], time.monotonic() - started)


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
    from migrator import plans  # noqa: PLC0415
    from migrator.migrations import Migrations  # noqa: PLC0415
    from migrator.session import locked  # noqa: PLC0415
    from migrator.steps import BACKWARD  # noqa: PLC0415

    started = time.monotonic()
    config, script = scripts.load(target.repo)
    if to is not None:
        internals.resolve(script, to)  # an unknown or ambiguous target fails before any lock or change
    with connection(target, settings) as conn:
        if dry_run:
            return plans.rollback_plan(target, script, state(conn, target), to=to, steps=steps, started=started,
                                       dry_run=True)[1]
        with locked(target, settings, conn) as session:
            assert session is not None
            before = state(conn, target)
            destination, outcome = plans.rollback_plan(target, script, before, to=to, steps=steps, started=started)
            if destination is None:
                return outcome
            run = Migrations(session, config, script, target.repo.version_table, BACKWARD)
            done = run.run(lambda current: internals.downgrade_plan(script, destination, current), destination)
            after = state(conn, target).versions
            _check_stamped(target, done, after, forward=False)
    get_logger().info(f"Rolled back {target.db.description} to {', '.join(after) or 'base'}",
                      repo=target.repo.name, revision=list(after), reverted=len(done))
    return Outcome(target.repo.name, "rollback", before.versions, after, done, time.monotonic() - started)


# --- seed ---------------------------------------------------------------------------------------------

def seed(target: Target, settings: Settings, force: bool = False, allow_newer: bool = False) -> Outcome:
    """Run the seed files whose content has not run yet (all with `force`), under the migration lock.

    Seeds are written against the latest schema, so a database behind head is refused (exit 5). A newer
    database is refused, or with `allow_newer` accepted without running this image's seeds (the newer
    release's seeds apply there).
    """
    from migrator import partway, seeds, version_skew  # noqa: PLC0415
    from migrator import status as where  # noqa: PLC0415
    from migrator.session import locked  # noqa: PLC0415

    started = time.monotonic()
    files = seeds.seed_files(target.repo.seeds)
    with connection(target, settings) as conn, locked(target, settings, conn) as session:
        assert session is not None
        found, known = where.read(target, conn)
        if found.unknown:
            return version_skew.accept_newer(target, conn, state(conn, target), known, allow_newer=allow_newer,
                                             action="seed", started=started)
        if found.partial:
            partway.refuse(target, conn)
        if not found.at_head:
            raise NotAtHead(f"seed refused: {target.db.description} is not at head ({found.behind()}); "
                            "run migrate first")
        ran = seeds.run_seeds(session, files, target.repo.version_table, target.repo.version_table_schema, force)
    outcome = Outcome(target.repo.name, "seed", found.current, found.current, ran, time.monotonic() - started)
    get_logger().info(f"Seeds done: {len(ran)} ran, {len(files) - len(ran)} unchanged", repo=target.repo.name)
    return outcome


# --- status, wait, history, resolve -------------------------------------------------------------------

def status(target: Target, settings: Settings, allow_newer: bool = False) -> Status:
    """Where the database stands against the scripts (migrator.status)."""
    from migrator import status as where  # noqa: PLC0415  (not on migrate's no-op path)

    return where.status(target, settings, allow_newer)


def wait(target: Target, settings: Settings, timeout: float, *, allow_newer: bool = False,
         interval: float = 2.0, deadline: float | None = None) -> Outcome:
    """Poll until the database is at the head this image knows; never locks, never migrates
    (migrator.readiness)."""
    from migrator import readiness  # noqa: PLC0415  (not on migrate's no-op path)

    return readiness.wait(target, settings, timeout, allow_newer=allow_newer, interval=interval, deadline=deadline)


def history_rows(target: Target, settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` rows of the migration history, oldest first (none when it does not exist yet)."""
    with connection(target, settings, purpose="history") as conn:
        schema = server_session.identify(conn, target.repo.version_table_schema, target.repo.version_table).schema
        if not history.exists(conn, schema):
            return []
        return history.recent(conn, schema, target.repo.version_table, limit)


def resolve(target: Target, settings: Settings, revision: str, *, rerun: bool,
            accept_checksum: bool = False) -> Outcome:
    """Decide a migration left part-way: run it again on the next migrate (`rerun`), or mark it done
    (migrator.partway); or accept an applied migration's changed or removed file (`accept_checksum`,
    migrator.validation)."""
    from migrator import partway  # noqa: PLC0415

    if accept_checksum:
        return validation.accept(target, settings, revision)
    return partway.resolve(target, settings, revision, rerun=rerun)


# --- sql, new, lint: offline, no database -------------------------------------------------------------

def sql(repo: Repo, start: str = "base", end: str = "heads") -> str:
    """The SQL that migrating from `start` to `end` would run, rendered by Alembic offline (migrator.offline)."""
    from migrator import offline  # noqa: PLC0415

    return offline.sql(repo, start, end)


def lint(repo: Repo, start: str = "base") -> str:
    """Run squawk on the SQL of each migration after `start` (migrator.offline)."""
    from migrator import offline  # noqa: PLC0415

    return offline.lint(repo, start)


def new(repo: Repo, message: str) -> Path:
    """Write a revision file with a timestamp id on top of the single head (migrator.new_revision), and the
    directory's manifest (migrator.manifest)."""
    from migrator import new_revision  # noqa: PLC0415

    path = new_revision.new(repo, message)
    manifest.write(repo)
    return path


def write_manifest(repos: list[Repo]) -> list[Path]:
    """Write each repo's manifest of its revision files (migrator.manifest), as image builds do."""
    return manifest.write_all(repos)
