"""Settings from the environment: where the database is, how to reach it, and how long to wait for what.

Nothing here connects. Every bad value raises ConfigError with one line that names the variable and says
what would be accepted, before anything touches the database.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from migrator.errors import ConfigError
from migrator.redaction import redact, register_secret

SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}
# libpq reads these itself when DATABASE_URL is absent; any of them means "a database is configured".
PG_TARGET_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
APPLICATION_NAME_MAX = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|min|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for what, in seconds (statement 0 means no statement timeout)."""

    lock: float = 600.0  # another migrator's lock (exit 4)
    ddl_lock: float = 5.0  # PostgreSQL lock_timeout of each migration statement
    concurrent_lock: float = 600.0  # lock_timeout of CONCURRENTLY statements (they wait for older transactions)
    ddl_retries: int = 5
    statement: float = 0.0  # PostgreSQL statement_timeout; 0: off
    idle: float = 10.0  # idle_in_transaction_session_timeout of the migration session
    stall: float = 15.0  # no answer from the server for this long: the connection is lost
    connect: float = 60.0


@dataclass(frozen=True)
class Settings:
    """Process-wide settings: timeouts and logging."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    log_format: str = "console"
    log_level: str = "info"


@dataclass(frozen=True)
class DatabaseConfig:
    """libpq connection keywords for one database (the password included) and a printable description."""

    params: dict[str, str]
    description: str


def parse_seconds(name: str, value: str) -> float:
    """`5`, `2.5`, `500ms`, `5s`, `2m` or `1h` as seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ConfigError(f"{name}={value!r} is not a duration: use seconds (5, 2.5) or 500ms, 5s, 2m, 1h")
    return float(match["n"]) * _UNIT_SECONDS[match["unit"]]


def parse_count(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise ConfigError(f"{name}={value!r} is not a count: use a whole number >= 0")
    return int(value)


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Read MIGRATOR_* settings; unknown values are errors, not silent defaults."""
    defaults = Timeouts()

    def seconds(var: str, default: float) -> float:
        return parse_seconds(var, env[var]) if env.get(var, "").strip() else default

    timeouts = Timeouts(
        lock=seconds("MIGRATOR_LOCK_TIMEOUT", defaults.lock),
        ddl_lock=seconds("MIGRATOR_DDL_LOCK_TIMEOUT", defaults.ddl_lock),
        concurrent_lock=seconds("MIGRATOR_CONCURRENT_LOCK_TIMEOUT", defaults.concurrent_lock),
        ddl_retries=parse_count("MIGRATOR_DDL_RETRIES", env["MIGRATOR_DDL_RETRIES"])
        if env.get("MIGRATOR_DDL_RETRIES", "").strip() else defaults.ddl_retries,
        statement=seconds("MIGRATOR_STATEMENT_TIMEOUT", defaults.statement),
        idle=seconds("MIGRATOR_IDLE_TIMEOUT", defaults.idle),
        stall=seconds("MIGRATOR_STALL_TIMEOUT", defaults.stall),
        connect=seconds("MIGRATOR_CONNECT_TIMEOUT", defaults.connect),
    )
    log_format, log_level = log_options(env)
    return Settings(timeouts=timeouts, log_format=log_format, log_level=log_level)


def log_options(env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(MIGRATOR_LOG_FORMAT, MIGRATOR_LOG_LEVEL), validated."""
    log_format = env.get("MIGRATOR_LOG_FORMAT", "console").strip().lower() or "console"
    if log_format not in ("console", "json"):
        raise ConfigError(f"MIGRATOR_LOG_FORMAT={log_format!r} is not supported: use console or json")
    log_level = env.get("MIGRATOR_LOG_LEVEL", "info").strip().lower() or "info"
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"MIGRATOR_LOG_LEVEL={log_level!r} is not supported: use debug, info, warning or error")
    return log_format, log_level


def database_config(env: Mapping[str, str] = os.environ, url_var: str = "DATABASE_URL",
                    password_file_var: str = "DATABASE_PASSWORD_FILE") -> DatabaseConfig:  # noqa: S107 (a variable name)
    """The connection keywords for the database named by `url_var`, or by libpq's PG* variables."""
    url = env.get(url_var, "").strip()
    if url:
        params = _params_from_url(url_var, url)
    elif url_var == "DATABASE_URL" and any(env.get(v) for v in PG_TARGET_VARS):
        params = {}  # libpq fills in PGHOST, PGUSER, PGSSLMODE, ... from the environment itself
    else:
        hint = " (or libpq's PGHOST, PGDATABASE, ...)" if url_var == "DATABASE_URL" else ""
        raise ConfigError(f"no database configured: set {url_var}{hint}")
    register_secret(params.get("password"))
    register_secret(env.get("PGPASSWORD"))
    password_file = env.get(password_file_var, "").strip()
    if password_file:
        params["password"] = read_password_file(password_file_var, password_file)
    if "application_name" not in params and not env.get("PGAPPNAME"):
        params["application_name"] = application_name()
    return DatabaseConfig(params=params, description=describe(params, env))


def _params_from_url(var: str, url: str) -> dict[str, str]:
    from psycopg import conninfo  # noqa: PLC0415  (psycopg is imported only once a URL needs parsing)

    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{var} is not a URL: use postgres://USER:PASSWORD@HOST:PORT/DATABASE")
    if scheme.lower() not in SCHEMES:
        raise ConfigError(f"{var} has the unsupported scheme {scheme!r}: use postgres://, postgresql:// "
                          "or postgresql+psycopg://")
    normalized = "postgresql://" + rest
    _check_port(var, normalized)
    try:
        params = conninfo.conninfo_to_dict(normalized)
    except Exception as exc:  # libpq's parser raises ProgrammingError with its own words
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{var} is malformed: {redact(reason)}") from None
    return {k: str(v) for k, v in params.items() if v is not None}


def _check_port(var: str, url: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018  (the property validates)
    except ValueError:
        raise ConfigError(f"{var} has an invalid port: use a number between 1 and 65535") from None


def read_password_file(var: str, path: str) -> str:
    """The password in a mounted Secret file, without its trailing newline."""
    try:
        password = Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{var}={path} cannot be read: {exc.strerror}") from None
    if not password:
        raise ConfigError(f"{var}={path} is empty")
    register_secret(password)
    return password


def application_name() -> str:
    """`migrator@<host name>`: the pod name in Kubernetes, so DBAs can tell pods apart in pg_stat_activity."""
    return f"migrator@{socket.gethostname()}"[:APPLICATION_NAME_MAX]


def describe(params: Mapping[str, str], env: Mapping[str, str]) -> str:
    """`user@host:port/database`, from the URL or the PG* variables; never the password."""
    user = params.get("user") or env.get("PGUSER") or ""
    host = params.get("host") or params.get("hostaddr") or env.get("PGHOST") or env.get("PGHOSTADDR") or "localhost"
    port = params.get("port") or env.get("PGPORT") or "5432"
    dbname = params.get("dbname") or env.get("PGDATABASE") or user
    where = f"{host}:{port}" if not host.startswith("/") else host
    return f"{user + '@' if user else ''}{where}/{dbname}"
