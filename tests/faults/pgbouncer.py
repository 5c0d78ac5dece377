"""A real PgBouncer (Debian's /usr/sbin/pgbouncer) in front of a test server, started by the test.

PgBouncer refuses to run as root, so it runs as `postgres` (runuser), like the Debian server itself, on a free
port of 127.0.0.1, with its own ini and auth_file in a temporary directory. Clients authenticate to PgBouncer
with `auth_type` (plain or md5) against the auth_file; PgBouncer logs in to the server over TCP with the
same (scram) password, which the auth_file holds in plain text for that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.postgres import SUPERUSER_PASSWORD, DebianServer, free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")


class PgBouncer:
    """One PgBouncer process; `url_for(dbname)` reaches a server database through it as `postgres`."""

    def __init__(self, server: DebianServer, pool_mode: str, *, auth_type: str = "md5", pool_size: int = 50,
                 max_client_conn: int = 200) -> None:
        self.server, self.pool_mode = server, pool_mode
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="migrator-pgbouncer-"))
        auth_file = self.root / "userlist.txt"
        auth_file.write_text(f'"postgres" "{SUPERUSER_PASSWORD}"\n')
        ini = self.root / "pgbouncer.ini"
        ini.write_text("\n".join([
            "[databases]",
            f"* = host=127.0.0.1 port={server.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {auth_type}",
            f"auth_file = {auth_file}",
            f"pool_mode = {pool_mode}",
            f"default_pool_size = {pool_size}",
            f"max_client_conn = {max_client_conn}",
            "admin_users = postgres",
            f"logfile = {self.root / 'pgbouncer.log'}",
            f"pidfile = {self.root / 'pgbouncer.pid'}",
            # libpq sends none of these by default; keep PgBouncer's own refusal of odd parameters visible.
            "ignore_startup_parameters = extra_float_digits",
            "",
        ]))
        for path in (self.root, auth_file, ini):
            shutil.chown(path, "postgres", "postgres")
        os.chmod(auth_file, 0o600)
        # PgBouncer logs to stderr as well as to its logfile: a pipe nobody reads would fill up after some
        # hundred logins and stop PgBouncer in the middle of a write, so stderr goes to a file too.
        self._stderr = open(self.root / "stderr.log", "wb")  # noqa: SIM115  (the process owns it)
        self.proc = subprocess.Popen(["runuser", "-u", "postgres", "--", str(PGBOUNCER), str(ini)],
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)
        self._wait_ready()

    def url_for(self, dbname: str, **query: str) -> str:
        params = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return (f"postgresql://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@127.0.0.1:{self.port}/{dbname}"
                + (f"?{params}" if params else ""))

    def _wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = (self.root / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {err} {self.log()}")
            try:
                with psycopg.connect(self.url_for("pgbouncer"), autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SHOW VERSION")
                    return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self._stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)
