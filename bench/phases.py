"""Where an apply run's time goes, phase by phase: `migrator migrate` and plain Alembic on the same N revisions.

`python -m bench.phases [--runs 5] [--revisions 200]`. Each side runs in a child process of its own (this module
with --child) that wraps the functions bounding each phase before the command runs. A wrapper takes the wall
clock, the thread's CPU time and the server backend's CPU time (/proc/PID/schedstat, in nanoseconds: the embedded
server runs on this machine) when the function is entered and left, and charges the difference to its phase less
what the phases nested in it took: every number is exclusive, and the phases of one thread add up. The
wrappers' own cost is charged to no phase (it is shown on its own line). From outside, the parent measures the
whole process (wait4) and the server (the postmaster's reaped children), as bench.run and bench.tenants do, so
that "interpreter start and exit" is what the process cost outside the child's own clock.

migrator runs on a copy of the revisions as the image ships them (with the manifest its build writes; with
--no-manifest, as from a checkout, where it computes each file's checksum as it applies). The sides run
interleaved, each on a fresh database of one embedded PostgreSQL; the table shows each phase's median over the
runs, in milliseconds for the whole run and microseconds per migration for the phases that
happen once per migration. Wrappers cost a few microseconds each, so the profiled runs are slower than bench.run's;
the phases' shares, not their sum, are the point. Numbers, not assertions.
"""

# ruff: noqa: PLC0415  (the child imports inside the phases it times; see the comment above the imports)
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The child imports nothing beyond the standard library before it starts timing the imports.

MONITOR, WATCHDOG = "monitor thread (its own CPU: connect, looks)", "watchdog thread (its own CPU)"
THREADS = (MONITOR, WATCHDOG)  # the phases that are the root of a thread other than the main one
PSYCOPG_WAIT, MIGRATOR_WAIT = ("round trips: psycopg (protocol: its client CPU)",
                               "round trips: migrator's wait (watchdog arm/cancel, signal window)")
PASS = (PSYCOPG_WAIT, MIGRATOR_WAIT)


class Profiler:
    """Exclusive wall, CPU and server CPU per phase, per thread."""

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
        self.local = threading.local()
        self.main = threading.main_thread()
        self.backend: int | None = None  # the main thread's server backend, once connected
        self.extra_backends: dict[str, int] = {}  # other connections' backends (the monitor's), by phase
        self.overhead = [0.0, 0.0]
        self.threads: dict[str, int] = {}  # the native id of each thread root phase (read at the end if still running)

    def _stack(self) -> list[list[float]]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = [[0.0, 0.0, 0.0]]
        return stack

    def server_ns(self) -> int:
        if self.backend is None or threading.current_thread() is not self.main:
            return 0
        return backend_ns(self.backend)

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        profiler, main = self, self.main

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if phase in THREADS:
                profiler.threads[phase] = threading.get_native_id()
            elif threading.current_thread() is not main:
                return fn(*args, **kwargs)  # another thread's time is its root phase's
            token = profiler.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                profiler.leave(phase, token)
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    def timed_gen(self, phase: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """A generator function whose every resumption is charged to `phase`."""
        profiler = self

        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            token = profiler.enter()
            try:
                gen = fn(*args, **kwargs)
            finally:
                profiler.leave(phase, token)
            while True:
                token = profiler.enter()
                try:
                    value = next(gen)
                except StopIteration:
                    return
                finally:
                    profiler.leave(phase, token)
                yield value
        return wrapper

    def enter(self) -> tuple[float, float, int, float, float]:
        wa, ca = time.perf_counter(), time.thread_time()
        s0 = self.server_ns()
        self._stack().append([0.0, 0.0, 0.0])
        return wa, ca, s0, time.perf_counter(), time.thread_time()

    def leave(self, phase: str, token: tuple[float, float, int, float, float]) -> None:
        cc, wc = time.thread_time(), time.perf_counter()
        wa, ca, s0, wb, cb = token
        s1 = self.server_ns()
        stack = self._stack()
        child = stack.pop()
        wall, cpu, server = wc - wb, cc - cb, (s1 - s0) / 1e9
        own_wall, own_cpu, own_server = wall - child[0], cpu - child[1], server - child[2]
        # A round trip's phase keeps its client CPU; the wait for the server, and the server's work meanwhile,
        # belong to the phase that sent the statement.
        idle = max(own_wall - own_cpu, 0.0) if phase in PASS else 0.0
        passed = own_server if phase in PASS else 0.0
        row = self.acc[phase]
        row[0] += own_wall - idle
        row[1] += own_cpu
        row[2] += own_server - passed
        row[3] += 1
        wd, cd = time.perf_counter(), time.thread_time()
        parent = stack[-1]
        parent[0] += wd - wa - idle
        parent[1] += cd - ca
        parent[2] += server - passed
        self.overhead[0] += (wb - wa) + (wd - wc)
        self.overhead[1] += (cb - ca) + (cd - cc)

    def wrap(self, owner: Any, name: str, phase: str, *, gen: bool = False) -> None:
        raw = owner.__dict__[name] if isinstance(owner, type) and name in owner.__dict__ else getattr(owner, name)
        if isinstance(raw, classmethod):
            setattr(owner, name, classmethod(self.timed(phase, raw.__func__)))
        elif isinstance(raw, staticmethod):
            setattr(owner, name, staticmethod(self.timed(phase, raw.__func__)))
        else:
            setattr(owner, name, (self.timed_gen if gen else self.timed)(phase, raw))

    def report(self, inner_wall: float) -> dict[str, Any]:
        for phase, tid in self.threads.items():
            if phase not in self.acc:  # still running (the watchdog never ends): its thread's CPU so far
                self.acc[phase] = [0.0, backend_ns(tid, "/proc/self/task/{}/schedstat") / 1e9, 0.0, 1]
        return {"phases": dict(self.acc), "overhead": self.overhead, "inner_wall": inner_wall,
                "process_cpu": time.process_time(), "extra_backends": self.extra_backends}


_SCHEDSTAT: dict[str, int] = {}


def backend_ns(pid: int, path: str = "/proc/{}/schedstat") -> int:
    """CPU nanoseconds the process (or thread) has run so far; 0 when it is gone. The file stays open: a read
    at offset 0 gives the current value again, in a fraction of an open's cost."""
    name = path.format(pid)
    try:
        fd = _SCHEDSTAT.get(name)
        if fd is None:
            fd = _SCHEDSTAT[name] = os.open(name, os.O_RDONLY)
        return int(os.pread(fd, 100, 0).split()[0])
    except (OSError, ValueError):
        return 0


# --- the children ------------------------------------------------------------------------------------------

COMMON_IMPORTS = ("psycopg", "sqlalchemy", "sqlalchemy.dialects.postgresql.psycopg", "alembic.runtime.migration",
                  "alembic.runtime.environment", "alembic.ddl.postgresql", "alembic.op", "alembic.context",
                  "alembic.command", "alembic.script")


def _import_all(profiler: Profiler, phase: str, names: tuple[str, ...]) -> None:
    import importlib

    token = profiler.enter()
    for name in names:
        importlib.import_module(name)
    profiler.leave(phase, token)


def _common_wraps(p: Profiler, statements_phase: str, stamp_phase: str) -> None:
    """Wrappers both sides share: SQLAlchemy's execution, Alembic's run loop, psycopg's waits and connects."""
    import logging

    import psycopg
    from alembic.runtime.migration import HeadMaintainer, MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import default

    for name in ("do_execute", "do_execute_no_params"):
        original = getattr(default.DefaultDialect, name)

        def make(statements: Callable[..., Any], stamp: Callable[..., Any]) -> Callable[..., Any]:
            def call(self: Any, cursor: Any, statement: str, *rest: Any) -> Any:
                return (stamp if "alembic_version" in statement else statements)(self, cursor, statement, *rest)
            return call
        setattr(default.DefaultDialect, name, make(p.timed(statements_phase, original), p.timed(stamp_phase, original)))
    p.wrap(default.DefaultDialect, "do_commit", "per step: COMMIT round trip (SQLAlchemy commit)")
    p.wrap(default.DefaultDialect, "do_begin",
           "per step: BEGIN (SQLAlchemy; psycopg sends it with the first statement)")
    p.wrap(MigrationContext, "run_migrations",
           "per step: Alembic + SQLAlchemy (run loop, ops, DDL compile, transactions)")
    p.wrap(HeadMaintainer, "update_to_step", "per step: Alembic version stamp (compile)")
    p.wrap(MigrationContext, "_ensure_version_table", "version table: create or check")
    p.wrap(ScriptDirectory, "_load_revisions", "load scripts (ScriptDirectory, revision files)", gen=True)
    p.wrap(ScriptDirectory, "from_config", "load scripts (ScriptDirectory, revision files)")
    p.wrap(psycopg.Connection, "wait", PSYCOPG_WAIT)
    p.wrap(logging.Logger, "_log", "logging (stdlib: Alembic's lines)")

    original_connect = psycopg.Connection.__dict__["connect"].__func__

    def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        conn = original_connect(cls, *args, **kwargs)
        if threading.current_thread() is p.main and p.backend is None:
            p.backend = conn.info.backend_pid
        return conn
    psycopg.Connection.connect = classmethod(p.timed("connect (libpq, backend start)", connect))  # type: ignore
    psycopg.connect = psycopg.Connection.connect  # what SQLAlchemy's dialect calls


def child_migrator(p: Profiler) -> int:
    _import_all(p, "imports: migrator's no-op path (migrator.cli, psycopg, structlog)", ("migrator.cli",))
    _import_all(p, "imports: the apply path (SQLAlchemy, Alembic, migrator's run loop)",
                (*COMMON_IMPORTS, "migrator.migrations", "migrator.session", "migrator.engine", "migrator.version_skew",
                 "migrator.alembic_internals", "migrator.steps", "migrator.monitor", "migrator.alembic_env"))
    import structlog._base

    from migrator import (
        cli,
        commands,
        database,
        deadlines,
        engine,
        file_sums,
        lock,
        migrations,
        monitor,
        scripts,
        server_session,
        session,
        shutdown,
        statement_hooks,
        statements,
        validation,
    )
    from migrator.tables import history, versions

    step = "per step: "
    _common_wraps(p, step + "migration statements (SQLAlchemy execute, psycopg send)", step + "version stamp execute")
    p.wrap(cli, "_configure_logging", "setup: logging, arguments, settings, repos")
    p.wrap(argparse.ArgumentParser, "parse_args", "setup: logging, arguments, settings, repos")
    p.wrap(cli, "build_parser", "setup: logging, arguments, settings, repos")
    p.wrap(cli, "load_settings", "setup: logging, arguments, settings, repos")
    p.wrap(cli, "_targets", "setup: logging, arguments, settings, repos")
    p.wrap(validation, "fast", "fast path: the files' heads (text scan or manifest)")
    p.wrap(validation.Fast, "read", "read the version table")
    p.wrap(commands, "state", "read the version table")
    p.wrap(database, "connect", "connect (+ first answer, pooler check)")
    p.wrap(server_session, "identify", "lock: identify, standby and pooler checks, acquire")
    p.wrap(server_session, "require_session_pooling", "lock: identify, standby and pooler checks, acquire")
    p.wrap(lock, "acquire", "lock: identify, standby and pooler checks, acquire")
    p.wrap(lock, "_end", "teardown: unlock")
    p.wrap(scripts, "load", "load scripts (ScriptDirectory, revision files)")
    p.wrap(validation, "before_upgrade", "validation before the steps (history table, applied checksums)")
    p.wrap(migrations, "prepare_history", "history table: create or check")
    p.wrap(file_sums, "sums_for", "checksums: the files' sums (manifest or computed)")
    p.wrap(file_sums.Sums, "of", step + "checksums of the file (sums_of)")
    p.wrap(engine, "_engine", "engine over the session (SQLAlchemy create_engine, events)")
    p.wrap(monitor.Monitor, "__init__", "monitor: start and stop (main thread)")
    p.wrap(monitor.Monitor, "__enter__", "monitor: start and stop (main thread)")
    p.wrap(monitor.Monitor, "__exit__", "monitor: start and stop (main thread)")
    p.wrap(monitor.Monitor, "_run", MONITOR)
    p.wrap(deadlines.Watchdog, "_run", WATCHDOG)
    original_keep, original_exit = monitor.Monitor._keep, monitor.Monitor.__exit__

    def keep(self: Any, conn: Any) -> bool:
        p.extra_backends["monitor"] = conn.info.backend_pid
        return bool(original_keep(self, conn))

    def exit_(self: Any, *exc: Any) -> None:
        if "monitor" in p.extra_backends:  # what the monitor's backend used, before it exits
            p.acc["server: the monitor's backend"][2] += backend_ns(p.extra_backends["monitor"]) / 1e9
        original_exit(self, *exc)
    monitor.Monitor._keep = keep  # type: ignore[method-assign]
    monitor.Monitor.__exit__ = exit_  # type: ignore[method-assign]
    p.wrap(database.Connection, "wait", MIGRATOR_WAIT)
    original_steps = migrations.Migrations._steps

    def steps(self: Any, plan: Any) -> Any:
        return p.timed_gen(step + "start: Step, partway check, log line, reset (first step)",
                           original_steps(self, plan))
    migrations.Migrations._steps = steps  # type: ignore[method-assign]
    p.wrap(session.MigrationSession, "start_step", step + "start: Step, partway check, log line, reset (first step)")
    p.wrap(session.MigrationSession, "commit_with", step + "history row + COMMIT + reset + lock proof (one round trip)")
    p.wrap(migrations.Migrations, "_record_done", step + "history row: checks, compose the INSERT")
    p.wrap(history, "insert_statement", step + "history row: checks, compose the INSERT")
    p.wrap(migrations.Migrations, "_on_version_apply", step + "history row: checks, compose the INSERT")
    for name in ("before", "after", "failed", "committing", "rolling_back"):
        p.wrap(statement_hooks.StatementHooks, name, step + "statement hooks (bookkeeping)")
    p.wrap(statements, "describe", step + "statement hooks: describe (Ecto's words)")
    p.wrap(statement_hooks, "_began", step + "statement hooks: progress (tell the monitor)")
    p.wrap(statement_hooks, "_ended", step + "statement hooks: progress (tell the monitor)")
    original_deferred = engine._deferred
    engine._deferred = lambda hook: p.timed(step + "statement hooks: signal deferral", original_deferred(hook))
    original_before = engine._before
    engine._before = lambda hook: p.timed(step + "statement hooks: signal deferral", original_before(hook))
    p.wrap(structlog._base.BoundLoggerBase, "_proxy_to_logger", "logging (structlog: render and write)")
    p.wrap(shutdown.Shutdown, "finish", "teardown: outcome (log line, termination message)")
    p.wrap(database.Connection, "close", "teardown: close connections")
    p.wrap(engine, "_back_to_autocommit", "teardown: close connections")
    p.wrap(versions, "read", "read the version table")
    token = p.enter()
    try:
        code = cli.main(["migrate"])
    finally:
        p.leave("other (migrator, main thread)", token)
    return code


def child_alembic(p: Profiler) -> int:
    _import_all(p, "imports: alembic.config", ("alembic.config",))
    _import_all(p, "imports: the apply path (SQLAlchemy, Alembic)", COMMON_IMPORTS)
    import logging.config

    import alembic.config
    import sqlalchemy
    from sqlalchemy.engine import base

    _common_wraps(p, "per step: migration statements (SQLAlchemy execute, psycopg send)",
                  "per step: version stamp execute")
    p.wrap(alembic.config.CommandLine, "__init__", "setup: arguments, alembic.ini")
    p.wrap(argparse.ArgumentParser, "parse_args", "setup: arguments, alembic.ini")
    p.wrap(alembic.config.Config, "__init__", "setup: arguments, alembic.ini")
    p.wrap(logging.config, "fileConfig", "setup: logging config (alembic.ini)")
    p.wrap(sqlalchemy, "engine_from_config", "engine (create_engine)")
    p.wrap(base.Engine, "connect", "connect (+ SQLAlchemy's first queries)")
    token = p.enter()
    try:
        alembic.config.main(argv=["upgrade", "head"])
    finally:
        p.leave("other (alembic, main thread)", token)
    return 0


def child(side: str, out: Path) -> None:
    started, cpu_start = time.perf_counter(), time.process_time()
    p = Profiler()
    code = 1
    try:
        code = child_migrator(p) if side == "migrator" else child_alembic(p)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        out.write_text(json.dumps({**p.report(time.perf_counter() - started), "code": code,
                                   "process_cpu_start": cpu_start}))
        os._exit(code)


# --- the parent --------------------------------------------------------------------------------------------

def measure(side: str, path: Path, url: str, postmaster: int, out: Path) -> dict[str, Any]:
    import subprocess

    from bench.tenants import server_cpu

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_", "MIGRATOR_"))}
    env.update(DATABASE_URL=url, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    cwd = path.parent / f"{path.name}-image" if side == "migrator" else path.parent / f"plain-{path.name}-{side}"
    before = server_cpu(postmaster)
    started = time.perf_counter()
    child_side = "migrator" if side == "migrator" else "alembic"
    proc = subprocess.Popen([sys.executable, "-m", "bench.phases", "--child", child_side, str(out)], env=env,
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    time.sleep(0.05)  # the backends exit after their client: their time moves to the postmaster's children
    server = server_cpu(postmaster) - before
    found: dict[str, Any] = json.loads(out.read_text())
    assert os.waitstatus_to_exitcode(status) == 0, f"{side} failed"
    found.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime, server=server)
    return found


ORDER = [
    "interpreter start and exit",
    "imports: migrator's no-op path (migrator.cli, psycopg, structlog)", "imports: alembic.config",
    "imports: the apply path (SQLAlchemy, Alembic, migrator's run loop)",
    "imports: the apply path (SQLAlchemy, Alembic)",
    "setup: logging, arguments, settings, repos", "setup: arguments, alembic.ini",
    "setup: logging config (alembic.ini)",
    "fast path: the files' heads (text scan or manifest)",
    "connect (libpq, backend start)", "connect (+ first answer, pooler check)",
    "connect (+ SQLAlchemy's first queries)",
    "engine (create_engine)", "read the version table", "lock: identify, standby and pooler checks, acquire",
    "load scripts (ScriptDirectory, revision files)",
    "validation before the steps (history table, applied checksums)", "history table: create or check",
    "checksums: the files' sums (manifest or computed)", "version table: create or check",
    "engine over the session (SQLAlchemy create_engine, events)", "monitor: start and stop (main thread)",
]
TAIL = ["logging (structlog: render and write)", "logging (stdlib: Alembic's lines)",
        MIGRATOR_WAIT, PSYCOPG_WAIT,
        "teardown: unlock", "teardown: close connections", "teardown: outcome (log line, termination message)",
        "other (migrator, main thread)", "other (alembic, main thread)",
        "monitor thread (its own CPU: connect, looks)", "watchdog thread (its own CPU)"]


def table(results: dict[str, list[dict[str, Any]]], steps: int) -> str:
    sides = list(results)
    names: list[str] = []
    for side in sides:
        for run in results[side]:
            names += [n for n in run["phases"] if n not in names]
    per_step = sorted(n for n in names if n.startswith("per step"))
    ordered = [n for n in ORDER if n in names or n == ORDER[0]] + per_step + [n for n in TAIL if n in names]
    ordered += [n for n in names if n not in ordered]

    def med(side: str, name: str, i: int) -> float | None:
        values = []
        for run in results[side]:
            if name == "interpreter start and exit":
                values.append([run["wall"] - run["inner_wall"], run["process_cpu_start"], 0.0][i])
            elif name in run["phases"]:
                values.append(run["phases"][name][i])
        return statistics.median(values) if values else None

    head = f"{'phase':<74}" + "".join(f"{s + ' wall':>16}{'cpu':>9}{'server':>9}" for s in sides)
    lines = [head, "-" * len(head)]
    for name in ordered:
        cells = []
        for side in sides:
            wall_, cpu_, server_ = (med(side, name, i) for i in range(3))
            if wall_ is None:
                cells.append(f"{'':>16}{'':>9}{'':>9}")
                continue
            scale, unit = (1e6 / steps, "us") if name.startswith("per step") else (1e3, "ms")
            cells.append(f"{wall_ * scale:14.0f}{unit}{(cpu_ or 0) * scale:9.0f}{(server_ or 0) * scale:9.0f}")
        lines.append(f"{name[:74]:<74}" + "".join(cells))
    lines.append("")
    for side in sides:
        runs = results[side]
        attributed = statistics.median(sum(v[1] for v in r["phases"].values()) + r["process_cpu_start"] for r in runs)
        wall = statistics.median(r['wall'] for r in runs)
        lines.append(f"{side}: whole process wall {wall * 1e3:.0f} ms, client CPU "
                     f"{statistics.median(r['cpu'] for r in runs) * 1e3:.0f} ms (phases {attributed * 1e3:.0f} ms, "
                     f"wrappers {statistics.median(r['overhead'][1] for r in runs) * 1e3:.0f} ms), server CPU "
                     f"{statistics.median(r['server'] for r in runs) * 1e3:.0f} ms (the main session's "
                     f"{statistics.median(sum(v[2] for v in r['phases'].values()) for r in runs) * 1e3:.0f} ms)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--revisions", type=int, default=200)
    parser.add_argument("--sides", default="migrator,per-migration,default")
    parser.add_argument("--no-manifest", action="store_true",
                        help="migrator without the manifest an image build writes (checksums computed as it applies)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
    import shutil
    import tempfile

    from bench.run import compile_all, generated, plain_alembic, write_manifest_as_the_image_does
    from bench.tenants import postmaster_pid
    from tests.postgres import EmbeddedServer

    server = EmbeddedServer()
    base = Path(tempfile.mkdtemp(prefix="migrator-phases-"))
    try:
        path = generated(base, args.revisions)
        for per_migration in (True, False):  # plain-n200-per-migration, plain-n200-default
            plain_alembic(base, path / "migrations" / "versions", per_migration)
        image = shutil.copytree(path, base / f"{path.name}-image")  # migrator's side, as the image ships it
        if not args.no_manifest:
            write_manifest_as_the_image_does(image)
        compile_all(base, Path(__file__).resolve().parent)
        postmaster = postmaster_pid(server.admin_url)
        sides = args.sides.split(",")
        results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
        out = base / "phases.json"
        for i in range(args.runs + 1):  # the first round warms up
            for side in sides:
                found = measure(side, path, server.url_for(server.create_database()), postmaster, out)
                if i:
                    results[side].append(found)
        print(f"{args.runs} interleaved runs each after a warm-up, {args.revisions} revisions (a table and an index "
              "each); medians; per step phases in microseconds per migration\n")
        print(table(results, args.revisions))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
