"""The README's first command (`make demo`): the main job against an embedded PostgreSQL.

Starts a throwaway PostgreSQL 16 (pgserver), creates `hello_migrations_dev` (the database of the article
migrator follows, "Phoenix Database Migrations with Elixir Releases") and runs the release sequence with the
real `migrator` command, as a container would: migrate, seed, status, rollback, a status check that fails on
purpose, migrate again (twice), seed again. Exits 1 when a step's exit code is not the one it expects.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.postgres import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
FIRST = "20211103022310"


# (arguments, the exit code the step must have, why when it is not 0)
STEPS: list[tuple[list[str], int, str]] = [
    (["migrate"], 0, ""),
    (["seed"], 0, ""),
    (["status"], 0, ""),
    (["rollback", FIRST], 0, ""),
    (["status", "--check"], 5, "as intended: the rollback left the database one migration behind, which "
                               "status --check reports with exit 5"),
    (["migrate"], 0, ""),
    (["migrate"], 0, ""),
    (["seed"], 0, ""),
]


def main() -> int:
    server = EmbeddedServer()
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE hello_migrations_dev")
        env = {**os.environ, "DATABASE_URL": server.url_for("hello_migrations_dev")}
        unexpected = 0
        for args, expected, why in STEPS:
            print(f"\n$ migrator {shlex.join(args)}", flush=True)
            code = subprocess.run([sys.executable, "-m", "migrator", *args], cwd=ROOT, env=env, check=False).returncode
            if code != expected:
                unexpected += 1
                print(f"(exit {code}: the demo expected {expected}; this is a bug)", flush=True)
            elif code != 0:
                print(f"(exit {code}, {why})", flush=True)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            rows = conn.execute("SELECT name, email, bio, number_of_pets FROM users ORDER BY id").fetchall()
        print(f"\nusers: {rows}")
    finally:
        server.stop()
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
