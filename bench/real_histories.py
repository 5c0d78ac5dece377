"""A no-op `migrate` on real Alembic histories: migrator's fast path against plain Alembic and psycopg's floor.

    python -m bench.real_histories [--runs N] [--apply] [--embedded] [--extension NAME] SCRIPT_DIR[=ROOT] ...

Each SCRIPT_DIR is the Alembic script directory (env.py, versions/) of a project checked out somewhere else
(e.g. /work/histories/owner+name/migrations). ROOT, the project's root, goes on sys.path for revision files
that import the app (as alembic.ini's `prepend_sys_path = .` does where the project keeps its alembic.ini);
by default it is the nearest directory above SCRIPT_DIR that holds .git. Nothing of the projects is kept:
their revision files are copied into a temporary directory for the run and removed with it.

For each history, on fresh databases of one PostgreSQL server started here (Debian's, over TCP with password
authentication; --embedded: pgserver's, on a Unix socket):

1. the revisions and heads as Alembic's ScriptDirectory loads them, and whether migrator's text scan answers
   (or the reason it defers);
2. `migrator migrate` on an empty database, with the env.py `migrator init` writes (no models, no metadata):
   a history that needs app code, an extension or a schema made by create_all() fails there, and its first
   error line is printed; the no-op runs then use a database stamped at head by `alembic stamp head`;
3. the no-op, interleaved (A B C A B C ...) after one warm-up each: `migrator migrate`, plain `alembic upgrade
   head` with the env.py `alembic init` writes (SQLAlchemy 2, psycopg 3: the peer as its users run it), and
   the floor (a process that imports psycopg, connects and reads the version table). The first `migrator
   migrate` at head says whether the fast path was taken ("fast path not taken ..." otherwise, with why);
4. with --apply, for histories that applied in step 2: `migrator migrate` against `alembic upgrade head` on
   empty databases, interleaved.

Prints min / median / max of each side and a markdown table with the ratios of medians. Numbers, not
assertions: nothing here fails because of a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from bench.run import FLOOR, Sample, interleave, median, run, stats
from tests.postgres import SUPERUSER_PASSWORD, DebianServer, EmbeddedServer, Server

BIN = Path(sys.executable).parent
TIMEOUT = 1800.0  # seconds one command may take (applying a long history included); then it is killed
# What the peer's process prints: Alembic's ScriptDirectory, loaded as `alembic` loads it, as JSON.
GRAPH = ("import json, sys; from alembic.config import Config; from alembic.script import ScriptDirectory\n"
         "s = ScriptDirectory.from_config(Config('alembic.ini'))\n"
         "print(json.dumps({'revisions': sum(1 for _ in s.walk_revisions()), 'heads': sorted(s.get_heads())}))\n")
# (Uncertain moved from revision_scan to revision_text: either layout)
SCAN = ("import json, sys; from pathlib import Path\n"
        "from migrator.revision_scan import scan\n"
        "try:\n    from migrator.revision_text import Uncertain\nexcept ImportError:\n"
        "    from migrator.revision_scan import Uncertain\n"
        "try:\n    g = scan([Path(sys.argv[1])])\n"
        "    print(json.dumps({'heads': sorted(g.heads), 'revisions': len(g.parents)}))\n"
        "except Uncertain as e:\n    print(json.dumps({'defers': str(e)}))\n")


@dataclass
class History:
    """One project's history, copied into the run's directory, and what was found about it."""

    script_dir: Path
    root: Path
    work: Path
    name: str = ""
    commit: str = "?"
    revisions: str = "?"
    heads: str = "?"
    scan: str = "?"
    applied: str = "?"
    fast_path: str = "?"
    peer_fails: str = ""  # why plain Alembic cannot run the no-op here, when it cannot
    scan_heads: list[str] = field(default_factory=list)
    found: dict[str, list[Sample]] = field(default_factory=dict)
    apply: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def migrator_dir(self) -> Path:
        return self.work / "migrator"

    @property
    def peer_dir(self) -> Path:
        return self.work / "peer"


class Runner:
    """The server, the environment of every process, and the commands of each side."""

    def __init__(self, server: Server, tcp: bool) -> None:
        self.server, self.tcp = server, tcp

    def url(self, dbname: str, driver: str = "postgresql") -> str:
        """A URL without the password: libpq takes it from PGPASSWORD, as the floor's, Alembic's and migrator's
        connections all do (nothing secret in a file or an argument)."""
        if self.tcp:
            assert isinstance(self.server, DebianServer)
            return f"{driver}://postgres@127.0.0.1:{self.server.port}/{dbname}"
        return self.server.url_for(dbname).replace("postgresql://", f"{driver}://", 1)

    def database(self, extensions: list[str]) -> str:
        name = self.server.create_database()
        with psycopg.connect(self.server.url_for(name), autocommit=True) as conn:
            for extension in extensions:
                conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}"')
        return name

    def env(self, dbname: str, pythonpath: Path | None = None) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PG", "DATABASE_", "MIGRATOR_", "PYTHONPATH")) and k != "PYTHONDONTWRITEBYTECODE"}
        env = {**clean, "DATABASE_URL": self.url(dbname)}
        if self.tcp:
            env["PGPASSWORD"] = SUPERUSER_PASSWORD
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> Sample:
    return run(argv, env, cwd, timeout=TIMEOUT)


def output(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -9, "", f"killed after {TIMEOUT:.0f} s")


def first_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The line that says what went wrong: an [error] log line, or a traceback's last line."""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    marked = [line for line in lines if "[error]" in line or "Error" in line or "error:" in line]
    return re.sub(r"\s+", " ", (marked or lines or [f"exit {proc.returncode}"])[-1])[:300]


# --- the working copy ---------------------------------------------------------------------------------------

def prepare(history: History) -> None:
    """migrator's project (`migrator init`, then the history's revision files) and the peer's (`alembic init`,
    pointed at the same files), byte-compiled once as CPython would on the first import."""
    history.name = history.root.name
    git = output(["git", "-C", str(history.root), "rev-parse", "HEAD"], dict(os.environ), history.root)
    history.commit = git.stdout.strip()[:12] if git.returncode == 0 else "?"
    history.migrator_dir.mkdir(parents=True)
    subprocess.run([str(BIN / "migrator"), "init"], cwd=history.migrator_dir, check=True, capture_output=True,
                   timeout=60)
    versions = history.migrator_dir / "migrations" / "versions"
    shutil.rmtree(versions)
    shutil.copytree(history.script_dir / "versions", versions, ignore=shutil.ignore_patterns("__pycache__"))
    history.peer_dir.mkdir()
    subprocess.run([str(BIN / "alembic"), "init", "alembic"], cwd=history.peer_dir, check=True, capture_output=True,
                   timeout=60)
    ini = history.peer_dir / "alembic.ini"
    text = ini.read_text()
    text = re.sub(r"(?m)^prepend_sys_path = .*$", lambda _: f"prepend_sys_path = {history.root}", text)
    text = re.sub(r"(?m)^(script_location = .*)$", lambda m: f"{m[1]}\nversion_locations = {versions}", text)
    ini.write_text(text)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(versions)], check=True, capture_output=True,
                   timeout=600)


def peer(history: History, runner: Runner, dbname: str, *command: str) -> Callable[[], Sample]:
    """The peer's command on `dbname`: the env.py `alembic init` writes reads the URL from alembic.ini, so the
    URL (without the password, which libpq takes from PGPASSWORD) is written there first, outside the timing."""
    ini = history.peer_dir / "alembic.ini"
    url = runner.url(dbname, "postgresql+psycopg").replace("%", "%%")
    ini.write_text(re.sub(r"(?m)^sqlalchemy\.url = .*$", lambda _: f"sqlalchemy.url = {url}", ini.read_text()))
    return partial(timed, [str(BIN / "alembic"), *command], runner.env(dbname), history.peer_dir)


def peer_output(history: History, runner: Runner, dbname: str, *command: str) -> subprocess.CompletedProcess[str]:
    peer(history, runner, dbname)  # writes the URL
    return output([str(BIN / "alembic"), *command], runner.env(dbname), history.peer_dir)


# --- the steps ------------------------------------------------------------------------------------------------

def survey(history: History, runner: Runner) -> None:
    """Step 1: Alembic's count and heads, and migrator's scan."""
    env = runner.env("postgres")
    graph = output([sys.executable, "-c", GRAPH], {**env, "PYTHONPATH": str(history.root)}, history.peer_dir)
    if graph.returncode == 0:
        found = json.loads(graph.stdout.strip().splitlines()[-1])
        history.revisions, history.heads = str(found["revisions"]), ", ".join(found["heads"])
    else:
        history.revisions, history.peer_fails = "?", first_error(graph)
    scan = output([sys.executable, "-c", SCAN, str(history.migrator_dir / "migrations" / "versions")], env,
                  history.migrator_dir)
    answer = json.loads(scan.stdout.strip().splitlines()[-1]) if scan.returncode == 0 else {"defers": scan.stderr}
    if "heads" in answer:
        history.scan, history.scan_heads = "reads the graph", list(answer["heads"])
        if graph.returncode != 0:
            history.revisions = f"{answer['revisions']} (text scan)"
    else:
        history.scan = f"defers: {answer['defers']}"


def bring_to_head(history: History, runner: Runner, extensions: list[str]) -> str:
    """Step 2: the database for the no-op runs, at head."""
    dbname = runner.database(extensions)
    started = time.perf_counter()
    proc = output([str(BIN / "migrator"), "migrate"], runner.env(dbname, history.root), history.migrator_dir)
    if proc.returncode == 0:
        history.applied = f"yes ({time.perf_counter() - started:.1f} s)"
        return dbname
    history.applied = f"no: {first_error(proc)}"
    dbname = runner.database(extensions)
    stamp = peer_output(history, runner, dbname, "stamp", "head")
    if stamp.returncode == 0:
        history.applied += "; no-op measured on a database stamped at head (alembic stamp head)"
    elif history.scan_heads:
        # Alembic cannot load the files here: the version table a database at head has, from the text scan
        with psycopg.connect(runner.server.url_for(dbname), autocommit=True) as conn:
            conn.execute("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)")
            for head in history.scan_heads:
                conn.execute("INSERT INTO alembic_version VALUES (%s)", (head,))
        history.applied += (f"; alembic stamp head fails too ({first_error(stamp)}): no-op measured on a database "
                            f"whose version table holds the scan's heads")
    return dbname


def noop(history: History, runner: Runner, dbname: str, runs: int) -> None:
    """Step 3."""
    first = output([str(BIN / "migrator"), "migrate"], runner.env(dbname, history.root), history.migrator_dir)
    reason = re.search(r"fast path not taken, Alembic reads the scripts: (.*)", first.stderr + first.stdout)
    if first.returncode != 0:
        history.fast_path = f"migrate at head failed: {first_error(first)}"
    elif reason:
        history.fast_path = f"no: {reason[1].strip()}"
    else:
        history.fast_path = "yes"
    sides: dict[str, Callable[[], Sample]] = {
        "migrator": partial(timed, [str(BIN / "migrator"), "migrate"], runner.env(dbname, history.root),
                            history.migrator_dir),
        "alembic": peer(history, runner, dbname, "upgrade", "head"),
        "floor": partial(timed, [sys.executable, "-c", FLOOR], runner.env(dbname), history.work)}
    check = peer_output(history, runner, dbname, "upgrade", "head")
    if check.returncode != 0:
        history.peer_fails = first_error(check)
        del sides["alembic"]
    history.found = interleave(runs, sides)


def apply(history: History, runner: Runner, runs: int, extensions: list[str]) -> None:
    """Step 4."""
    sides: dict[str, Callable[[], Sample]] = {
        "migrator": lambda: timed([str(BIN / "migrator"), "migrate"], runner.env(runner.database(extensions),
                                                                                history.root), history.migrator_dir),
        "alembic": lambda: _peer_apply(history, runner, extensions)}
    history.apply = interleave(runs, sides)


def _peer_apply(history: History, runner: Runner, extensions: list[str]) -> Sample:
    return peer(history, runner, runner.database(extensions), "upgrade", "head")()


# --- the report -----------------------------------------------------------------------------------------------

def report(histories: list[History], runs: int, server: str) -> str:
    lines = [server, f"{runs} interleaved runs each, after one warm-up; wall seconds min median max, then the "
             "median CPU seconds (user + system) of the process", ""]
    for h in histories:
        lines.append(f"{h.name} @ {h.commit}: {h.revisions} revisions, heads {h.heads}")
        lines.append(f"    text scan: {h.scan}")
        lines.append(f"    migrator migrate on an empty database: {h.applied}")
        lines.append(f"    fast path on a no-op migrate: {h.fast_path}")
        if h.peer_fails:
            lines.append(f"    plain alembic upgrade head at head fails here: {h.peer_fails}")
        for kind, found in (("no-op", h.found), ("apply", h.apply)):
            for side, samples in found.items():
                lines.append(f"    {kind} {side:<9} {stats([s.seconds for s in samples])}   cpu "
                             f"{_s(_median(samples, 'cpu'))}  {_failed(samples)}")
    lines += ["", "| project | commit | revisions | fast path | no-op migrator | no-op alembic | floor | "
              "migrator / alembic | migrator / floor | CPU: migrator / alembic | CPU: migrator / floor |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in histories:
        m, a, f = (_median(h.found.get(side)) for side in ("migrator", "alembic", "floor"))
        cm, ca, cf = (_median(h.found.get(side), "cpu") for side in ("migrator", "alembic", "floor"))
        peer = f"n/a: {h.peer_fails}" if h.peer_fails else _s(a)
        lines.append(f"| {h.name} | {h.commit} | {h.revisions} | {h.fast_path} | {_s(m)} | {peer} | {_s(f)} | "
                     f"{_ratio(m, a)} | {_ratio(m, f)} | {_ratio(cm, ca)} | {_ratio(cm, cf)} |")
    if any(h.apply for h in histories):
        lines += ["", "| project | apply migrator | apply alembic | migrator / alembic | CPU: migrator / alembic |",
                  "|---|---|---|---|---|"]
        for h in histories:
            if h.apply:
                m, a = _median(h.apply.get("migrator")), _median(h.apply.get("alembic"))
                cm, ca = _median(h.apply.get("migrator"), "cpu"), _median(h.apply.get("alembic"), "cpu")
                lines.append(f"| {h.name} | {_s(m)} | {_s(a)} | {_ratio(m, a)} | {_ratio(cm, ca)} |")
    return "\n".join(lines)


def _failed(samples: list[Sample]) -> str:
    failed = sum(s.code != 0 for s in samples)
    return f"{failed} failed" if failed else ""


def _median(samples: list[Sample] | None, attr: str = "seconds") -> float | None:
    if not samples or any(s.code != 0 for s in samples):
        return None  # a side that failed has no time to compare
    return median(samples, attr)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def parse_target(text: str) -> tuple[Path, Path]:
    """SCRIPT_DIR[=ROOT]: the script directory and the project root."""
    script, _, root = text.partition("=")
    script_dir = Path(script).resolve()
    if not (script_dir / "versions").is_dir():
        raise argparse.ArgumentTypeError(f"{script}: no versions/ directory there (give the Alembic script "
                                         f"directory, the one with env.py and versions/)")
    if root:
        return script_dir, Path(root).resolve()
    for parent in (script_dir, *script_dir.parents):
        if (parent / ".git").exists():
            return script_dir, parent
    return script_dir, script_dir.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", type=parse_target, metavar="SCRIPT_DIR[=ROOT]")
    parser.add_argument("--runs", type=int, default=7, help="runs of each side (default 7)")
    parser.add_argument("--apply", action="store_true", help="also time applying each history that applies")
    parser.add_argument("--embedded", action="store_true", help="pgserver's PostgreSQL on a Unix socket instead "
                        "of Debian's over TCP")
    parser.add_argument("--extension", action="append", default=[], metavar="NAME",
                        help="CREATE EXTENSION in every database before migrating (repeatable)")
    args = parser.parse_args()
    server: Server = EmbeddedServer() if args.embedded else DebianServer()
    runner = Runner(server, tcp=not args.embedded)
    base = Path(tempfile.mkdtemp(prefix="migrator-histories-"))
    histories = [History(script_dir, root, base / f"h{n}") for n, (script_dir, root) in enumerate(args.targets)]
    try:
        with psycopg.connect(server.admin_url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        where = "Unix socket" if args.embedded else "TCP, scram-sha-256"
        described = f"PostgreSQL {version[0] if version else '?'} ({where}); Python {sys.version.split()[0]}"
        for history in histories:
            prepare(history)
            survey(history, runner)
            dbname = bring_to_head(history, runner, args.extension)
            print(f"{history.name}: {history.applied}", file=sys.stderr, flush=True)
            noop(history, runner, dbname, args.runs)
            if args.apply and history.applied.startswith("yes"):
                apply(history, runner, args.runs, args.extension)
    finally:
        if isinstance(server, DebianServer):
            server.destroy()
        elif isinstance(server, EmbeddedServer):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(report(histories, args.runs, described))
    return 0


if __name__ == "__main__":
    sys.exit(main())
