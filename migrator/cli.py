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
from typing import TYPE_CHECKING, Any, TypeVar

from migrator import collector, commands, errors, logs, tenant_runs, tenants
from migrator.arguments import build_parser as build_parser  # noqa: PLC0414  (tests read --help through cli)
from migrator.config import Settings, database_config, load_settings, log_options
from migrator.errors import ConfigError, Interrupted, LintFailed, MigratorError, NotAtHead, PartiallyApplied
from migrator.repos import Repo, load_repos, project_directory, select
from migrator.shutdown import SHUTDOWN
from migrator.targets import Outcome, Target

if TYPE_CHECKING:
    from migrator.status import Status


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
                       "partial": status.partial, "changed": status.changed, "missing": status.missing,
                       "unrecorded": status.unrecorded, "at_head": status.at_head})


def _status_text(status: Status) -> str:
    def revs(values: Sequence[str]) -> str:
        return ", ".join(values) or "none"
    lines = [f"{status.repo} ({status.database})", f"  current: {revs(status.current) if status.current else 'base'}",
             f"  heads:   {revs(status.heads)}", f"  pending: {revs(status.pending)}"]
    if status.unknown:
        lines.append(f"  unknown: {revs(status.unknown)} (not in these migrations: a newer release?)")
    lines += [f"  left part-way: {row}" for row in status.partial]
    lines += [f"  changed since applied: {row}" for row in status.changed]
    lines += [f"  applied, file missing: {row}" for row in status.missing]
    if status.unrecorded:
        lines.append(f"  checksums not recorded yet: {status.unrecorded} (the next migrate records them)")
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
    return [commands.resolve(target, settings, args.revision, rerun=args.rerun,
                             accept_checksum=args.accept_checksum)]


def run_manifest(args: argparse.Namespace, _settings: Settings) -> list[Outcome]:
    for path in commands.write_manifest(_repos(args)):
        _print(str(path))
    return []


def run_verify(args: argparse.Namespace, settings: Settings) -> list[Outcome]:
    from migrator import verify  # noqa: PLC0415  (only verify needs it)

    [repo] = _repos(args, single=True)
    options = verify.Options(strict=args.strict, downgrades_from=args.downgrades_from,
                             database_url=args.database_url, wipe=args.wipe)
    return [verify.verify(repo, settings, options, emit=_print)]


def run_init(args: argparse.Namespace, _settings: Settings) -> list[Outcome]:
    from migrator import scaffold  # noqa: PLC0415  (only init needs it)

    _print("\n".join(scaffold.init((args.project_dir or Path.cwd()).resolve(), adopt=args.adopt,
                                   config=args.config)))
    return []


RUNNERS: dict[str, Callable[[argparse.Namespace, Settings], list[Outcome]]] = {
    "migrate": run_migrate, "rollback": run_rollback, "seed": run_seed, "status": run_status, "wait": run_wait,
    "sql": run_sql, "new": run_new, "lint": run_lint, "history": run_history, "resolve": run_resolve,
    "init": run_init, "verify": run_verify, "manifest": run_manifest,
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
    (make bench). The collector is tuned for one run first (migrator.collector)."""
    collector.tune_for_one_run()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # finish flushed them already; this only empties what a late line left
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entrypoint()
