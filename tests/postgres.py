"""Real PostgreSQL servers for the tests: the embedded one (pgserver) and Debian's (TCP, passwords, SSL).

The embedded server listens on a Unix socket only and has no SSL, so tests that need TCP (containers on the
host network, wrong passwords, SSL) start a throwaway Debian PostgreSQL cluster, run as the `postgres` user
because initdb refuses root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

DEBIAN_BIN = Path("/usr/lib/postgresql")
SUPERUSER_PASSWORD = "s3cr3t:p@ss/w?rd"  # URL-special on purpose; must never appear in any output


def debian_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory, or None when Debian's server is not installed."""
    if not DEBIAN_BIN.is_dir():
        return None
    versions = sorted((p for p in DEBIAN_BIN.iterdir() if (p / "bin" / "postgres").exists()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
    return versions[-1] / "bin" if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: `admin_url` reaches its `postgres` database as a superuser."""

    admin_url: str
    password: str | None = None
    databases: list[str] = field(default_factory=list)

    def url_for(self, dbname: str, **query: str) -> str:
        base, _, q = self.admin_url.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + dbname
        params = [q] if q else []
        params += [f"{k}={quote(v, safe='/')}" for k, v in query.items()]
        return base + ("?" + "&".join(params) if params else "")

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class EmbeddedServer(Server):
    """pgserver's PostgreSQL 16 on a Unix socket, trust authentication."""

    def __init__(self) -> None:
        # pgserver asks platformdirs for a runtime directory, which a root session without XDG_RUNTIME_DIR lacks.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

        self._dir = tempfile.mkdtemp(prefix="migrator-pg-")
        self._server = pgserver.get_server(self._dir, cleanup_mode="delete")  # type: ignore[attr-defined]
        super().__init__(admin_url=self._server.get_uri())

    def stop(self) -> None:
        self._server.cleanup()


class DebianServer(Server):
    """A throwaway Debian PostgreSQL cluster on 127.0.0.1 with password (scram) authentication.

    `ssl_dir` holds server.crt/server.key (signed by a CA the test made) to start it with ssl=on.
    `start=False` creates the cluster without starting it, for tests that start it later.
    `settings` are appended to postgresql.conf (the last one wins): `{"max_connections": "30"}`.
    """

    def __init__(self, *, ssl_dir: Path | None = None, start: bool = True,
                 settings: dict[str, str] | None = None) -> None:
        bindir = debian_bindir()
        if bindir is None:
            raise RuntimeError("Debian's PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="migrator-debpg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.sockdir.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.sockdir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(self.root, 0o755)
        self._as_postgres([str(bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                           "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                           "-E", "UTF8", "--no-sync"])
        pwfile.unlink()
        conf = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.sockdir}'", "fsync = off", "max_connections = 200"]
        if ssl_dir is not None:
            for name in ("server.crt", "server.key"):
                dest = self.datadir / name
                shutil.copy(ssl_dir / name, dest)
                shutil.chown(dest, "postgres", "postgres")
                os.chmod(dest, 0o600)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        conf += [f"{name} = '{value}'" for name, value in (settings or {}).items()]
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n".join(conf) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        super().__init__(
            admin_url=f"postgresql://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@127.0.0.1:{self.port}/postgres",
            password=SUPERUSER_PASSWORD,
        )
        if start:
            self.start()

    def _as_postgres(self, argv: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self, wait: bool = True) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115  (the server process owns it)
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "postgres"), "-D", str(self.datadir)],
            stdout=log, stderr=log)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def make_ca_and_server_cert(directory: Path, hostname: str = "localhost") -> Path:
    """A CA and a server certificate for `hostname` (and 127.0.0.1) made with openssl; returns the CA file."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=directory, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=migrator test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hostname}",
        "-keyout", "server.key", "-out", "server.csr")
    (directory / "ext.cnf").write_text(f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
    return directory / "ca.crt"
