"""The README's first command (`make demo`): the main job against an embedded PostgreSQL.

Starts a throwaway PostgreSQL 16 (pgserver), creates the seed article's `hello_migrations_dev` database and
runs the release sequence with the real `migrator` command, as a container would: migrate, seed, status,
rollback, migrate again, seed again.
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
STEPS = [
    ["migrate"],
    ["seed"],
    ["status"],
    ["rollback", "20211103022310"],
    ["status", "--check"],
    ["migrate"],
    ["migrate"],
    ["seed"],
]


def main() -> int:
    server = EmbeddedServer()
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE hello_migrations_dev")
        env = {**os.environ, "DATABASE_URL": server.url_for("hello_migrations_dev")}
        for args in STEPS:
            print(f"\n$ migrator {shlex.join(args)}", flush=True)
            code = subprocess.run([sys.executable, "-m", "migrator", *args], cwd=ROOT, env=env, check=False).returncode
            if code != 0:
                print(f"(exit {code})", flush=True)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            rows = conn.execute("SELECT name, email, bio, number_of_pets FROM users ORDER BY id").fetchall()
        print(f"\nusers: {rows}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
