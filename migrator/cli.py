"""The `migrator` command line: parse arguments, run one command, map failures to exit codes.

The only place that turns exceptions into exit codes and that prints command results to stdout. Logs (the
Ecto-style lines) go to stderr through migrator.logs; the last word of every run goes to the termination log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from migrator import __version__, commands, errors, logs, tenant_runs, tenants
from migrator.config import (
    WAIT_INTERVAL,
    WAIT_TIMEOUT,
    Bounds,
    Settings,
    database_config,
    load_settings,
    log_options,
    parse_seconds,
)
from migrator.errors import ConfigError, Interrupted, LintFailed, MigratorError, NotAtHead, PartiallyApplied
from migrator.repos import Repo, load_repos, project_directory, select
from migrator.shutdown import SHUTDOWN
from migrator.status import Status
from migrator.targets import Outcome, Target

DESCRIPTION = """\
Database migrations for PostgreSQL, for release images: Alembic migrations run once, under a lock, one
transaction per migration, logged as Ecto does. Settings come from the environment (DATABASE_URL or PG*,
DATABASE_PASSWORD_FILE, MIGRATOR_*); see the README."""

EPILOG = f"""\
exit codes:
{errors.exit_code_table()}
"""


def _epilog(command: str) -> str:
    return f"exit codes:\n{errors.exit_code_table(command)}\n"


HISTORY_LIMIT_MAX = 1_000_000  # rows `history --limit` may ask for

# What --repo means to each command when migrator.toml lists several databases.
REPO_ALL = "only this database of migrator.toml; default: every one, in the file's order"
REPO_ONE = "the database of migrator.toml to work on: required when it lists several"
REPO_HELP = {"rollback": REPO_ONE, "sql": REPO_ONE, "new": REPO_ONE, "lint": REPO_ONE, "resolve": REPO_ONE,
             "verify": REPO_ONE,
             "migrate": REPO_ALL + " (with --to: required when it lists several)"}
# --tenant: the commands that reach a repo's database(s), and what it means to each.
TENANT_ALL = ("only this tenant of the repo that lists tenants (migrator.toml's tenants or tenants_query); "
              "default: every tenant this process takes (MIGRATOR_TENANT_SHARDS)")
TENANT_ONE = "the tenant to work on, of a repo that lists tenants: required there"
TENANT_HELP = {"migrate": TENANT_ALL, "seed": TENANT_ALL, "status": TENANT_ALL, "wait": TENANT_ALL,
               "history": TENANT_ALL, "rollback": TENANT_ONE, "resolve": TENANT_ONE,
               "sql": TENANT_ONE + " (with --from current)"}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as ConfigError so they get the one-line treatment and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def build_parser() -> Parser:
    parser = Parser(prog="migrator", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    parser.add_argument("-C", "--project-dir", type=Path, default=None, metavar="DIR",
                        help="directory holding migrations/, seeds/ and migrator.toml (default: the working directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)

    def command(name: str, text: str) -> Parser:
        p: Parser = sub.add_parser(name, help=text, description=text, epilog=_epilog(name),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--repo", metavar="NAME", help=REPO_HELP.get(name, REPO_ALL))
        _tenant_option(p, name)
        return p

    p = command("migrate", "upgrade to the head revision (or --to REV)")
    p.add_argument("--to", type=_revision, metavar="REV",
                   help="stop at this revision (required when there are several heads)")
    _allow_newer(p, "exit 0 without migrating")

    p = command("rollback", "downgrade so that REV is the newest applied revision (base undoes everything)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("revision", nargs="?", type=_revision, metavar="REV",
                        help="revision that stays applied, or base")
    target.add_argument("--steps", type=_positive, metavar="N", help="undo the newest N migrations")
    p.add_argument("--dry-run", action="store_true", help="log what would be reverted; change nothing")

    p = command("seed", "run the seed files in seeds/ whose content has not run yet")
    p.add_argument("--force", action="store_true", help="run every seed file, changed or not")
    _allow_newer(p, "exit 0 without seeding (the newer release's seeds apply)")

    p = command("status", "show current revision(s), head(s) and pending revisions")
    p.add_argument("--json", action="store_true", help="one JSON object per database on stdout")
    p.add_argument("--check", action="store_true", help="exit 5 when a database is not at head (6 when a "
                   "migration was left part-way)")
    _allow_newer(p, "count it as at head for --check")

    p = command("wait", "wait until every database is at the head this image knows (never migrates)")
    p.add_argument("--timeout", type=_bounded(WAIT_TIMEOUT), default=300.0, metavar="S",
                   help="give up (exit 5) after S seconds (default 300)")
    p.add_argument("--interval", type=_bounded(WAIT_INTERVAL), default=2.0, metavar="S",
                   help="poll every S seconds (default 2, at least 0.1)")
    _allow_newer(p, "start the app")

    p = command("sql", "print the SQL of a range of migrations, rendered offline (no database needed)")
    p.add_argument("--from", dest="start", default="base", type=_revision, metavar="REV",
                   help="start after this revision (default base; `current` asks the database)")
    p.add_argument("--to", dest="end", default="heads", type=_revision, metavar="REV",
                   help="end at this revision (default heads); below --from renders a rollback")

    p = command("new", "create a revision file with a timestamp id on top of the head")
    p.add_argument("message", help="what the migration does, e.g. \"add users.age\"")

    p = command("lint", "check the migrations' SQL with squawk (dangerous locks, unsafe DDL)")
    p.add_argument("--from", dest="start", default="base", type=_revision, metavar="REV",
                   help="only revisions after REV")

    p = command("history", "show the migration history: every migration and rollback, who ran it, how it ended")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")
    p.add_argument("--limit", type=_positive_up_to(HISTORY_LIMIT_MAX), default=50, metavar="N",
                   help=f"the newest N rows (default 50, at most {HISTORY_LIMIT_MAX})")

    p = command("resolve", "decide a migration left part-way (exit 6): run it again, or mark it done by hand")
    p.add_argument("revision", type=_revision, metavar="REV",
                   help="the revision `migrator status` shows as left part-way")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--rerun", action="store_true", help="the next migrate runs it again (after you undid its "
                     "committed part, or if it is safe to repeat)")
    how.add_argument("--mark-applied", action="store_true", help="you completed it by hand: stamp its version")

    p = command("verify", "check the migrations on a throwaway database (CI): one head, every upgrade, each "
                "downgrade restores the schema, no drift from the models, offline SQL; exit 1 when a check fails")
    p.add_argument("--database-url", metavar="URL", help="verify on this database instead of an embedded PostgreSQL "
                   "(default: DATABASE_URL when set); it must be empty, or --wipe; no password in it (PGPASSWORD, "
                   "DATABASE_PASSWORD_FILE or ~/.pgpass)")
    p.add_argument("--wipe", action="store_true", help="the named database may be emptied first (everything in it "
                   "is dropped)")
    p.add_argument("--strict", action="store_true", help="a revision that cannot render offline fails the check")
    p.add_argument("--downgrades-from", metavar="REV", help="check up/down/up from REV on; earlier revisions only "
                   "upgrade (for a history whose old downgrades are not kept up)")

    text = ("create migrations/, seeds/, migrator.toml, migrator.Dockerfile and Helm values for the app in the "
            "project directory; never overwrites a file")
    p = sub.add_parser("init", help=text, description=text, epilog=_epilog("init"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adopt", action="store_true", help="take over the Alembic project of alembic.ini instead: keep "
                   "its versions/, rewrite its env.py to delegate to migrator (the original kept as env.py.orig)")
    return parser


def _tenant_option(parser: Parser, command: str) -> None:
    if command in TENANT_HELP:
        parser.add_argument("--tenant", metavar="NAME", help=TENANT_HELP[command])


def _allow_newer(parser: Parser, then: str) -> None:
    parser.add_argument("--allow-newer", action="store_true", help="when the database is at a revision this image "
                        "does not know (a newer release), and the migration history proves it descends from this "
                        f"image's head(s), {then}; for expand/contract migrations (old code works on the new schema)")


def _bounded(bounds: Bounds) -> Callable[[str], float]:
    """An argparse type: a duration within `bounds`, the message saying the allowed range."""
    def parse(value: str) -> float:
        try:
            return parse_seconds("value", value, bounds)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value=")) from None
    return parse


def _revision(value: str) -> str:
    """A revision argument: an id (or a unique prefix of one), base, head(s); never empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty revision: give a revision id (or a unique prefix of it), base or "
                                         "head")
    return value


def _positive_up_to(high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = _positive(value)
        if number > high:
            raise argparse.ArgumentTypeError(f"{value!r} is more than {high}")
        return number
    return parse


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


# --- dispatch -----------------------------------------------------------------------------------------

def _repos(args: argparse.Namespace, single: bool = False) -> list[Repo]:
    project_dir = project_directory(args.project_dir)
    repos: list[Repo] = select(load_repos(project_dir), args.repo)
    if single and len(repos) > 1:
        raise ConfigError(f"{args.command} works on one database: choose it with --repo "
                          f"({', '.join(r.name for r in repos)})")
    return repos


def _targets(args: argparse.Namespace, settings: Settings, single: bool = False,
             one_tenant: bool = False) -> list[Target]:
    """The selected repos with their database settings, all validated before any database is touched; with
    --tenant, that tenant alone. A repo's tenants are listed later, when its turn comes (tenant_runs)."""
    targets = [Target(repo, database_config(os.environ, repo.url_env, repo.password_file_env))
               for repo in _repos(args, single)]
    name = getattr(args, "tenant", None)
    if name is not None:
        return [_tenant(targets, settings, name)]
    for target in targets if one_tenant else []:
        if target.repo.tenants is not None:
            raise ConfigError(f"{args.command} works on one database: choose the tenant of repo "
                              f"{target.repo.name!r} with --tenant NAME")
    return targets


def _tenant(targets: list[Target], settings: Settings, name: str) -> Target:
    with_tenants = [t for t in targets if t.repo.tenants is not None]
    if len(with_tenants) != 1:
        repos = ", ".join(t.repo.name for t in with_tenants)
        raise ConfigError(f"--tenant {name}: " + (f"several repos list tenants ({repos}): choose one with --repo"
                                                  if with_tenants else "no repo lists tenants (migrator.toml's "
                                                  "tenants or tenants_query)"))
    [target] = with_tenants
    return tenants.target_for(target, tenants.choose(tenants.listed(target, settings), target, name))


T = TypeVar("T")


def _each(targets: list[Target], run: Callable[[Target], T]) -> list[T]:
    """`run` on each target in turn; with several, a failure or a signal names the database it happened on."""
    results = []
    for target in targets:
        try:
            SHUTDOWN.check()  # a signal that came between two databases stops the run before the next one
            results.append(run(target))
        except (MigratorError, Interrupted) as exc:
            if len(targets) > 1:
                _name_database(exc, target)
            raise
    return results


def _name_database(exc: MigratorError | Interrupted, target: Target) -> None:
    where = f"{target.repo.name} ({target.db.description})"
    if isinstance(exc, Interrupted):
        exc.detail = f"{where}: {exc.detail or f'interrupted by {exc.signal_name}; nothing was running'}"
    elif target.db.description not in str(exc):
        exc.args = (f"{where}: {exc}", *exc.args[1:])


def run_migrate(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    return _each(_targets(args, settings, single=args.to is not None), tenant_runs.fan_out(
        settings, lambda t: commands.migrate(t, settings, to=args.to, allow_newer=args.allow_newer), "migrate",
        tenant_runs.migrated))


def run_rollback(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    [target] = _targets(args, settings, single=True, one_tenant=True)
    return [commands.rollback(target, settings, to=args.revision, steps=args.steps, dry_run=args.dry_run)]


def run_seed(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    return _each(_targets(args, settings), tenant_runs.fan_out(
        settings, lambda t: commands.seed(t, settings, force=args.force, allow_newer=args.allow_newer), "seed",
        tenant_runs.seeded))


def run_status(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    found: list[tuple[str, Status]] = []  # (who, status): the repo, or the repo and tenant

    def show(target: Target) -> Status:
        status = commands.status(target, settings, allow_newer=args.allow_newer)
        if args.json:
            _print(_status_json(status, target.tenant))
        else:
            _print(_status_text(status) if target.tenant is None else _tenant_status_text(status, target.tenant))
        found.append((status.repo if target.tenant is None else f"{status.repo} {target.tenant}", status))
        return status

    def each(target: Target) -> None:
        if target.repo.tenants is None or target.tenant is not None:
            show(target)
            return
        run = tenant_runs.each(target, settings, show, "status")
        if not args.json:
            _print(f"{target.repo.name} ({target.db.description}): {run.scope()}: {run.counts(_at_head)}")
        tenant_runs.finish(run, _at_head)

    _each(_targets(args, settings), each)
    behind = [(who, s) for who, s in found if not s.at_head]
    partial = [(who, s) for who, s in behind if s.partial]
    if args.check and partial:
        raise PartiallyApplied("left part-way: " + tenant_runs.listing([f"{w} {s.partial[-1]}" for w, s in partial]))
    if args.check and behind:
        raise NotAtHead("not at head: " + tenant_runs.listing([f"{w} {s.behind()}" for w, s in behind]))
    return []


def _at_head(status: Status) -> str:
    return "at head" if status.at_head else "not at head"


def _status_json(status: Status, tenant: str | None = None) -> str:
    return json.dumps({"repo": status.repo, **({"tenant": tenant} if tenant is not None else {}),
                       "database": status.database, "current": list(status.current),
                       "heads": list(status.heads), "pending": status.pending, "unknown": status.unknown,
                       "partial": status.partial, "at_head": status.at_head})


def _status_text(status: Status) -> str:
    def revs(values: Sequence[str]) -> str:
        return ", ".join(values) or "none"
    lines = [f"{status.repo} ({status.database})", f"  current: {revs(status.current) if status.current else 'base'}",
             f"  heads:   {revs(status.heads)}", f"  pending: {revs(status.pending)}"]
    if status.unknown:
        lines.append(f"  unknown: {revs(status.unknown)} (not in these migrations: a newer release?)")
    lines += [f"  left part-way: {row}" for row in status.partial]
    lines.append(f"  at head: {'yes' if status.at_head else 'no'}")
    return "\n".join(lines)


def _tenant_status_text(status: Status, tenant: str) -> str:
    """One line per tenant: `tenants acme: at head (20211104101500)`, or why not."""
    current = ", ".join(status.current) or "base"
    if status.at_head:
        return f"{status.repo} {tenant}: at head ({current})"
    return f"{status.repo} {tenant}: not at head: {status.behind()} (current {current})"


def run_wait(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    deadline = time.monotonic() + args.timeout

    def wait(target: Target) -> Outcome:
        if target.repo.tenants is None or target.tenant is not None:
            return commands.wait(target, settings, timeout=args.timeout, interval=args.interval,
                                 allow_newer=args.allow_newer, deadline=deadline)
        return tenant_runs.wait_all(target, settings, timeout=args.timeout, allow_newer=args.allow_newer,
                                    interval=args.interval, deadline=deadline)

    return _each(_targets(args, settings), wait)


def run_sql(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    start, nothing = args.start, f"from {args.start} to {args.end}"
    if start == "current":
        [target] = _targets(args, settings, single=True, one_tenant=True)
        found = commands.status(target, settings).current
        if len(found) > 1:
            raise ConfigError(f"--from current: the database has several heads ({', '.join(found)}); name one")
        start = found[0] if found else "base"
        nothing = f"{target.db.description} is at {start}"
    [repo] = _repos(args, single=True)
    rendered = commands.sql(repo, start, args.end)
    if not rendered.strip():  # say so in SQL, so that a reviewer or a pipeline sees an answer, not nothing
        rendered = f"-- nothing to migrate: {nothing}\n"
    _print(rendered, end="")
    return []


def run_new(args: argparse.Namespace, _settings: Settings) -> list[Outcome]:
    [repo] = _repos(args, single=True)
    _print(str(commands.new(repo, args.message)))
    return []


def run_lint(args: argparse.Namespace, _settings: Settings) -> list[Outcome]:
    [repo] = _repos(args, single=True)
    try:
        _print(commands.lint(repo, args.start))
    except LintFailed as exc:
        _print(exc.report)
        raise
    return []


def run_history(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    def show(target: Target) -> int:
        rows = commands.history_rows(target, settings, args.limit)
        tenant = {"tenant": target.tenant} if target.tenant is not None else {}
        if args.json:
            for row in rows:
                _print(json.dumps({"repo": target.repo.name, **tenant, **row}, default=_json_value))
            return len(rows)
        _print(f"{target.repo.name} ({target.db.description}): {len(rows)} row(s)")
        for row in rows:
            _print("  " + _history_line(row))
        return len(rows)

    def each(target: Target) -> None:
        if target.repo.tenants is None or target.tenant is not None:
            show(target)
        else:
            tenant_runs.finish(tenant_runs.each(target, settings, show, "history"), lambda _rows: "shown")

    _each(_targets(args, settings), each)
    return []


def _json_value(value: Any) -> str:
    """Dates in ISO 8601 UTC with `T` and `Z`, as the JSON logs write them."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _history_line(row: dict[str, Any]) -> str:
    when = row["started_at"].isoformat(timespec="seconds") if row["started_at"] else "?"
    took = f"{row['duration_ms'] / 1000:.1f}s" if row["duration_ms"] is not None else "-"
    who = row["pod"] or row["host"] or "?"
    image = f" image {row['image']}" if row["image"] else ""
    detail = f": {row['detail']}" if row["detail"] else ""
    return (f"{when} {row['revision']} {row['direction']} {row['outcome']} in {took} by {who}{image} "
            f"(migrator {row['migrator_version']}){detail}")


def run_resolve(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    [target] = _targets(args, settings, single=True, one_tenant=True)
    return [commands.resolve(target, settings, args.revision, rerun=args.rerun)]


def run_verify(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    from migrator import verify  # noqa: PLC0415  (only verify needs it)

    [repo] = _repos(args, single=True)
    options = verify.Options(strict=args.strict, downgrades_from=args.downgrades_from,
                             database_url=args.database_url, wipe=args.wipe)
    return [verify.verify(repo, settings, options, emit=_print)]


def run_init(args: argparse.Namespace, _settings: Settings) -> list[Outcome]:
    from migrator import scaffold  # noqa: PLC0415  (only init needs it)

    _print("\n".join(scaffold.init((args.project_dir or Path.cwd()).resolve(), adopt=args.adopt)))
    return []


RUNNERS: dict[str, Callable[[argparse.Namespace, Settings], list[Outcome]]] = {
    "migrate": run_migrate, "rollback": run_rollback, "seed": run_seed, "status": run_status, "wait": run_wait,
    "sql": run_sql, "new": run_new, "lint": run_lint, "history": run_history, "resolve": run_resolve,
    "init": run_init, "verify": run_verify,
}


# --- main ---------------------------------------------------------------------------------------------

def _configure_logging() -> None:
    """Logging first, so that even a bad argument or setting is reported in the chosen format.

    A bad log setting itself falls back to the console here; load_settings then reports it (exit 2).
    """
    try:
        log_format, log_level = log_options()
    except ConfigError:
        log_format, log_level = "console", "info"
    logs.configure(log_format, log_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code. Its outcome is written once, by SHUTDOWN.finish."""
    SHUTDOWN.install()
    _configure_logging()
    started = time.monotonic()
    command = "migrator"
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        settings = load_settings()
        outcomes = RUNNERS[command](args, settings)
    except MigratorError as exc:
        return _fail(command, exc.exit_code, str(exc))
    except errors.OutputClosed:
        return _output_closed()
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else errors.INTERRUPTED_SIGINT
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        detail = exc.detail if isinstance(exc, Interrupted) else None
        return _fail(command, code, detail or f"interrupted by {name}; no migration or seed was running")
    except Exception as exc:
        from migrator import database  # noqa: PLC0415  (loaded already by any command that reached a database)

        database_error = database.unhandled(exc)
        if database_error is not None:
            return _fail(command, database_error.exit_code, str(database_error))
        # A bug: say so in one line, then show where.
        return SHUTDOWN.finish(errors.FAILED, f"{command} failed (exit 1): unexpected {type(exc).__name__}: {exc}",
                               f"unexpected error ({type(exc).__name__}: {exc}); please report it", exc_info=True)
    summary = "; ".join(o.summary() for o in outcomes) or f"{command}: ok"
    return SHUTDOWN.finish(errors.OK, f"{summary} (total {time.monotonic() - started:.1f}s)")


def _print(text: str, end: str = "\n") -> None:
    """A command's result on stdout, flushed at once: a reader that went away (`migrator sql | head`)
    surfaces here, inside main, as OutputClosed, never as a traceback or a failed flush at exit."""
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except BrokenPipeError:
        raise errors.OutputClosed from None


def _output_closed() -> int:
    """Stop quietly, as a command ended by SIGPIPE does; what was unwritten goes nowhere."""
    with suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the buffered rest is flushed there, not at the closed pipe
        os.close(devnull)
    logs.get_logger().debug("standard output was closed by its reader; stopped writing")
    return SHUTDOWN.finish(errors.OUTPUT_CLOSED, None)


def _fail(command: str, code: int, message: str) -> int:
    return SHUTDOWN.finish(code, f"{command} failed (exit {code}): {message}", message)


def entrypoint() -> None:
    """Run, then end the process at once with the exit code (os._exit after flushing the output).

    By then every outcome is logged (each line flushed as written), the termination message is written, and
    the lock and connections are closed. What interpreter teardown would still do (garbage-collect objects
    tied to a stalled peer, run finalisers) can only delay the exit past the documented bounds; CI saw a run
    that had logged its exit-3 line still alive seconds later. Skipping it also saves about 0.1 s after a no-op
    (make bench)."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # finish flushed them already; this only empties what a late line left
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entrypoint()
