"""`migrator verify`: the checks a project's CI runs on its migrations, on a throwaway database.

What pytest-alembic's users write by hand (test_single_head_revision, test_upgrade, test_up_down_consistency,
test_model_definitions_match_ddl), as one command: a line per check on stdout, exit 1 when one fails.

- single head: the migrations have one head (two mean that a merge was forgotten);
- upgrade: every revision upgrades from base, one by one in order, each a migrate step of its own (logged on
  stderr as `migrate` logs it);
- up/down/up: right after each revision's upgrade, its downgrade restores exactly the schema before the
  upgrade (migrator.schema_snapshot compares the catalogs object by object), and its upgrade applies again,
  to the same schema. pytest-alembic's up/down test only checks that downgrades run, one after the other
  from head; comparing the schema names what a downgrade forgot, and checking each revision right after its
  upgrade names the revision that forgot it;
- drift: the models (env.py's target_metadata) match the schema the migrations build, compared by Alembic's
  autogenerate as `alembic check` does, with env.py's own options (include_object, compare_type, ...);
  skipped, with the reason, when env.py gives no metadata;
- offline sql: each revision renders as SQL without a database, as `migrator sql` renders it; one that needs
  a database (it reads data, or branches on what it finds) is a note, or a failure with --strict.

Each failure names the revision and the difference. A failed cycle rebuilds the database from base up to the
revision, so that every later revision, and drift, is still checked from the schema a clean upgrade builds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrator import alembic_env, errors, offline, schema_snapshot, scratch_database
from migrator import alembic_internals as internals
from migrator.config import Settings
from migrator.errors import MigrationFailed, MigratorError, PartiallyApplied, RevisionError
from migrator.logs import get_logger
from migrator.migrations import Migrations
from migrator.redaction import redact
from migrator.repos import Repo
from migrator.session import MigrationSession, locked
from migrator.steps import BACKWARD, FORWARD
from migrator.tables import history
from migrator.tables.seed_ledger import TABLE as SEED_LEDGER
from migrator.targets import Outcome, Target, connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext, RevisionStep
    from alembic.script import Script, ScriptDirectory

OK, FAIL, SKIP, NOTE = "ok", "FAIL", "skip", "note"
HEAD, UPGRADE, CYCLE, DRIFT, OFFLINE = "single head", "upgrade", "up/down/up", "drift", "offline sql"
CHECKS = (HEAD, UPGRADE, CYCLE, DRIFT, OFFLINE)
# What a migration's failure is to verify: the check's verdict. Anything else (the database lost, the lock
# lost, a bad env.py) stops verify with its own exit code, as it stops migrate.
CHECK_FAILURES = (MigrationFailed, PartiallyApplied, RevisionError)

Emit = Callable[[str], None]


class VerifyFailed(MigratorError):
    """At least one check failed (its lines say which revision and what differs)."""

    exit_code = errors.FAILED


@dataclass(frozen=True)
class Options:
    strict: bool = False  # a revision that cannot render offline fails `offline sql`
    downgrades_from: str | None = None  # revisions before this one only upgrade (irreversible history)
    database_url: str | None = None
    wipe: bool = False


@dataclass(frozen=True)
class Scripts:
    """The repo's Alembic configuration and revisions, in the order verify walks them (base first)."""

    config: Config
    script: ScriptDirectory
    order: list[Script]


@dataclass(frozen=True)
class Result:
    status: str
    check: str
    detail: str

    def line(self) -> str:
        # Masked as the logs are: a detail may quote the database's definitions (a function body's PASSWORD '...').
        return redact(f"{self.status:<4}  {self.check}: {self.detail}")


@dataclass
class Report:
    """The results so far, each line emitted as it is known."""

    emit: Emit
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.emit(result.line())

    def status(self, check: str) -> str:
        found = {r.status for r in self.results if r.check == check}
        return FAIL if FAIL in found else SKIP if SKIP in found else OK


def verify(repo: Repo, settings: Settings, options: Options, emit: Emit) -> Outcome:
    """Run every check on a throwaway database; VerifyFailed (exit 1) when one failed."""
    started = time.monotonic()
    config = internals.alembic_config(repo)
    script = internals.load_script(config)
    scripts = Scripts(config, script, list(reversed(list(script.walk_revisions()))))  # each after its parents
    checked_from = _checked_from(scripts, options.downgrades_from)  # a bad REV fails before any database
    report = Report(emit)
    with scratch_database.throwaway(repo, settings.timeouts, url=options.database_url, wipe=options.wipe) as db:
        report.add(single_head(script))  # after the database is known to be usable: a refusal prints no check
        target = Target(repo, db)
        if _walk(target, settings, scripts, checked_from=checked_from, report=report):
            report.add(drift(target, settings, scripts))
        else:
            report.add(Result(SKIP, DRIFT, "the upgrade did not reach head"))
    for result in offline_sql(scripts, strict=options.strict):
        report.add(result)
    return _verdict(repo, report, started)


def _verdict(repo: Repo, report: Report, started: float) -> Outcome:
    statuses = {check: report.status(check) for check in CHECKS}
    failed = [check for check, status in statuses.items() if status == FAIL]
    skipped = [check for check, status in statuses.items() if status == SKIP]
    notes = sum(1 for r in report.results if r.status == NOTE)
    counts = (f"{len(CHECKS) - len(failed) - len(skipped)} passed, {len(failed)} failed, {len(skipped)} skipped"
              + (f", {notes} note(s)" if notes else ""))
    report.emit(f"verify: {counts} in {time.monotonic() - started:.1f}s")
    if failed:
        raise VerifyFailed(f"verify: {', '.join(failed)} failed (see the FAIL lines on standard output)")
    return Outcome(repo.name, "verify", seconds=time.monotonic() - started, note=counts)


def label(revision: Script) -> str:
    return f"{revision.revision} ({internals.module_name(revision)})"


def _checked_from(scripts: Scripts, downgrades_from: str | None) -> int:
    """The position in the walk from which revisions are cycled (up/down/up); 0 for all."""
    if downgrades_from is None:
        return 0
    rev = internals.resolve(scripts.script, downgrades_from)
    positions = [i for i, s in enumerate(scripts.order) if s.revision == rev]
    if not positions:
        raise RevisionError(f"--downgrades-from {downgrades_from}: name a revision, not {rev}")
    return positions[0]


# --- single head --------------------------------------------------------------------------------------

def single_head(script: ScriptDirectory) -> Result:
    heads = sorted(script.get_heads())
    shown = [label(s) for s in (script.get_revision(h) for h in heads) if s is not None]
    if not heads:
        return Result(SKIP, HEAD, "there are no revisions yet")
    if len(heads) == 1:
        return Result(OK, HEAD, shown[0])
    return Result(FAIL, HEAD, f"{len(heads)} heads, {', '.join(shown)}: merge them (alembic merge heads) or "
                              "rebase the newer one on the other")


# --- upgrade and up/down/up ---------------------------------------------------------------------------

def _walk(target: Target, settings: Settings, scripts: Scripts, *, checked_from: int,
          report: Report) -> bool:
    """Upgrade revision by revision, cycling each from `checked_from` on; whether every revision upgraded.
    The upgrade's line comes first, then each failed cycle's, so that they read in the order of the checks."""
    with _locked_session(target, settings) as session:
        walk = _Walker(session, scripts.config, scripts.script, target.repo.version_table)
        order = scripts.order
        failures: list[Result] = []
        before = walk.snapshot()
        walk.keep_extensions = {name for kind, name in before if kind == "extension"}
        for position, revision in enumerate(order):
            try:
                walk.step(revision, forward=True)
            except CHECK_FAILURES as exc:
                report.add(Result(FAIL, UPGRADE, f"{label(revision)} (revision {position + 1} of {len(order)}): "
                                                 f"{_one_line(exc)}"))
                for result in failures:
                    report.add(result)
                report.add(Result(SKIP, CYCLE, f"stopped at {label(revision)}, which does not upgrade"))
                return False
            if position < checked_from:
                before = walk.snapshot()
                continue
            problem = walk.cycle(revision, before, walk.snapshot())
            if problem:
                failures.append(Result(FAIL, CYCLE, f"{label(revision)}: {problem}"))
                get_logger().info(f"== Rebuilding from base to {label(revision)} after its failed up/down/up")
                try:
                    walk.rebuild(revision)
                except CHECK_FAILURES as exc:  # what the cycle left outlived the rebuild: the walk cannot go on
                    report.add(Result(SKIP, UPGRADE, f"stopped at {label(revision)} (revision {position + 1} of "
                                                     f"{len(order)}): the rebuild from base after its failed "
                                                     f"up/down/up failed: {_one_line(exc)}"))
                    for result in failures:
                        report.add(result)
                    return False
            before = walk.snapshot()
        heads = ", ".join(sorted(scripts.script.get_heads())) or "base"
        report.add(Result(OK, UPGRADE, f"{len(order)} revision(s) from base to {heads}, one by one"))
        for result in failures:
            report.add(result)
        if not failures:
            report.add(Result(OK, CYCLE, _cycled(order, checked_from)))
        return True


@contextmanager
def _locked_session(target: Target, settings: Settings) -> Iterator[MigrationSession]:
    """The locked migration session `migrate` uses (its steps, statements, history and logs), for the walk."""
    with connection(target, settings) as conn, locked(target, settings, conn) as session:
        assert session is not None  # no `satisfied` was given: the lock is held, or LockTimeout was raised
        yield session


def _cycled(order: Sequence[Script], checked_from: int) -> str:
    text = (f"each of {len(order) - checked_from} revision(s) downgrades to the schema before its upgrade and "
            "upgrades again")
    if checked_from:
        text += f" (from {label(order[checked_from])} on, --downgrades-from; {checked_from} before it only upgrade)"
    return text


@dataclass
class _Walker:
    """Runs single migrations on the locked session and reads the schema between them."""

    session: MigrationSession
    config: Config
    script: ScriptDirectory
    version_table: str
    keep_extensions: set[str] = field(default_factory=set)

    def snapshot(self) -> dict[tuple[str, str], str]:
        return schema_snapshot.read(self.session.conn, {self.version_table, history.TABLE, SEED_LEDGER})

    def step(self, revision: Script, *, forward: bool) -> None:
        """Upgrade or downgrade exactly `revision`, as one migrate or rollback step."""
        parents = internals.parents(revision)
        destination = revision.revision if forward else ",".join(parents) or "base"
        run = Migrations(self.session, self.config, self.script, self.version_table,
                                FORWARD if forward else BACKWARD)
        run.run(lambda current: self._plan(revision, forward, current), destination)

    def _plan(self, revision: Script, forward: bool, current: Sequence[str]) -> list[RevisionStep]:
        rev = revision.revision
        if forward:
            steps = internals.upgrade_plan(self.script, rev, current)
        else:  # `rev@-1` takes back only rev, also beside other branches; a merge point goes back to its parents
            parents = internals.parents(revision)
            steps = internals.downgrade_plan(self.script, parents[0] if len(parents) > 1 else f"{rev}@-1", current)
        planned = [internals.step_script(s).revision for s in steps]
        if planned != [rev]:
            raise RevisionError(f"{'upgrading' if forward else 'downgrading'} {label(revision)} alone is not "
                                f"possible from {', '.join(current) or 'base'}: Alembic plans {', '.join(planned)}")
        return steps

    def cycle(self, revision: Script, before: schema_snapshot.Snapshot, after: schema_snapshot.Snapshot) -> str:
        """Down and up again right after the upgrade; what went wrong, or '' when nothing did."""
        try:
            self.step(revision, forward=False)
        except CHECK_FAILURES as exc:
            return f"the downgrade failed: {_one_line(exc)}"
        downgraded = schema_snapshot.compare(before, self.snapshot())
        problems = [f"the downgrade {downgraded.describe(added='left behind', removed='did not restore')}"
                    ] if downgraded else []
        try:
            self.step(revision, forward=True)
        except CHECK_FAILURES as exc:
            return "; ".join([*problems, f"the upgrade applied again failed: {_one_line(exc)}"])
        again = schema_snapshot.compare(after, self.snapshot())
        if again:
            problems.append(f"the upgrade applied again differs from its first run: {again.describe()}")
        return "; ".join(problems)

    def rebuild(self, revision: Script) -> None:
        """After a failed cycle: empty the database and upgrade from base to `revision` in one go, so that the
        next revision (and drift) starts from the schema a clean upgrade builds, not from what the cycle left."""
        scratch_database.drop_everything(self.session.conn, keep_extensions=self.keep_extensions)
        run = Migrations(self.session, self.config, self.script, self.version_table, FORWARD)
        run.run(lambda current: internals.upgrade_plan(self.script, revision.revision, current), revision.revision)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --- drift --------------------------------------------------------------------------------------------

def drift(target: Target, settings: Settings, scripts: Scripts) -> Result:
    """The models against the schema at head, as `alembic check` compares them (autogenerate)."""
    import sqlalchemy as sa  # noqa: PLC0415
    from alembic.autogenerate import produce_migrations, render_python_code  # noqa: PLC0415

    from migrator import database  # noqa: PLC0415

    found: dict[str, Any] = {}

    def compare(_heads: tuple[str, ...], context: MigrationContext) -> list[Any]:
        metadata = alembic_env.models(context.opts.get("target_metadata"))  # not the convention's stand-in
        found["why"] = alembic_env.why_not_loaded(context.opts.get("target_metadata"))
        if metadata is not None:
            found["ops"] = produce_migrations(context, metadata).upgrade_ops
        return []  # no migration runs: this only compares

    engine = sa.create_engine("postgresql+psycopg://", poolclass=sa.pool.NullPool,
                              creator=lambda: database.connect(target.db, settings.timeouts, purpose="verify"))
    try:
        with engine.connect() as conn:
            internals.run_env(scripts.config, scripts.script, conn, compare)
    finally:
        engine.dispose()
    script = scripts.script
    heads = ", ".join(label(s) for s in (script.get_revision(h) for h in sorted(script.get_heads())) if s)
    ops = found.get("ops")
    if ops is None and found.get("why"):
        return Result(SKIP, DRIFT, f"env.py's target_metadata() failed where verify runs ({found['why']}): run "
                                   "verify where your models import (your app's packages installed, its settings set)")
    if ops is None:
        return Result(SKIP, DRIFT, "env.py gives no target_metadata (pass your models' metadata: "
                                   "run_migrations(target_metadata=Base.metadata), importable where verify runs)")
    if ops.is_empty():
        return Result(OK, DRIFT, f"the models match the schema at {heads}")
    code = [line.strip() for line in render_python_code(ops).splitlines() if line.strip().startswith("op.")]
    shown = "; ".join(code[:5]) + (f"; and {len(code) - 5} more" if len(code) > 5 else "")
    return Result(FAIL, DRIFT, f"the models differ from the schema at {heads}; a migration to match them would "
                               f"run: {' '.join(shown.split())}")


# --- offline sql --------------------------------------------------------------------------------------

def offline_sql(scripts: Scripts, *, strict: bool) -> list[Result]:
    """Each revision rendered on its own, from its parent, as `migrator sql --from PARENT --to REV` does."""
    results: list[Result] = []
    rendered = 0
    merges = 0
    for revision in scripts.order:
        parents = internals.parents(revision)
        if len(parents) > 1:
            merges += 1  # a merge point renders only its version stamp
            continue
        try:
            offline.render_sql(scripts.config, scripts.script, parents[0] if parents else "base", revision.revision)
        except RevisionError as exc:
            results.append(Result(FAIL if strict else NOTE, OFFLINE, f"{label(revision)}: {_one_line(exc)}"))
        else:
            rendered += 1
    merged = f" ({merges} merge point(s) left out)" if merges else ""
    summary = f"{rendered} of {rendered + len(results)} revision(s) render without a database{merged}"
    if results and not strict:
        summary += "; the others need one (reported; --strict fails them)"
    return [*results, Result(FAIL if results and strict else OK, OFFLINE, summary)]
