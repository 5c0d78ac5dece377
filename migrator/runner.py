"""Running migrations through Alembic: one transaction per migration, Ecto-style logs, lock_timeout retries.

The only module (with alembic_env) that imports Alembic and SQLAlchemy, so the no-op path never pays for
them. Alembic drives the steps; we hand it a step generator that logs `== Running` before each migration
and `== Migrated` after its commit (Alembic resumes the generator only once the step's transaction has
ended), and a SQLAlchemy hook that describes each statement in Ecto's words.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError as AlembicRevisionError
from alembic.util import CommandError

from migrator import database, operations
from migrator.blocking import BlockerWatch, describe_all
from migrator.config import DatabaseConfig, Settings
from migrator.errors import Interrupted, MigrationFailed, RevisionError
from migrator.logs import get_logger
from migrator.redaction import redact
from migrator.repos import Repo

LOCK_NOT_AVAILABLE = "55P03"
FORWARD, BACKWARD = "forward", "backward"
BACKOFF_MAX = 30.0


def alembic_config(repo: Repo) -> Config:
    """An Alembic Config for `repo`, built in code (no alembic.ini needed in the image)."""
    # quiet: Alembic's own "Generating ... done" would mix into stdout, which carries command results.
    config = Config(cmd_opts=argparse.Namespace(quiet=True))
    config.set_main_option("script_location", str(repo.script_location))
    config.set_main_option("version_table", repo.version_table)
    if repo.version_table_schema:
        config.set_main_option("version_table_schema", repo.version_table_schema)
    # env.py and revision files may import the project's own modules, as with alembic.ini's default.
    config.set_main_option("prepend_sys_path", str(repo.project_dir))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


@contextmanager
def revision_errors() -> Iterator[None]:
    """Alembic's revision and script errors as our RevisionError (exit 2), in one line."""
    try:
        yield
    except (CommandError, AlembicRevisionError) as exc:
        raise RevisionError(" ".join(str(exc).split())) from None


def load_script(config: Config) -> ScriptDirectory:
    """The script directory with every revision file loaded; a broken file is a revision error."""
    with revision_errors():
        script = ScriptDirectory.from_config(config)
        try:
            script.revision_map.heads  # noqa: B018  (loads and checks every revision file now)
        except (SyntaxError, ImportError, NameError, AttributeError) as exc:
            raise RevisionError(f"cannot load the revision files in {script.versions}: "
                                f"{type(exc).__name__}: {exc}") from None
    return script


def module_name(script: Script) -> str:
    """The revision file's name without `<rev>_`: Ecto shows CreateUsers, we show create_users."""
    stem = Path(script.path).stem
    return stem.removeprefix(f"{script.revision}_") or stem


# --- the step generator and statement logging ---------------------------------------------------------

@dataclass
class StepLog:
    """Logs each step in Ecto's format and remembers what completed."""

    direction: str
    version_table: str
    dry_run: bool = False
    current: Script | None = None
    done: list[str] = field(default_factory=list)
    _started: float = 0.0

    def steps(self, plan: Callable[[tuple[str, ...]], Sequence[RevisionStep]]) -> Callable[..., Iterator[Any]]:
        """An Alembic `fn` that yields `plan(heads)`'s steps, logging around each one."""
        def migrations_fn(heads: tuple[str, ...], _context: MigrationContext) -> Iterator[Any]:
            for step in plan(heads):
                self.begin(step.revision)
                yield step
                self.end()  # Alembic resumes us only after the step's transaction committed
        return migrations_fn

    def begin(self, script: Script) -> None:
        self.current, self._started = script, time.monotonic()
        phase = "upgrade" if self.direction == FORWARD else "downgrade"
        verb = "Would run" if self.dry_run else "Running"
        get_logger().info(f"== {verb} {script.revision} {module_name(script)}.{phase} {self.direction}",
                          revision=script.revision, direction=self.direction, module=module_name(script))

    def end(self) -> None:
        assert self.current is not None
        took = time.monotonic() - self._started
        get_logger().info(f"== Migrated {self.current.revision} in {took:.1f}s", revision=self.current.revision,
                          direction=self.direction, duration=round(took, 3))
        self.done.append(self.current.revision)
        self.current = None

    def statement(self, statement: str) -> None:
        """One line per operation a migration executes; Alembic's own version-table upkeep is not one."""
        if self.current is not None:
            operations.log_statement(statement, self.version_table, revision=self.current.revision)


# --- connections --------------------------------------------------------------------------------------

@dataclass
class MigrationConnection:
    """The SQLAlchemy connection migrations run on, and its backend pid for blocker diagnostics."""

    connection: sa.Connection
    pid: int


@contextmanager
def migration_connection(db: DatabaseConfig, settings: Settings,
                         on_statement: Callable[[str], None]) -> Iterator[MigrationConnection]:
    """A connection with this run's lock_timeout and statement_timeout; `on_statement` sees each statement."""
    raw = database.connect(db, settings.timeouts.connect)
    database.set_migration_timeouts(raw, settings.timeouts)
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=sa.NullPool)
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_: on_statement(statement))
    try:
        with engine.connect() as connection:
            yield MigrationConnection(connection, raw.info.backend_pid)
    finally:
        raw.close()
        engine.dispose()


def run_alembic(config: Config, script: ScriptDirectory, connection: sa.Connection | None,
                fn: Callable[..., Any], **context: Any) -> None:
    """Run env.py under an EnvironmentContext, as alembic.command does, on our connection."""
    config.attributes["connection"] = connection
    with EnvironmentContext(config, script, fn=fn, **context):
        script.run_env()


def current_heads(connection: sa.Connection, repo: Repo) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={
        "version_table": repo.version_table, "version_table_schema": repo.version_table_schema})
    heads = context.get_current_heads()
    connection.commit()  # Alembic must find the connection outside a transaction
    return tuple(heads)


# --- running steps with lock_timeout retries -----------------------------------------------------------

@dataclass
class Run:
    """One upgrade or downgrade of one repo."""

    repo: Repo
    db: DatabaseConfig
    settings: Settings
    lock_conn: psycopg.Connection[Any]
    config: Config
    script: ScriptDirectory

    def execute(self, steps: StepLog, plan: Callable[[tuple[str, ...]], Sequence[RevisionStep]],
                destination: str) -> list[str]:
        """Run `plan`'s steps, retrying a migration that hit lock_timeout; returns the revisions done."""
        watch_interval = min(max(self.settings.timeouts.ddl_lock / 3, 0.1), 1.0)
        with migration_connection(self.db, self.settings, steps.statement) as mc:
            attempts: dict[str, int] = {}
            while True:
                watch = BlockerWatch(self.lock_conn, mc.pid, interval=watch_interval)
                try:
                    with watch:
                        self._once(steps, plan, destination, mc.connection)
                except sa.exc.DBAPIError as exc:
                    failed = steps.current
                    steps.current = None
                    if failed is None or _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                        raise self._failure(failed, exc) from None
                    attempts[failed.revision] = attempts.get(failed.revision, 0) + 1
                    self._retry_or_give_up(failed, attempts[failed.revision], watch.last_seen)
                else:
                    return steps.done

    def _once(self, steps: StepLog, plan: Callable[[tuple[str, ...]], Sequence[RevisionStep]], destination: str,
              connection: sa.Connection) -> None:
        try:
            run_alembic(self.config, self.script, connection, steps.steps(plan), destination_rev=destination)
        except KeyboardInterrupt as exc:
            if steps.current is not None:
                signal = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
                get_logger().error(f"{signal} during {steps.current.revision}: its statement was cancelled and "
                                   "its transaction rolled back; run migrate again to resume",
                                   revision=steps.current.revision)
            raise
        except (CommandError, AlembicRevisionError) as exc:
            raise RevisionError(" ".join(str(exc).split())) from None
        except sa.exc.DBAPIError:
            raise  # execute() decides: a lock timeout is retried, anything else fails the run
        except Exception as exc:
            failed = steps.current
            steps.current = None
            raise self._failure(failed, exc) from exc

    def _retry_or_give_up(self, failed: Script, attempt: int, blockers: list[Any]) -> None:
        timeouts = self.settings.timeouts
        who = describe_all(blockers)
        if attempt > timeouts.ddl_retries:
            raise MigrationFailed(
                f"migration {failed.revision} ({module_name(failed)}) gave up after {attempt} tries: a lock it "
                f"needs was held longer than MIGRATOR_DDL_LOCK_TIMEOUT={timeouts.ddl_lock:g}s, by {who}; nothing "
                "of it was applied, earlier migrations stay applied")
        delay = min(2.0 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.75, 1.25)  # noqa: S311
        get_logger().warning(
            f"{failed.revision} could not get a lock within {timeouts.ddl_lock:g}s (blocked by {who}); rolled back, "
            f"retry {attempt}/{timeouts.ddl_retries} in {delay:.1f}s", revision=failed.revision, attempt=attempt)
        time.sleep(delay)

    def _failure(self, failed: Script | None, exc: BaseException) -> MigrationFailed:
        cause = _first_line(exc)
        if failed is None:
            return MigrationFailed(f"migrations on {self.db.description} failed before any step ran: {cause}")
        return MigrationFailed(f"migration {failed.revision} ({module_name(failed)}) failed and was rolled back: "
                               f"{cause}; earlier migrations stay applied")


def _sqlstate(exc: sa.exc.DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return redact(f"{type(exc.orig).__name__}: {text}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
