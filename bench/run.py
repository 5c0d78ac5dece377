"""Benchmarks for the init-container hot path and the apply path, against Alembic on the same scripts.

One command (`make bench`, or `python -m bench.run`). "alembic" is plain Alembic: the env.py that `alembic
init` writes (generated here by the installed Alembic, its URL taken from DATABASE_URL with the psycopg 3
driver), never migrator's delegating env.py, so that no side runs migrator's machinery but migrator's.
Everything runs in this process tree on one embedded
PostgreSQL started here, so every ratio compares runs taken side by side; runs of the two sides are
interleaved (A B A B ...) after one warm-up each, because these machines are noisy. Prints min / median /
max and the ratio of medians, then each goal as measured. Numbers, not assertions: nothing here fails.

  B1 no-op: `migrator migrate` at head (as the image runs it: with the manifest its build writes) vs `alembic
     upgrade head`, N = 2 (the example), 200, 1000 revisions
  B2 floor: the no-op vs a process that only imports psycopg, connects and reads one row (N = 2, 200, 1000)
  B3 apply N = 200 revisions to an empty database: migrator as the image runs it (with the manifest its build
     writes) and from a checkout (no manifest: checksums computed while applying) vs plain Alembic twice, with
     its default (one transaction for the whole run) and with transaction_per_migration=True (migrator's unit
     of work)
  B4 8 `migrator migrate` at once on an empty database (N = 200) vs one alone: wall time, failures
  B5 peak RSS of B1 (no-op) and B3 (apply), migrator vs alembic
  B6 script-directory load at N = 1000: migrator's text scan vs Alembic's ScriptDirectory + revision map
  B7 no-op with validation at N = 200, 1000, 5000: `migrator migrate` at head (checksums compared) with the
     manifest an image build writes, and without it (the scanner reads every file), vs the psycopg floor

`--baseline DIR` adds a third side to B1 and B3: the migrator package of another checkout (for example
`git worktree add /tmp/base v0.1.0`), run by the same interpreter and dependencies on the same scripts,
interleaved with the other two, and prints this checkout's ratio to it. That is how a change's cost is
measured: side by side, never against numbers from another run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg

from tests.postgres import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FLOOR = ("import os, psycopg\n"
         "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
         "    c.execute('SELECT version_num FROM alembic_version').fetchall()\n")


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    code: int
    cpu: float = 0.0  # the process's user + system CPU seconds, which a busy machine's scheduling touches less


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float | None = None) -> Sample:
    """Wall time, peak RSS and CPU time of one process (os.wait4 gives that child's own rusage); killed after
    `timeout` seconds, if given."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if watchdog is not None:
        watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(seconds, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime)


def stats(values: list[float]) -> str:
    return f"{min(values):7.3f} {statistics.median(values):7.3f} {max(values):7.3f}"


def interleave(runs: int, sides: dict[str, Callable[[], Sample]]) -> dict[str, list[Sample]]:
    for side in sides.values():
        side()  # warm-up: page cache, pyc files
    results: dict[str, list[Sample]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, side in sides.items():
            results[name].append(side())
    return results


def median(samples: list[Sample], attr: str = "seconds") -> float:
    return float(statistics.median(getattr(s, attr) for s in samples))


def paired(a: list[Sample], b: list[Sample], attr: str = "seconds") -> float:
    """The median of the ratios run by run: interleave() takes a's k-th run and b's k-th run side by side, so
    each ratio holds when the machine's speed drifts between rounds (it does, here, by a quarter)."""
    return float(statistics.median(getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True)))


# --- projects with generated revisions ----------------------------------------------------------------

REVISION = '''"""create table t{n:04d}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "t{n:04d}",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("t{n:04d}_name_index", "t{n:04d}", ["name"])


def downgrade():
    op.drop_table("t{n:04d}")
'''


def project(base: Path, revisions: int) -> Path:
    """A project directory: the example's env.py, an alembic.ini, and `revisions` generated revisions."""
    path = base / f"n{revisions}"
    versions = path / "migrations" / "versions"
    versions.mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", path / "migrations" / "env.py")
    shutil.copy(ROOT / "migrations" / "script.py.mako", path / "migrations" / "script.py.mako")
    shutil.copy(ROOT / "alembic.ini", path / "alembic.ini")
    if revisions == 2:
        for example in (ROOT / "migrations" / "versions").glob("*.py"):
            shutil.copy(example, versions / example.name)
        return path
    down = None
    for n in range(revisions):
        rev = f"2024{n // 86400:04d}{n % 86400:06d}"
        (versions / f"{rev}_create_t{n:04d}.py").write_text(REVISION.format(n=n, rev=rev, down=down))
        down = rev
    return path


def compile_all(*paths: Path) -> None:
    """Byte-compile the package and the scripts, as the image build does."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, paths)], check=True,
                   stdout=subprocess.DEVNULL)


def plain_alembic(base: Path, versions: Path, per_migration: bool) -> Path:
    """A project for plain Alembic on `versions`: what `alembic init` writes, its env.py reading the URL from
    DATABASE_URL (psycopg 3); `per_migration` adds transaction_per_migration=True to its context.configure."""
    path = base / f"plain-{versions.parent.parent.name}-{'per-migration' if per_migration else 'default'}"
    if path.exists():
        return path
    path.mkdir()
    subprocess.run([str(BIN / "alembic"), "init", "--template", "generic", "migrations"], cwd=path, check=True,
                   stdout=subprocess.DEVNULL)
    (path / "migrations" / "versions").rmdir()
    (path / "migrations" / "versions").symlink_to(versions)
    env = path / "migrations" / "env.py"
    text = env.read_text()
    text = text.replace("config = context.config\n", "config = context.config\nimport os\nconfig.set_main_option("
                        "'sqlalchemy.url', os.environ['DATABASE_URL'].replace('postgresql://', "
                        "'postgresql+psycopg://', 1).replace('%', '%%'))\n", 1)
    if per_migration:
        configure = "context.configure(\n            connection=connection, target_metadata=target_metadata"
        assert configure in text, "alembic init's env.py changed: review bench.plain_alembic"
        text = text.replace(configure, configure + ", transaction_per_migration=True", 1)
    env.write_text(text)
    return path


class Bench:
    def __init__(self, server: EmbeddedServer, runs: int, baseline: Path | None = None) -> None:
        self.server, self.runs, self.baseline = server, runs, baseline
        self.rows: list[str] = []
        self.goals: list[str] = []

    def env(self, url: str) -> dict[str, str]:
        # Byte-compiled, as in the image (built with compileall): no side pays for compiling on every start.
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PG", "DATABASE_", "MIGRATOR_")) and k != "PYTHONDONTWRITEBYTECODE"}
        return {**clean, "DATABASE_URL": url}

    def database(self) -> str:
        return self.server.url_for(self.server.create_database())

    def migrator(self, path: Path, url: str) -> Sample:
        return run([str(BIN / "migrator"), "migrate"], self.env(url), path)

    def alembic(self, path: Path, url: str, per_migration: bool = False) -> Sample:
        """Plain Alembic (alembic init's env.py) on `path`'s revisions."""
        plain = plain_alembic(path.parent, path / "migrations" / "versions", per_migration)
        return run([str(BIN / "alembic"), "upgrade", "head"], self.env(url), plain)

    def old_migrator(self, path: Path, url: str) -> Sample:
        """The baseline checkout's migrator: its package first on the path, everything else shared."""
        assert self.baseline is not None
        return run([sys.executable, "-m", "migrator", "migrate"],
                   {**self.env(url), "PYTHONPATH": str(self.baseline)}, path)

    def with_baseline(self, sides: dict[str, Callable[[], Sample]],
                      baseline_side: Callable[[], Sample]) -> dict[str, Callable[[], Sample]]:
        if self.baseline is not None:
            sides["baseline"] = baseline_side
        return sides

    def versus_baseline(self, name: str, found: dict[str, list[Sample]]) -> None:
        """The baseline's row and this checkout's ratio to it: a change may cost at most 10 %."""
        if "baseline" not in found:
            return
        self.row(f"{name}: baseline migrator", found["baseline"])
        self.goal(f"{name}: migrator / baseline", median(found["migrator"]) / median(found["baseline"]), 1.1)

    def row(self, name: str, samples: list[Sample], attr: str = "seconds") -> None:
        values = [getattr(s, attr) for s in samples]
        failures = sum(s.code != 0 for s in samples)
        unit = "MB" if attr == "rss_mb" else "s"
        self.rows.append(f"{name:<44} {stats(values)} {unit:<2} {failures:>3}")

    def goal(self, text: str, value: float, limit: float, unit: str = "x") -> None:
        verdict = "met" if value <= limit else "MISSED"
        self.goals.append(f"{text:<52} {value:8.2f}{unit} (goal <= {limit:g}{unit}) {verdict}")


def b1_b2_b5_noop(bench: Bench, base: Path) -> dict[int, float]:
    ratios: dict[int, float] = {}
    for n in (2, 200, 1000):
        # migrator as the image runs it (its build wrote the manifest); B7 shows the case without one
        path, image = generated(base, n), as_in_the_image(bench, base, n)
        url = bench.database()
        assert bench.migrator(image, url).code == 0, f"setup: migrate N={n} failed"
        sides: dict[str, Callable[[], Sample]] = {"migrator": partial(bench.migrator, image, url),
                                                  "alembic": partial(bench.alembic, path, url)}
        sides["floor"] = partial(run, [sys.executable, "-c", FLOOR], bench.env(url), path)
        found = interleave(bench.runs, bench.with_baseline(sides, partial(bench.old_migrator, image, url)))
        bench.row(f"B1 no-op N={n}: migrator migrate", found["migrator"])
        bench.row(f"B1 no-op N={n}: alembic upgrade head", found["alembic"])
        bench.versus_baseline(f"B1 no-op N={n}", found)
        ratios[n] = median(found["migrator"]) / median(found["alembic"])
        bench.goal(f"B1 no-op N={n}: migrator / alembic", ratios[n], 0.5)
        bench.row(f"B2 floor N={n}: import psycopg, connect, read a row", found["floor"])
        bench.goal(f"B2 no-op N={n}: migrator / floor", median(found["migrator"]) / median(found["floor"]), 1.2)
        if n == 200:
            bench.row("B5 peak RSS no-op N=200: migrator", found["migrator"], "rss_mb")
            bench.row("B5 peak RSS no-op N=200: alembic", found["alembic"], "rss_mb")
            bench.goal("B5 peak RSS no-op N=200: migrator", median(found["migrator"], "rss_mb"), 45, " MB")
    return ratios


def generated(base: Path, revisions: int) -> Path:
    """The project with `revisions` revisions, generated (and byte-compiled) once per run."""
    path = base / f"n{revisions}"
    if not path.exists():
        project(base, revisions)
        compile_all(path, ROOT / "migrator")
    return path


def as_in_the_image(bench: Bench, base: Path, revisions: int) -> Path:
    """The generated project as the image ships it: byte-compiled and with the manifest its build writes
    (`migrator manifest`), its directory older than the manifest as in an image layer."""
    path = base / f"n{revisions}-image"
    if not path.exists():
        shutil.copytree(generated(base, revisions), path)
        write_manifest_as_the_image_does(path)
    return path


IMAGE_MTIME = 315532800  # image/migrator/Dockerfile sets every file of /app to it before writing the manifest


def write_manifest_as_the_image_does(path: Path) -> None:
    """The image build's last steps on its project directory: byte-compiled (unchecked-hash .pyc files, valid
    whatever the sources' mtimes), every mtime set to one old time, then `migrator manifest` (so no file lies
    within the manifest's racy window)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash",
                    str(path)], check=True, stdout=subprocess.DEVNULL)
    for directory, _, files in os.walk(path):
        for name in [*files, "."]:
            os.utime(os.path.join(directory, name), (IMAGE_MTIME, IMAGE_MTIME))
    subprocess.run([str(BIN / "migrator"), "manifest"], check=True, cwd=path, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def b3_b5_apply(bench: Bench, base: Path) -> None:
    """Applying 200 revisions. migrator runs as the image runs it (the manifest carries each file's checksum);
    "no manifest" is a project run from its checkout, where migrator computes each checksum as it applies."""
    path, image = generated(base, 200), as_in_the_image(bench, base, 200)
    sides = bench.with_baseline({"migrator": lambda: bench.migrator(image, bench.database()),
                                 "no manifest": lambda: bench.migrator(path, bench.database()),
                                 "alembic": lambda: bench.alembic(path, bench.database()),
                                 "per-migration": lambda: bench.alembic(path, bench.database(), per_migration=True)},
                                lambda: bench.old_migrator(image, bench.database()))
    found = interleave(bench.runs, sides)
    bench.row("B3 apply N=200: migrator migrate (image)", found["migrator"])
    bench.row("B3 apply N=200: migrator, no manifest", found["no manifest"])
    bench.row("B3 apply N=200: alembic (one transaction)", found["alembic"])
    bench.row("B3 apply N=200: alembic per migration", found["per-migration"])
    for side in ("migrator", "per-migration"):
        bench.row(f"B3 apply N=200: {side} (client CPU)", found[side], "cpu")
    bench.versus_baseline("B3 apply N=200", found)
    mine = median(found["migrator"])
    bench.goal("B3 apply N=200: migrator / alembic per migration", mine / median(found["per-migration"]), 1.05)
    bench.goal("B3 apply N=200: migrator / alembic one transaction", mine / median(found["alembic"]), 1.15)
    bench.goal("B3 CPU apply N=200: migrator / alembic per migration",
               median(found["migrator"], "cpu") / median(found["per-migration"], "cpu"), 1.05)
    for text, value in (("B3 apply N=200: migrator / per migration (min)",
                         min(s.seconds for s in found["migrator"]) / min(s.seconds for s in found["per-migration"])),
                        ("B3 apply N=200: migrator / per migration, run by run",
                         paired(found["migrator"], found["per-migration"])),
                        ("B3 apply N=200: migrator / one transaction, run by run",
                         paired(found["migrator"], found["alembic"])),
                        ("B3 CPU apply N=200: migrator / per migration, run by run",
                         paired(found["migrator"], found["per-migration"], "cpu")),
                        ("B3 apply N=200: no manifest / per migration",
                         median(found["no manifest"]) / median(found["per-migration"]))):
        bench.goals.append(f"{text:<52} {value:8.2f}x  (reported, no goal)")
    bench.row("B5 peak RSS apply N=200: migrator", found["migrator"], "rss_mb")
    bench.row("B5 peak RSS apply N=200: alembic", found["alembic"], "rss_mb")


def b4_concurrency(bench: Bench, base: Path) -> None:
    path = generated(base, 200)

    def together() -> Sample:
        url = bench.database()
        started = time.perf_counter()
        procs = [subprocess.Popen([str(BIN / "migrator"), "migrate"], env=bench.env(url), cwd=path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(8)]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - started
        return Sample(seconds, 0.0, sum(code != 0 for code in codes))

    found = interleave(bench.runs, {"one": lambda: bench.migrator(path, bench.database()), "eight": together})
    bench.row("B4 apply N=200: one migrator alone", found["one"])
    bench.row("B4 apply N=200: 8 migrators at once (wall)", found["eight"])
    failures = sum(s.code for s in found["eight"])
    bench.goals.append(f"{'B4 8 at once: failed processes (of ' + str(8 * bench.runs) + ')':<52} {failures:8d}  "
                       f"(goal 0) {'met' if failures == 0 else 'MISSED'}")
    bench.goal("B4 8 at once / one alone (wall)", median(found["eight"]) / median(found["one"]), 1.5)


def b6_load(bench: Bench, base: Path) -> None:
    path = generated(base, 1000)
    # Each in a fresh process, timed after its imports: the load itself, as a cold start pays it.
    scan = ("import time; from pathlib import Path; from migrator import revision_scan; t = time.perf_counter(); "
            "revision_scan.scan([Path('migrations/versions')]).heads; print(time.perf_counter() - t)")
    full = ("import time; from pathlib import Path; from migrator.repos import load_repos; "
            "from migrator import alembic_internals as ai; t = time.perf_counter(); [r] = load_repos(Path('.')); "
            "ai.load_script(ai.alembic_config(r)).get_heads(); print(time.perf_counter() - t)")

    def timed(code: str) -> Callable[[], Sample]:
        def side() -> Sample:
            out = subprocess.run([sys.executable, "-c", code], cwd=path, capture_output=True, text=True, check=True)
            return Sample(float(out.stdout), 0.0, 0)
        return side

    found = interleave(bench.runs, {"scan": timed(scan), "alembic": timed(full)})
    bench.row("B6 load N=1000: migrator text scan", found["scan"])
    bench.row("B6 load N=1000: Alembic ScriptDirectory + map", found["alembic"])
    ratio = median(found["scan"]) / median(found["alembic"])
    bench.goals.append(f"{'B6 load N=1000: scan / Alembic':<52} {ratio:8.2f}x  (reported, no goal)")


def b7_validated_noop(bench: Bench, base: Path) -> None:
    """The no-op path with validation, as an image runs it: its build wrote the manifest (migrator manifest);
    the database's checksums recorded on first sight (a version table stamped at head, as plain Alembic leaves
    it: the same history rows per revision as applying them, without applying thousands of tables)."""
    for n in (200, 1000, 5000):
        path, bare = as_in_the_image(bench, base, n), base / f"n{n}-no-manifest"
        if not bare.exists():
            shutil.copytree(generated(base, n), bare)
        url = bench.database()
        head = f"2024{(n - 1) // 86400:04d}{(n - 1) % 86400:06d}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            conn.execute("INSERT INTO alembic_version VALUES (%s)", (head,))
        assert bench.migrator(path, url).code == 0, f"setup: first sight N={n}"
        with psycopg.connect(url, autocommit=True) as conn:  # as autovacuum leaves it after thousands of inserts
            conn.execute("VACUUM ANALYZE migrator_history")
        for directory, _, _ in os.walk(bare):  # as old as the manifest side's (as in an image layer)
            os.utime(directory, (IMAGE_MTIME, IMAGE_MTIME))
        found = interleave(bench.runs, {
            "manifest": partial(bench.migrator, path, url), "scan": partial(bench.migrator, bare, url),
            "floor": partial(run, [sys.executable, "-c", FLOOR], bench.env(url), path)})
        bench.row(f"B7 no-op N={n}: migrator, manifest", found["manifest"])
        bench.row(f"B7 no-op N={n}: migrator, no manifest", found["scan"])
        bench.row(f"B7 no-op N={n}: psycopg floor", found["floor"])
        for side in ("manifest", "floor"):
            bench.row(f"B7 no-op N={n}: {side} (client CPU)", found[side], "cpu")
        floor = median(found["floor"])
        bench.goal(f"B7 no-op N={n}: manifest / floor", median(found["manifest"]) / floor, 1.3 if n == 5000 else 1.2)
        for text, value in ((f"B7 no-op N={n}: manifest / floor (min)", min(s.seconds for s in found["manifest"]) /
                             min(s.seconds for s in found["floor"])),
                            (f"B7 no-op N={n}: manifest / floor (client CPU)",
                             median(found["manifest"], "cpu") / median(found["floor"], "cpu")),
                            (f"B7 no-op N={n}: no manifest / floor", median(found["scan"]) / floor)):
            bench.goals.append(f"{text:<52} {value:8.2f}x  (reported, no goal)")


SCENARIOS: dict[str, Callable[[Bench, Path], object]] = {
    "B1": b1_b2_b5_noop, "B3": b3_b5_apply, "B4": b4_concurrency, "B6": b6_load, "B7": b7_validated_noop}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    with psycopg.connect(os.environ["BENCH_ADMIN_URL"]) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; PostgreSQL {version[0] if version else '?'} (embedded, Unix socket)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs of each side (default 7)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS),
                        help="scenarios to run (B2 and B5 come with B1 and B3)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another checkout whose migrator/ B1 and B3 also run, side by side")
    args = parser.parse_args()
    if args.baseline is not None:
        if not (args.baseline / "migrator" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no migrator/__init__.py there")
        args.baseline = args.baseline.resolve()
        compile_all(args.baseline / "migrator")
    server = EmbeddedServer()
    os.environ["BENCH_ADMIN_URL"] = server.admin_url
    bench = Bench(server, args.runs, args.baseline)
    base = Path(tempfile.mkdtemp(prefix="migrator-bench-"))
    try:
        print(machine(), flush=True)
        for name, scenario in SCENARIOS.items():
            if name in args.only:
                scenario(bench, base)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{args.runs} interleaved runs each, after one warm-up\n")
    print(f"{'scenario':<44} {'min':>7} {'median':>7} {'max':>7}    fail")
    print("\n".join(bench.rows))
    print("\ngoals")
    print("\n".join(bench.goals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
