"""Every use of Alembic beyond its documented command API, in one place.

migrator drives Alembic the way alembic.command does (an EnvironmentContext around the project's env.py),
but it also needs what the commands keep to themselves: the step plans (`_upgrade_revs`, `_downgrade_revs`),
a revision's parents, a hook at the moment a migration commits part of itself (`autocommit_block`), and a
check that env.py hands over migrator's connection. tests/unit/test_alembic_contract.py pins each of these
against the installed Alembic, so an upgrade that changes one fails there first.
"""

from __future__ import annotations

import argparse
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import alembic.context  # also creates the context module's proxy set-up shared below
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import (
    CycleDetected,
    MultipleHeads,
    RangeNotAncestorError,
    ResolutionError,
)
from alembic.script.revision import RevisionError as AlembicRevisionError
from alembic.util import CommandError

from migrator import alembic_ini
from migrator.errors import ConfigError, RevisionError
from migrator.repos import Repo

ENV_FLAG = "migrator_env_configures"  # set by migrator.alembic_env right before it calls context.configure
CONFIGURED_BY_MIGRATOR = "migrator_config"  # a Config alembic_config built (not the plain `alembic` command's)
DELEGATE_HINT = ("replace its run_migrations_online()/offline() with `from migrator.alembic_env import "
                 "run_migrations` and `run_migrations(target_metadata=...)`, as `migrator init --adopt` does")


# --- configuration and scripts --------------------------------------------------------------------------

def alembic_config(repo: Repo) -> Config:
    """The Alembic Config of `repo`: the project's alembic.ini when it has one (its [alembic] settings
    decide which scripts Alembic sees), with migrator's script location and version table on top."""
    ini = alembic_ini.read(repo.project_dir, repo.alembic_ini)
    # quiet: Alembic's own "Generating ... done" would mix into stdout, which carries command results.
    options = argparse.Namespace(quiet=True)
    config = Config(file_=str(ini.path), cmd_opts=options) if ini is not None else Config(cmd_opts=options)
    config.set_main_option("script_location", str(repo.script_location).replace("%", "%%"))
    config.attributes[CONFIGURED_BY_MIGRATOR] = True  # its version table is the repo's (see alembic_env)
    config.set_main_option("version_table", repo.version_table)
    if repo.version_table_schema:
        config.set_main_option("version_table_schema", repo.version_table_schema)
    if ini is None:
        # env.py and revision files may import the project's own modules, as with alembic.ini's default.
        config.set_main_option("prepend_sys_path", str(repo.project_dir).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


def load_script(config: Config) -> ScriptDirectory:
    """The script directory with every revision file loaded; a broken file is a revision error naming it."""
    with revision_errors():
        script = ScriptDirectory.from_config(config)
        try:
            script.revision_map.heads  # noqa: B018  (loads and checks every revision file now)
        except (CommandError, AlembicRevisionError):
            raise
        except Exception as exc:  # a revision file that does not compile, or raises at import
            raise RevisionError(f"cannot load revision file {_failing_file(exc, script)}: "
                                f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    for revision in revisions(script):
        if not callable(getattr(revision.module, "upgrade", None)):
            raise RevisionError(f"revision file {revision.path} has no upgrade() function: every revision "
                                "defines upgrade() and downgrade() (`pass` when there is nothing to do)")
    return script


def _failing_file(exc: BaseException, script: ScriptDirectory) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename
    dirs = [str(Path(d)) for d in script._version_locations]
    frames = [f.filename for f in traceback.extract_tb(exc.__traceback__)]
    inside = [f for f in frames if any(f.startswith(d) for d in dirs)]
    return inside[-1] if inside else f"in {', '.join(dirs)}"


def module_name(script: Script) -> str:
    """The revision file's name without `<rev>_`: Ecto shows CreateUsers, we show create_users."""
    stem = os.path.splitext(os.path.basename(script.path))[0]  # not pathlib: once per step, pathlib costs more
    return stem.removeprefix(f"{script.revision}_") or stem


def parents(script: Script) -> tuple[str, ...]:
    """The revisions `script` sits on (its down revisions, dependencies excluded)."""
    return tuple(script._versioned_down_revisions)


def known_parents(script: ScriptDirectory) -> dict[str, tuple[str, ...]]:
    """Every revision this image knows, with its parents."""
    return {s.revision: parents(s) for s in revisions(script)}


def revisions(script: ScriptDirectory) -> list[Script]:
    """Every revision of the loaded `script`, in no particular order: its revision map's entries, which
    walk_revisions() would sort from the heads down at the cost of a graph walk (one per call)."""
    return [s for key, s in script.revision_map._revision_map.items()
            if isinstance(s, Script) and key == s.revision]  # not the None, () and branch-label keys


def rerunnable(script: Script) -> bool:
    """`rerunnable = True` in a revision file: its non-transactional part may run again after an interruption."""
    return getattr(script.module, "rerunnable", False) is True


@contextmanager
def revision_errors() -> Iterator[None]:
    """Alembic's revision and script errors as our RevisionError (exit 2), from their attributes."""
    try:
        yield
    except MultipleHeads as exc:
        raise RevisionError(f"{exc.argument or 'the target'} is ambiguous: the migrations have several heads "
                            f"({', '.join(sorted(exc.heads))}); name one") from None
    except ResolutionError as exc:
        raise RevisionError(f"revision {exc.argument!r} cannot be resolved: {_one_line(exc)}") from None
    except RangeNotAncestorError as exc:
        raise RevisionError(f"revision {exc.lower} is not an ancestor of {exc.upper}") from None
    except CycleDetected as exc:
        raise RevisionError(f"the revisions form a cycle: {', '.join(exc.revisions)}") from None
    except (CommandError, AlembicRevisionError) as exc:
        raise RevisionError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def resolve(script: ScriptDirectory, rev: str) -> str:
    """The full id of `rev` (a unique prefix of four or more characters will do), or `base`/`head(s)`."""
    if rev in ("base", "head", "heads"):
        return rev
    try:
        found = script.revision_map.get_revision(rev)
    except MultipleHeads as exc:
        raise RevisionError(f"revision {rev!r} is ambiguous: {', '.join(repr(h) for h in sorted(exc.heads))} "
                            "(give more characters)") from None
    except ResolutionError:
        matches = sorted(s.revision for s in script.walk_revisions() if s.revision.startswith(rev))
        if len(matches) > 1:
            raise RevisionError(f"revision {rev!r} is ambiguous: {', '.join(repr(m) for m in matches)} "
                                "(give more characters)") from None
        raise RevisionError(f"unknown revision {rev!r}: it is not in {', '.join(_locations(script))}") from None
    except (CommandError, AlembicRevisionError, ValueError) as exc:  # relative or branch@rev forms, malformed ids
        raise RevisionError(f"bad revision {rev!r}: {_one_line(exc)}") from None
    if found is None:
        raise RevisionError(f"unknown revision {rev!r}: it is not in {', '.join(_locations(script))}")
    if isinstance(found, tuple):
        raise RevisionError(f"revision {rev!r} is ambiguous: {', '.join(r.revision for r in found)}")
    return found.revision


def _locations(script: ScriptDirectory) -> list[str]:
    return [str(d) for d in script._version_locations]


def upgrade_plan(script: ScriptDirectory, destination: str, current: Sequence[str]) -> list[RevisionStep]:
    """The steps `alembic upgrade destination` would run from `current`."""
    with revision_errors():
        return list(script._upgrade_revs(destination, tuple(current)))  # type: ignore[arg-type]


def downgrade_plan(script: ScriptDirectory, destination: str, current: Sequence[str]) -> list[RevisionStep]:
    """The steps `alembic downgrade destination` would run from `current` (`-N` for N steps)."""
    try:
        with revision_errors():
            return list(script._downgrade_revs(destination, tuple(current)))  # type: ignore[arg-type]
    except RevisionError as exc:
        if destination.startswith("-"):
            raise RevisionError(f"rollback --steps {destination[1:]} is ambiguous from {', '.join(current)}: "
                                f"Alembic's downgrade {destination} refuses it ({exc}) because the walk crosses a "
                                "merge or branch point; name the revision that should stay applied "
                                "(migrator rollback REV; see migrator status and alembic history)") from None
        raise


def step_script(step: RevisionStep) -> Script:
    return step.revision


def step_destination(step: RevisionStep) -> tuple[str, ...]:
    """The revisions the database is at once `step` ran."""
    return tuple(step.to_revisions)


# --- running env.py --------------------------------------------------------------------------------------

@dataclass
class Hooks:
    """What the runner wants told while Alembic runs: a step's version was stamped (inside the step's
    transaction), and a migration is about to commit part of itself (inside the transaction it commits)."""

    on_version_apply: Callable[..., None]
    on_commit_boundary: Callable[[], None]
    on_autocommit: Callable[[bool], None]  # True entering an autocommit block, False leaving it


class MigratorEnvironment(EnvironmentContext):
    """Alembic's EnvironmentContext, refusing an env.py that does not hand over migrator's connection.

    An env.py that connects by itself would run without migrator's lock, timeouts, per-migration
    transactions and logs; one that reads `sqlalchemy.url` fails with KeyError. Either way it is refused
    before any migration runs (exit 2), with the change to make.
    """

    hooks: Hooks | None = None
    configured_by_migrator = False

    def configure(self, connection: Any = None, url: Any = None, **kw: Any) -> None:  # type: ignore[override]
        if not self.config.attributes.pop(ENV_FLAG, False):
            raise ConfigError(f"{Path(self.script.dir) / 'env.py'} configures Alembic itself instead of handing "
                              f"over migrator's connection, so migrator's lock, timeouts and logs would not "
                              f"apply: {DELEGATE_HINT}")
        self.configured_by_migrator = True
        if not self.is_offline_mode() and self.hooks is not None:
            kw["transaction_per_migration"] = True
            kw["on_version_apply"] = (*_as_tuple(kw.get("on_version_apply")), self.hooks.on_version_apply)
        super().configure(connection=connection, url=url, **kw)
        if not self.is_offline_mode() and self.hooks is not None:
            context = self.get_context()
            hooks = self.hooks
            context.autocommit_block = lambda: autocommit_block(context, hooks)  # type: ignore[method-assign]


# Alembic's `context` module proxies the EnvironmentContext in use, keyed by its exact class: share the proxy
# set-up, so that env.py's `context.configure(...)` reaches MigratorEnvironment.configure.
EnvironmentContext._setups[MigratorEnvironment] = EnvironmentContext._setups[EnvironmentContext]


def autogenerating() -> bool:
    """Whether the env.py running now serves autogenerate (`alembic revision --autogenerate`, `alembic check`),
    which compares the models with the database, rather than a migration run."""
    environment = getattr(alembic.context, "_proxy", None)  # the EnvironmentContext running env.py
    revision_context = environment.context_opts.get("revision_context") if environment is not None else None
    return bool(revision_context is not None and revision_context.command_args.get("autogenerate"))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def run_env(config: Config, script: ScriptDirectory, connection: sa.Connection | None, fn: Callable[..., Any],
            hooks: Hooks | None = None, **context: Any) -> None:
    """Run env.py under migrator's EnvironmentContext, as alembic.command does, on our connection."""
    config.attributes["connection"] = connection
    env = MigratorEnvironment(config, script, fn=fn, **context)
    env.hooks = hooks
    with env:
        try:
            script.run_env()
        except ConfigError:
            raise
        except Exception as exc:
            if not env.configured_by_migrator:
                raise ConfigError(f"{Path(script.dir) / 'env.py'} failed before handing over migrator's "
                                  f"connection ({type(exc).__name__}: {_one_line(exc)}): it does not delegate to "
                                  f"migrator; {DELEGATE_HINT}") from None
            raise


@contextmanager
def autocommit_block(context: MigrationContext, hooks: Hooks) -> Iterator[None]:
    """Alembic's MigrationContext.autocommit_block (online), with two changes.

    - `hooks.on_commit_boundary` runs first, inside the migration's transaction that the block is about to
      commit, so that what it records (the migration is now part-way) commits with the statements before the
      block; `hooks.on_autocommit` is told when the block starts and ends (its statements commit one by one).
    - When the block fails or is interrupted, the original error propagates and the connection is put back
      as far as it can be; Alembic's version commits its placeholder transaction in a `finally`, which
      replaces the real error with SQLAlchemy's PendingRollbackError.
    """
    hooks.on_commit_boundary()
    connection = context.connection
    assert connection is not None
    in_transaction = context._in_connection_transaction()
    if in_transaction:
        assert context._transaction is not None
        context._transaction.commit()
        context._transaction = None
    level = connection.get_isolation_level()
    context.connection = context.impl.connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    placeholder = context.connection.begin()  # SQLAlchemy would autobegin anyway; take control of it
    failed = False
    hooks.on_autocommit(True)
    try:
        yield
    except BaseException:
        failed = True
        with suppress(Exception):
            placeholder.rollback()
        raise
    else:
        placeholder.commit()
    finally:
        hooks.on_autocommit(False)
        with suppress(*((Exception,) if failed else ())):
            context.connection.execution_options(isolation_level=level)
        context.connection = context.impl.connection = connection
    if in_transaction:  # the rest of the migration (and its version stamp) runs in a transaction again
        context._transaction = connection.begin()
