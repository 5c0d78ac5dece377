"""Settings from the environment: where the database is, how to reach it, and how long to wait for what.

Nothing here connects. Every bad value raises ConfigError with one line that names the variable and says
what would be accepted, before anything touches the database.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from migrator import database_url
from migrator.errors import ConfigError

# libpq reads these itself when DATABASE_URL is absent; any of them means "a database is configured".
PG_TARGET_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
APPLICATION_NAME_MAX = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)
PASSWORD_FILE_MAX = 65535  # bytes: the longest password packet PostgreSQL reads (PG_MAX_AUTH_TOKEN_LENGTH)
_DURATION = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|min|h)?\s*$", re.ASCII)
_COUNT = re.compile(r"^\s*[0-9]{1,9}\s*$", re.ASCII)
_TEXT_MAX = 64  # characters of a duration or count worth parsing
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
MS, SECOND, MINUTE, HOUR = 0.001, 1.0, 60.0, 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a duration in seconds, both ends included; `off` also accepts 0, meaning off."""

    low: float
    high: float
    off: bool = False

    def __contains__(self, seconds: float) -> bool:
        # The tolerance absorbs float spelling only (0.001 vs 1ms): 0.9ms stays below a 1ms minimum.
        return (self.off and seconds == 0) or self.low - 1e-9 <= seconds <= self.high + 1e-9

    def describe(self) -> str:
        span = f"{format_seconds(self.low)} to {format_seconds(self.high)}"
        return f"0 (off) or {span}" if self.off else span


# The allowed range of each duration setting; the README's settings table documents the same.
# PostgreSQL's lock_timeout, statement_timeout and idle_in_transaction_session_timeout are whole milliseconds
# (at most 2147483647); 0 would mean "no timeout", which only MIGRATOR_STATEMENT_TIMEOUT offers.
DURATIONS: dict[str, tuple[str, Bounds]] = {
    "MIGRATOR_LOCK_TIMEOUT": ("lock", Bounds(100 * MS, DAY)),
    "MIGRATOR_DDL_LOCK_TIMEOUT": ("ddl_lock", Bounds(MS, HOUR)),
    "MIGRATOR_CONCURRENT_LOCK_TIMEOUT": ("concurrent_lock", Bounds(MS, DAY)),
    "MIGRATOR_STATEMENT_TIMEOUT": ("statement", Bounds(MS, DAY, off=True)),
    "MIGRATOR_IDLE_TIMEOUT": ("idle", Bounds(100 * MS, DAY)),
    # Also tcp_user_timeout and keepalives, which count whole seconds.
    "MIGRATOR_STALL_TIMEOUT": ("stall", Bounds(SECOND, HOUR)),
    # libpq's connect_timeout counts whole seconds.
    "MIGRATOR_CONNECT_TIMEOUT": ("connect", Bounds(SECOND, DAY)),
    # Progress lines of a long migration statement (migrator.progress): after how long, how often; 0: none.
    "MIGRATOR_PROGRESS_AFTER": ("progress_after", Bounds(100 * MS, DAY)),
    "MIGRATOR_PROGRESS_INTERVAL": ("progress_interval", Bounds(100 * MS, DAY, off=True)),
}
DDL_RETRIES_MAX = 100
# For the CLI: `wait --timeout S` and `wait --interval S`.
WAIT_TIMEOUT = Bounds(100 * MS, DAY)
WAIT_INTERVAL = Bounds(100 * MS, HOUR)


class Timeouts(NamedTuple):
    """How long to wait for what, in seconds (statement: None leaves the server's own setting, 0 turns it off),
    and when to report the progress of a long statement (progress_interval 0: never)."""

    lock: float = 600.0  # another migrator's lock (exit 4)
    ddl_lock: float = 5.0  # PostgreSQL lock_timeout of each migration statement
    concurrent_lock: float = 600.0  # lock_timeout of CONCURRENTLY statements (they wait for older transactions)
    ddl_retries: int = 5
    statement: float | None = None  # PostgreSQL statement_timeout; None: the role's or database's; 0: off
    idle: float = 10.0  # idle_in_transaction_session_timeout of the migration session
    stall: float = 15.0  # no answer from the server for this long: the connection is lost
    connect: float = 60.0
    progress_after: float = 5.0  # a statement running this long gets progress lines
    progress_interval: float = 10.0  # one every so often while it runs


SHARDS_MAX = 100000  # a Job's completions in Indexed mode are limited to 10^5


@dataclass(frozen=True)
class Shard:
    """Which tenants this process takes: those whose name hashes to `index` modulo `count` (all when count is 1).

    By a hash of the name, not by position in a sorted list: a tenant added or removed while the pods of an
    Indexed Job start one after another moves no other tenant to another shard, so none is skipped by all
    pods, and a tenant seen by two pods is migrated once (its lock and version table)."""

    index: int = 0
    count: int = 1

    def takes(self, name: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def describe(self) -> str:
        return f"shard {self.index} of {self.count}"


class Settings(NamedTuple):
    """Process-wide settings: timeouts, logging, and the tenants' shard."""

    timeouts: Timeouts = Timeouts()
    log_format: str = "console"
    log_level: str = "info"
    validate: str | None = None  # MIGRATOR_VALIDATE: error, warn or off; None: each repo's own (default error)
    shard: Shard = Shard()


class DatabaseConfig(NamedTuple):
    """libpq connection keywords for one database (the password included) and a printable description."""

    params: dict[str, str]
    description: str


def format_seconds(seconds: float) -> str:
    """The shortest exact spelling among 250ms, 5s, 10m, 24h."""
    for unit, size in (("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    if seconds >= SECOND:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def parse_seconds(name: str, value: str, bounds: Bounds | None = None) -> float:
    """`5`, `2.5`, `500ms`, `5s`, `2m` or `1h` as seconds, within `bounds` when given."""
    match = _DURATION.match(value) if len(value) <= _TEXT_MAX else None
    if not match:
        allowed = f" from {bounds.describe()}" if bounds else ""
        raise ConfigError(f"{name}={_shown(value)} is not a duration: use seconds (5, 2.5) or 500ms, 5s, 2m, "
                          f"1h{allowed}")
    seconds = float(match["n"]) * _UNIT_SECONDS[match["unit"]]
    if bounds is not None and seconds not in bounds:
        raise ConfigError(f"{name}={_shown(value)} is out of range: use {bounds.describe()}")
    return seconds


def parse_count(name: str, value: str, high: int = DDL_RETRIES_MAX) -> int:
    """A whole number from 0 to `high`."""
    if not _COUNT.match(value) or int(value) > high:
        raise ConfigError(f"{name}={_shown(value)} is not a count from 0 to {high}: use a whole number")
    return int(value)


def _shown(value: str) -> str:
    """The value as typed, quoted, cut short when it is long enough to drown the message."""
    return repr(value) if len(value) <= _TEXT_MAX else repr(value[:_TEXT_MAX]) + "..."


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Read MIGRATOR_* settings; unknown or out-of-range values are errors, not silent defaults."""
    values: dict[str, Any] = {}
    for var, (attribute, bounds) in DURATIONS.items():
        if env.get(var, "").strip():
            values[attribute] = parse_seconds(var, env[var], bounds)
    if env.get("MIGRATOR_DDL_RETRIES", "").strip():
        values["ddl_retries"] = parse_count("MIGRATOR_DDL_RETRIES", env["MIGRATOR_DDL_RETRIES"])
    log_format, log_level = log_options(env)
    return Settings(timeouts=Timeouts()._replace(**values), log_format=log_format, log_level=log_level,
                    validate=validate_option("MIGRATOR_VALIDATE", env.get("MIGRATOR_VALIDATE", "")),
                    shard=shard(env))


VALIDATE = ("error", "warn", "off")


def validate_option(name: str, value: str) -> str | None:
    """What to do when an applied migration's file changed or is gone (migrator.validation); None when unset."""
    value = value.strip().lower()
    if not value:
        return None
    if value not in VALIDATE:
        raise ConfigError(f"{name}={_shown(value)} is not supported: use error (refuse to migrate), warn or off")
    return value


def shard(env: Mapping[str, str] = os.environ) -> Shard:
    """MIGRATOR_TENANT_SHARDS (how many processes share the tenants) and this process's index: MIGRATOR_TENANT_SHARD,
    else JOB_COMPLETION_INDEX, which Kubernetes sets in each pod of an Indexed Job."""
    count_text = env.get("MIGRATOR_TENANT_SHARDS", "").strip()
    if not count_text:
        if env.get("MIGRATOR_TENANT_SHARD", "").strip():
            raise ConfigError("MIGRATOR_TENANT_SHARD is set without MIGRATOR_TENANT_SHARDS: set both, or neither")
        return Shard()  # JOB_COMPLETION_INDEX alone: an Indexed Job that does not share tenants out
    if not _COUNT.match(count_text) or not 1 <= int(count_text) <= SHARDS_MAX:
        raise ConfigError(f"MIGRATOR_TENANT_SHARDS={_shown(count_text)} is not a count from 1 to {SHARDS_MAX}: use "
                          "a whole number (the Indexed Job's completions)")
    count = int(count_text)
    for var in ("MIGRATOR_TENANT_SHARD", "JOB_COMPLETION_INDEX"):
        text = env.get(var, "").strip()
        if text:
            if not _COUNT.match(text) or int(text) >= count:
                raise ConfigError(f"{var}={_shown(text)} is not a shard index from 0 to {count - 1} "
                                  f"(MIGRATOR_TENANT_SHARDS={count})")
            return Shard(int(text), count)
    if count == 1:
        return Shard()
    raise ConfigError(f"MIGRATOR_TENANT_SHARDS={count} needs this process's shard: set MIGRATOR_TENANT_SHARD (0 to "
                      f"{count - 1}), or run it in an Indexed Job (JOB_COMPLETION_INDEX)")


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
        params = database_url.parse(url_var, url)
    elif url_var == "DATABASE_URL" and any(env.get(v) for v in PG_TARGET_VARS):
        params = {}  # libpq fills in PGHOST, PGUSER, PGSSLMODE, ... from the environment itself
    else:
        hint = " (or libpq's PGHOST, PGDATABASE, ...)" if url_var == "DATABASE_URL" else ""
        raise ConfigError(f"no database configured: set {url_var}{hint}")
    if "port" not in params and env.get("PGPORT", "").strip():
        database_url.check_ports("PGPORT", {"port": env["PGPORT"].strip(),
                                            "host": params.get("host") or env.get("PGHOST", "")})
    password_file = env.get(password_file_var, "").strip()
    if password_file:
        params["password"] = read_password_file(password_file_var, password_file)
    if "application_name" not in params and not env.get("PGAPPNAME"):
        params["application_name"] = application_name()
    return DatabaseConfig(params=params, description=describe(params, env))


def read_password_file(var: str, path: str) -> str:
    """The password in a mounted Secret file: one line of UTF-8 text; its trailing newline is not part of it."""
    what = f"{var}={path}"
    password = read_text_file(what, path, PASSWORD_FILE_MAX).rstrip("\r\n")
    if not password:
        raise ConfigError(f"{what} is empty")
    if "\n" in password or "\r" in password:
        raise ConfigError(f"{what} holds more than one line: put only the password in it")
    if "\0" in password:
        raise ConfigError(f"{what} contains a NUL character, which no PostgreSQL password can hold")
    return password


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def read_text_file(what: str, path: str | Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes; ConfigError (starting with `what`) otherwise.

    Never blocks and never reads more than limit + 1 bytes: a FIFO (which would wait for a writer), a device
    such as /dev/zero (endless) or a directory is refused before reading. Symlinks are followed (Kubernetes
    mounts Secrets as symlinks to regular files). The content is never part of a message.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {_strerror(exc)}") from None
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            raise ConfigError(f"{what} is {_KINDS.get(kind, 'not a regular file')}: it must be a regular file")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {_strerror(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text") from None


def _strerror(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    return exc.strerror or type(exc).__name__


def application_name() -> str:
    """`migrator@<host name>`: the pod name in Kubernetes, so DBAs can tell pods apart in pg_stat_activity."""
    return f"migrator@{socket.gethostname()}"[:APPLICATION_NAME_MAX]


def describe(params: Mapping[str, str], env: Mapping[str, str]) -> str:
    """`user@host:port/database` (`h1:5432,h2:5433` for several hosts), from the URL or PG*; never the password."""
    user = params.get("user") or env.get("PGUSER") or ""
    host = params.get("host") or params.get("hostaddr") or env.get("PGHOST") or env.get("PGHOSTADDR") or "localhost"
    port = params.get("port") or env.get("PGPORT") or "5432"
    dbname = params.get("dbname") or env.get("PGDATABASE") or user
    hosts, ports = host.split(","), port.split(",")
    if len(ports) != len(hosts):
        ports = ports[:1] * len(hosts)
    where = ",".join(h if h.startswith("/") else f"{h or 'localhost'}:{p or '5432'}"
                     for h, p in zip(hosts, ports, strict=True))
    return f"{user + '@' if user else ''}{where}/{dbname}"
