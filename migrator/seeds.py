"""Seed files: `seeds/*.py` in name order, each exposing `run(session)`, each in its own transaction.

The repo's seed ledger (migrator.tables.seed_ledger) records each file's name and checksum in the same
transaction as the file's work, so a file runs once per content: unchanged files are skipped, changed ones run
again, `--force` runs all. Seeds run on
the locked migration session (migrator.session), like migrations: each starts from migrator's settings and
proves the lock first, its statements are logged, and a seed cannot end the transaction it runs in (a COMMIT
or ROLLBACK is refused before it is sent; `session.commit()` only releases a savepoint).
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from migrator.engine import running
from migrator.errors import ConfigError, ConnectionLost, LockLost, MigrationFailed
from migrator.logs import get_logger
from migrator.session import MigrationSession
from migrator.shutdown import SHUTDOWN
from migrator.statement_hooks import StatementHooks
from migrator.steps import SEED, Step, refuse_own_rollback
from migrator.tables import seed_ledger

if TYPE_CHECKING:
    from migrator import failures

LEDGER_TABLE = seed_ledger.TABLE


def seed_files(directory: Path) -> list[Path]:
    """The seed files in run order; names starting with `_` are helpers, not seeds."""
    if not directory.is_dir():
        raise ConfigError(f"seeds directory {directory} not found")
    try:
        return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_") and p.is_file())
    except OSError as exc:
        raise ConfigError(f"seeds directory {directory} cannot be read: {exc.strerror}") from None


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"migrator_seed_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"seed {path.name} cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise MigrationFailed(f"seed {path.name} failed to load: {type(exc).__name__}: {exc}; nothing of it ran"
                              ) from None
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"seed {path.name} has no run(session) function")
    return module


def run_seeds(session: MigrationSession, files: list[Path], version_table: str, schema: str | None,
              force: bool) -> list[str]:
    """Run each file whose checksum the repo's ledger lacks (all with `force`); returns the names that ran."""
    seed_ledger.ensure(session.conn, schema, version_table, schema or session.history_schema)
    done = seed_ledger.checksums(session.conn, schema, version_table)
    ledger = Ledger(schema, version_table)
    with running(session, StatementHooks(session, seed_ledger.TABLE)) as connection:
        ran = []
        log = get_logger()
        for path in files:
            digest = checksum(path)
            if not force and done.get(path.name) == digest:
                log.info(f"== Skipped seed {path.name} (unchanged since it ran)", seed=path.name)
                continue
            _run_one(session, connection, ledger, path, digest)
            ran.append(path.name)
    return ran


@dataclass(frozen=True)
class Ledger:
    schema: str | None
    version_table: str


def _run_one(session: MigrationSession, connection: sa.Connection, ledger: Ledger, path: Path, digest: str) -> None:
    log = get_logger()
    log.info(f"== Running seed {path.name}", seed=path.name)
    module = _load(path)
    step = Step(path.name, f"seed {path.name}", SEED, allow_commit=False)
    try:
        # Settings and the lock, first, before the seed's transaction starts: a session lost here fails with
        # the server's words, not with the rollback that a transaction begun around it would try.
        session.start_step(step)
        with connection.begin():
            # A savepoint for the session: a seed that calls session.commit() cannot commit half of itself.
            with Session(bind=connection, join_transaction_mode="create_savepoint") as orm:
                module.run(orm)
                orm.commit()  # releases the savepoint; the ledger row and the outer commit follow
            refuse_own_rollback(step)
            step.stamped = True  # the commit that follows is the seed's own
            seed_ledger.record(session.conn, ledger.schema, ledger.version_table, path.name, digest)
    except (ConnectionLost, LockLost):
        raise
    except (Exception, KeyboardInterrupt, SystemExit) as exc:  # SystemExit: a seed's sys.exit()
        raise _failed(session, step, exc) from None
    finally:
        session.current = None
    took = time.monotonic() - step.started
    log.info(f"== Seeded {path.name} in {took:.1f}s", seed=path.name, duration=round(took, 3))


def _failed(session: MigrationSession, step: Step, exc: BaseException) -> failures.Failure:
    """The one error a failed seed ends the run with (migrator.failures). A signal before the seed's
    transaction began interrupted nothing of it."""
    with SHUTDOWN.deferred():
        from migrator import failures  # noqa: PLC0415  (as in migrator.migrations: only a failure needs it)

        if isinstance(exc, KeyboardInterrupt) and session.current is None:
            step_or_none: Step | None = None
        else:
            step_or_none = step
        session.current = None
        said = failures.confirm(session, step_or_none, exc, LEDGER_TABLE)
        return failures.explain(step_or_none, exc, said, failures.Run.of(session)).error
