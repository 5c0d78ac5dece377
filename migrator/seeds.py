"""Seed files: `seeds/*.py` in name order, each exposing `run(session)`, each in its own transaction.

A ledger table records each file's name and checksum in the same transaction as the file's work, so a file
runs once per content: unchanged files are skipped, changed ones run again, `--force` runs all. Seeds should
still be idempotent (INSERT ... ON CONFLICT DO NOTHING), because --force and changed files re-run them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from migrator.errors import ConfigError, MigrationFailed
from migrator.logs import get_logger
from migrator.operations import log_statement

LEDGER_TABLE = "migrator_seeds"


def seed_files(directory: Path) -> list[Path]:
    """The seed files in run order; names starting with `_` are helpers, not seeds."""
    if not directory.is_dir():
        raise ConfigError(f"seeds directory {directory} not found")
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ledger(schema: str | None) -> sa.Table:
    return sa.Table(LEDGER_TABLE, sa.MetaData(schema=schema),
                    sa.Column("name", sa.Text, primary_key=True),
                    sa.Column("checksum", sa.Text, nullable=False),
                    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"migrator_seed_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"seed {path.name} cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise MigrationFailed(f"seed {path.name} failed to load: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"seed {path.name} has no run(session) function")
    return module


class SeedLog:
    """Names the statements of the seed that is running, like a migration's operations."""

    def __init__(self) -> None:
        self.current: str | None = None

    def statement(self, statement: str) -> None:
        if self.current is not None:
            log_statement(statement, LEDGER_TABLE, seed=self.current)


def run_seeds(connection: sa.Connection, files: list[Path], schema: str | None, force: bool,
              seed_log: SeedLog) -> list[str]:
    """Run each file whose checksum the ledger lacks (all with `force`); returns the names that ran."""
    ledger = _ledger(schema)
    with connection.begin():
        ledger.create(connection, checkfirst=True)
        done = dict(connection.execute(sa.select(ledger.c.name, ledger.c.checksum)).tuples().all())
    ran = []
    log = get_logger()
    for path in files:
        digest = checksum(path)
        if not force and done.get(path.name) == digest:
            log.info(f"== Skipped seed {path.name} (unchanged since it ran)", seed=path.name)
            continue
        _run_one(connection, ledger, path, digest, seed_log)
        ran.append(path.name)
    return ran


def _run_one(connection: sa.Connection, ledger: sa.Table, path: Path, digest: str, seed_log: SeedLog) -> None:
    log = get_logger()
    log.info(f"== Running seed {path.name}", seed=path.name)
    started = time.monotonic()
    module = _load(path)
    seed_log.current = path.name
    try:
        with connection.begin():
            # A savepoint for the session: a seed that calls session.commit() cannot commit half of itself.
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                module.run(session)
                session.commit()  # releases the savepoint; the ledger row and the outer commit follow
            upsert = pg_insert(ledger).values(name=path.name, checksum=digest)
            connection.execute(upsert.on_conflict_do_update(
                index_elements=[ledger.c.name], set_={"checksum": digest, "applied_at": sa.func.now()}))
    except Exception as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise MigrationFailed(f"seed {path.name} failed and was rolled back: {type(exc).__name__}"
                              f"{': ' + cause[0] if cause else ''}") from exc
    finally:
        seed_log.current = None
    took = time.monotonic() - started
    log.info(f"== Seeded {path.name} in {took:.1f}s", seed=path.name, duration=round(took, 3))
