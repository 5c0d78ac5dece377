"""Image sizes and container start-up time: what the migrator adds on top of its base, in bytes and seconds.

    .venv/bin/python -m bench.image [--runs 9] [--migrator migrator:dev] [--app migrator-app:dev]

Sizes: each image's total, and what its own layers add (the layers after the base's, summed from
`docker history`; the base is the image's org.opencontainers.image.base.name label). Times: wall time of
`docker run --rm` for `python3 -c pass` in the base, `migrator --version` (imports, no database),
`migrator status` and `migrator migrate` (the init container's no-op) against a database at head, each
with the chart's hardening on the host network; runs are interleaved (one of each per round, the order
rotating) after one warm-up round; median, min and max.

The database: $BENCH_DATABASE_URL, else a throwaway Debian PostgreSQL (tests/postgres.py, needs root); it is
migrated by the image under test first. Build the images first (image/build.sh). Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as `python bench/image.py`
    sys.path.insert(0, str(ROOT))

from tests.docker import RunOptions, client_env, docker_binary, docker_problem  # noqa: E402
from tests.postgres import DebianServer  # noqa: E402

MB = 1_000_000


def docker(*args: str, env: dict[str, str] | None = None) -> str:
    binary = docker_binary()
    assert binary is not None
    proc = subprocess.run([binary, *args], capture_output=True, text=True, env=client_env(env), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"docker {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


# --- sizes ----------------------------------------------------------------------------------------------

def image_info(image: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(docker("image", "inspect", image))[0]
    return info


def history_sizes(image: str) -> list[int]:
    """Sizes of the image's history entries, newest first (instructions that make no layer count 0)."""
    out = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}", image)
    return [int(line) for line in out.split()]


def size_row(image: str) -> tuple[str, float, str, float | None]:
    """(image, total MB, base, MB its own layers add), from the base label and both histories."""
    info = image_info(image)
    base = (info["Config"].get("Labels") or {}).get("org.opencontainers.image.base.name", "")
    own = None
    if base:
        try:
            base_entries = len(history_sizes(base))
        except SystemExit:
            base_entries = None
        if base_entries is not None:
            entries = history_sizes(image)
            own = sum(entries[: len(entries) - base_entries]) / MB
    return image, info["Size"] / MB, base, own


# --- start-up times -------------------------------------------------------------------------------------

def timed_run(image: str, args: Sequence[str], env: dict[str, str], entrypoint: str | None = None) -> float:
    options = RunOptions(env=env, entrypoint=entrypoint)
    binary = docker_binary()
    assert binary is not None
    argv = [binary, "run", "--rm", *options.flags(), image, *args]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=client_env(env), check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{image} {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def measure(cases: dict[str, tuple[str, list[str], dict[str, str], str | None]], runs: int) -> dict[str, list[float]]:
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: page cache, image layers, the database's catalog
        timed_run(*cases[name])
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            times[name].append(timed_run(*cases[name]))
    return times


def database_url() -> tuple[str, DebianServer | None]:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url, None
    server = DebianServer()
    return server.url_for(server.create_database()), server


# --- report ---------------------------------------------------------------------------------------------

def print_sizes(images: list[str]) -> None:
    print(f"{'image':<34} {'total MB':>9}  {'base':<32} {'own layers MB':>13}")
    for image, total, base, own in (size_row(i) for i in images):
        own_text = f"{own:.1f}" if own is not None else "n/a"
        print(f"{image:<34} {total:>9.1f}  {base or '?':<32} {own_text:>13}")


def print_times(times: dict[str, list[float]]) -> None:
    print(f"{'docker run --rm ...':<44} {'median s':>9} {'min s':>7} {'max s':>7} {'runs':>5}")
    for name, values in times.items():
        print(f"{name:<44} {statistics.median(values):>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
              f"{len(values):>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="timed rounds (at least 7)")
    parser.add_argument("--migrator", default=os.environ.get("MIGRATOR_IMAGE", "migrator:dev"))
    parser.add_argument("--app", default=os.environ.get("APP_IMAGE", "migrator-app:dev"))
    args = parser.parse_args(argv)
    if args.runs < 7:
        parser.error("--runs: at least 7")
    problem = docker_problem()
    if problem:
        print(f"bench/image.py: Docker is not usable: {problem}", file=sys.stderr)
        return 2
    base = image_info(args.migrator)["Config"]["Labels"]["org.opencontainers.image.base.name"]
    print_sizes([base, args.migrator, args.app])
    print()
    url, server = database_url()
    try:
        env = {"DATABASE_URL": url}
        timed_run(args.migrator, ["migrate"], env)
        cases = {
            f"{base} python3 -c pass": (base, ["-c", "pass"], {}, "python3"),
            f"{args.migrator} --version": (args.migrator, ["--version"], {}, None),
            f"{args.migrator} status (at head)": (args.migrator, ["status"], env, None),
            f"{args.migrator} migrate (no-op at head)": (args.migrator, ["migrate"], env, None),
        }
        times = measure(cases, args.runs)
        print_times(times)
        floor = statistics.median(times[f"{base} python3 -c pass"])
        print()
        for name, values in list(times.items())[1:]:
            print(f"{name:<44} {statistics.median(values) / floor:>8.2f}x the base's python3 -c pass")
    finally:
        if server is not None:
            server.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
