"""Many tenants: one repo's migrations over hundreds of tenant schemas, by 1, 2 and 4 worker processes, as the
pods of an Indexed Job share them out (MIGRATOR_TENANT_SHARDS, MIGRATOR_TENANT_SHARD).

`python -m bench.tenants` (defaults: 500 tenants x 20 revisions, workers 1 2 4). For each worker count, on a
fresh database of the same embedded PostgreSQL: every tenant migrated from nothing (its schema created, 20
migrations of a table with four columns and an index), then a no-op pass over all tenants (each already at
head). Prints per pass the wall time, tenants per second, the CPU time of the workers (wait4) and of the
server (the postmaster and its children, from /proc: a backend's time moves into the postmaster's reaped
children's when it exits, so nothing is lost), and the server's share of the CPU. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.run import BIN, compile_all, machine, project
from tests.postgres import EmbeddedServer

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def server_cpu(postmaster: int) -> float:
    """CPU seconds the server has used so far: the postmaster's own and its reaped children's, and every live
    child's (backends, checkpointer, WAL writer, ...). A child that exits moves from the second sum into the
    first, so the total only grows, and its difference across a run is the server's CPU in that run."""
    fields = _stat(postmaster)  # state is fields[0]; utime, stime, cutime, cstime are 11..14
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # gone meanwhile: its time is in the postmaster's reaped children's now
        if int(child[1]) == postmaster:
            total += int(child[11]) + int(child[12])
    return total / TICKS


def postmaster_pid(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(_stat(int(row[0]))[1])  # a backend's parent is the postmaster (read while it is alive)


@dataclass
class Pass:
    workers: int
    seconds: float
    client_cpu: float
    server_cpu: float
    failed: int

    def line(self, name: str, tenants: int) -> str:
        share = self.server_cpu / (self.server_cpu + self.client_cpu) if self.client_cpu + self.server_cpu else 0.0
        return (f"{name:<34} {self.workers:>3} {self.seconds:9.2f} {tenants / self.seconds:9.1f} "
                f"{self.client_cpu:9.2f} {self.server_cpu:9.2f} {share:8.0%} {self.failed:>5}")


def run_workers(path: Path, env: dict[str, str], workers: int, postmaster: int) -> Pass:
    """`migrator migrate` in `workers` processes at once, each with its share; wall, CPU and failures (a failed
    worker's last log lines are printed)."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(workers)]
        server_before = server_cpu(postmaster)
        started = time.perf_counter()
        procs = [subprocess.Popen([str(BIN / "migrator"), "migrate"], cwd=path, stdout=subprocess.DEVNULL,
                                  stderr=logs[i], env={**env, "MIGRATOR_TENANT_SHARDS": str(workers),
                                                       "MIGRATOR_TENANT_SHARD": str(i)})
                 for i in range(workers)]
        client, failed = 0.0, 0
        for proc, log in zip(procs, logs, strict=True):
            _, status, usage = os.wait4(proc.pid, 0)
            client += usage.ru_utime + usage.ru_stime
            if os.waitstatus_to_exitcode(status) != 0:
                failed += 1
                log.seek(0)
                print(f"worker exited {os.waitstatus_to_exitcode(status)}:", *log.readlines()[-4:], sep="\n  ",
                      file=sys.stderr)
        seconds = time.perf_counter() - started
    return Pass(workers, seconds, client, server_cpu(postmaster) - server_before, failed)


def tenant_database(server: EmbeddedServer, tenants: int) -> str:
    url = server.url_for(server.create_database())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tenants (name text PRIMARY KEY)")
        conn.execute("INSERT INTO tenants SELECT 'tenant_' || (lpad(i::text, 4, '0')) "
                     "FROM generate_series(1, %s) AS i", (tenants,))
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=500, help="tenant schemas (default 500)")
    parser.add_argument("--revisions", type=int, default=20, help="revisions per tenant (default 20)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default 1 2 4)")
    args = parser.parse_args()
    server = EmbeddedServer()
    os.environ["BENCH_ADMIN_URL"] = server.admin_url
    base = Path(tempfile.mkdtemp(prefix="migrator-bench-tenants-"))
    lines = []
    try:
        print(machine(), flush=True)
        path = project(base, args.revisions)
        (path / "migrator.toml").write_text('tenants_query = "SELECT name FROM tenants"\n')
        compile_all(path, Path(__file__).resolve().parent.parent / "migrator")
        postmaster = postmaster_pid(server.admin_url)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_", "MIGRATOR_"))}
        for workers in args.workers:
            url = tenant_database(server, args.tenants)
            env = {**clean, "DATABASE_URL": url}
            apply = run_workers(path, env, workers, postmaster)
            lines.append(apply.line(f"apply {args.revisions} revisions", args.tenants))
            print(lines[-1], flush=True)
            noop = run_workers(path, env, workers, postmaster)
            lines.append(noop.line("no-op (every tenant at head)", args.tenants))
            print(lines[-1], flush=True)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{args.tenants} tenant schemas x {args.revisions} revisions, one embedded PostgreSQL (Unix socket)\n")
    print(f"{'pass':<34} {'wrk':>3} {'wall s':>9} {'tenant/s':>9} {'client s':>9} {'server s':>9} "
          f"{'server%':>8} {'fail':>5}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
