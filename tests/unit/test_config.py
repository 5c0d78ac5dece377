"""Settings and database configuration from the environment (pure functions, no database)."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from migrator import database_url
from migrator.config import (
    DURATIONS,
    PASSWORD_FILE_MAX,
    WAIT_INTERVAL,
    WAIT_TIMEOUT,
    Bounds,
    application_name,
    database_config,
    format_seconds,
    load_settings,
    parse_seconds,
    read_text_file,
)
from migrator.errors import ConfigError

# --- durations ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("2.5", 2.5), ("500ms", 0.5), ("5s", 5.0),
                                               ("2m", 120.0), ("1h", 3600.0), (" 10 ", 10.0), ("3min", 180.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds("X", text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "soon", "5 days", "1e3", "inf", "nan", "\u0661", "5S", "9" * 65])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^X=.* is not a duration"):
        parse_seconds("X", text)


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.timeouts.lock, settings.timeouts.ddl_lock, settings.timeouts.ddl_retries,
            settings.timeouts.statement, settings.timeouts.connect) == (600, 5, 5, None, 60)
    assert (settings.timeouts.progress_after, settings.timeouts.progress_interval) == (5, 10)
    assert (settings.log_format, settings.log_level) == ("console", "info")


# The ranges the README documents; a change here is a change of the documented interface.
RANGES = {
    "MIGRATOR_LOCK_TIMEOUT": "100ms to 24h",
    "MIGRATOR_DDL_LOCK_TIMEOUT": "1ms to 1h",
    "MIGRATOR_CONCURRENT_LOCK_TIMEOUT": "1ms to 24h",
    "MIGRATOR_STATEMENT_TIMEOUT": "0 (off) or 1ms to 24h",
    "MIGRATOR_IDLE_TIMEOUT": "100ms to 24h",
    "MIGRATOR_STALL_TIMEOUT": "1s to 1h",
    "MIGRATOR_CONNECT_TIMEOUT": "1s to 24h",
    "MIGRATOR_PROGRESS_AFTER": "100ms to 24h",
    "MIGRATOR_PROGRESS_INTERVAL": "0 (off) or 100ms to 24h",
}


def test_every_duration_setting_has_its_documented_range() -> None:
    assert {var: bounds.describe() for var, (_, bounds) in DURATIONS.items()} == RANGES
    assert (WAIT_TIMEOUT.describe(), WAIT_INTERVAL.describe()) == ("100ms to 24h", "100ms to 1h")


# The settings whose documented range says that 0 turns them off.
ZERO_IS_OFF = sorted(var for var, described in RANGES.items() if described.startswith("0 (off)"))


def _out_of_range(var: str) -> list[str]:
    """Values outside `var`'s documented range: 0 (where 0 is not "off"), below its low end, above its high end."""
    zero = [] if var in ZERO_IS_OFF else ["0"]
    return [*zero, "0.0004", format_seconds(DURATIONS[var][1].high * 2), "99999999999999999999h"]


@pytest.mark.parametrize("var", sorted(DURATIONS))
def test_each_duration_setting_is_read_at_both_ends_of_its_range(var: str) -> None:
    attribute, bounds = DURATIONS[var]
    for inside in (bounds.low, bounds.high):
        spelled = format_seconds(inside)
        assert getattr(load_settings({var: spelled}).timeouts, attribute) == pytest.approx(inside)


@pytest.mark.parametrize(("var", "outside"),
                         [(var, outside) for var in sorted(DURATIONS) for outside in _out_of_range(var)])
def test_each_duration_setting_refuses_a_value_out_of_its_range(var: str, outside: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({var: outside})
    assert str(raised.value) == f"{var}={outside!r} is out of range: use {RANGES[var]}"


@pytest.mark.parametrize("var", ZERO_IS_OFF)
def test_zero_turns_a_setting_off_where_its_range_says_so(var: str) -> None:
    assert getattr(load_settings({var: "0"}).timeouts, DURATIONS[var][0]) == 0


@pytest.mark.parametrize("value", ["0", "0s", "0ms", "0.0", "0.4ms"])
def test_zero_never_turns_the_ddl_lock_timeout_off(value: str) -> None:
    for var in ("MIGRATOR_DDL_LOCK_TIMEOUT", "MIGRATOR_CONCURRENT_LOCK_TIMEOUT"):
        with pytest.raises(ConfigError, match="is out of range: use 1ms to"):
            load_settings({var: value})


def test_statement_timeout_zero_is_off_but_sub_millisecond_is_refused() -> None:
    assert load_settings({"MIGRATOR_STATEMENT_TIMEOUT": "0"}).timeouts.statement == 0
    with pytest.raises(ConfigError, match=r"'0\.5ms' is out of range: use 0 \(off\) or 1ms to 24h"):
        load_settings({"MIGRATOR_STATEMENT_TIMEOUT": "0.5ms"})


@pytest.mark.parametrize(("value", "retries"), [("0", 0), ("5", 5), (" 100 ", 100)])
def test_ddl_retries(value: str, retries: int) -> None:
    assert load_settings({"MIGRATOR_DDL_RETRIES": value}).timeouts.ddl_retries == retries


@pytest.mark.parametrize("value", ["-1", "101", "2.5", "many", "\u0661", "9" * 5000])
def test_bad_ddl_retries(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"MIGRATOR_DDL_RETRIES": value})
    message = str(raised.value)
    assert message.startswith("MIGRATOR_DDL_RETRIES=") and "is not a count from 0 to 100" in message
    assert len(message) < 200, "a huge value must not be echoed whole"


def test_cli_bounds_for_wait() -> None:
    assert parse_seconds("--interval", "100ms", WAIT_INTERVAL) == 0.1
    with pytest.raises(ConfigError, match=r"^--interval='0\.05' is out of range: use 100ms to 1h$"):
        parse_seconds("--interval", "0.05", WAIT_INTERVAL)
    with pytest.raises(ConfigError, match=r"^--timeout='25h' is out of range: use 100ms to 24h$"):
        parse_seconds("--timeout", "25h", WAIT_TIMEOUT)


@pytest.mark.parametrize(("seconds", "text"), [(0.001, "1ms"), (0.25, "250ms"), (1, "1s"), (90, "90s"),
                                               (600, "10m"), (3600, "1h"), (86400, "24h"), (1.5, "1.5s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text
    assert parse_seconds("X", text) == pytest.approx(seconds)


def test_bounds_compare_whole_milliseconds() -> None:
    assert 0.001 in Bounds(0.001, 1) and 0.0009 not in Bounds(0.001, 1)
    assert 0 in Bounds(0.001, 1, off=True) and 0 not in Bounds(0.001, 1)


# --- DATABASE_URL ---------------------------------------------------------------------------------------

def test_article_url_verbatim() -> None:
    db = database_config({"DATABASE_URL": "postgres://postgres:postgres@localhost:5432/hello_migrations_dev"})
    assert {k: db.params[k] for k in ("host", "port", "user", "password", "dbname")} == {
        "host": "localhost", "port": "5432", "user": "postgres", "password": "postgres",
        "dbname": "hello_migrations_dev"}
    assert db.description == "postgres@localhost:5432/hello_migrations_dev"
    assert db.params["application_name"] == application_name()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2",
                                    "POSTGRES"])
def test_schemes_and_percent_encoded_password(scheme: str) -> None:
    db = database_config({"DATABASE_URL": f"{scheme}://app:p%40ss%3Aw%2Fo%3Frd@db:5433/app?sslmode=verify-full"
                                          "&sslrootcert=/etc/ssl/ca.crt"})
    assert db.params["password"] == "p@ss:w/o?rd"
    assert db.params["sslmode"] == "verify-full" and db.params["sslrootcert"] == "/etc/ssl/ca.crt"
    assert "p@ss" not in db.description


# Every form accepted before the URL parser was ours: libpq's own reading of each is the expected result.
ACCEPTED = [
    "postgresql://app:pw@db:5432/app",
    "postgresql://app:pw@db/app?sslmode=verify-full&sslrootcert=/etc/ssl/ca.crt&sslcert=/c&sslkey=/k",
    "postgresql:///app?host=/var/run/postgresql",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/app",
    "postgresql://app@db/app?options=-c%20search_path%3Dapp%2Cpublic&application_name=release-42",
    "postgresql://app:pw@h1:5432,h2:5433/app?target_session_attrs=read-write",
    "postgresql://app:pw@h1,h2/app",
    "postgresql://app:pw@[::1]:5432/app",
    "postgresql://app:pw@[::1],[fe80::1]:5433/app",
    "postgresql://app:p:w@db/app",
    "postgresql://app:@db/app",
    "postgresql://:pw@db/app",
    "postgresql://db",
    "postgresql://",
    "postgresql://db:/app",
    "postgresql://app:pw@db/app?connect_timeout=5&keepalives=1&",
    "postgresql://app:pw@db/app?ssl=true",
    "postgresql://app:pw@db/app?requiressl=1",
    "postgresql://app@db/app?password=in%20the%20query",
    "postgresql://app:pw@db/a%2Fb#c",
    "postgresql://app:p%C3%A9%25@db/app",
    "postgresql://app:p\u00e9#?@db/app",
    "postgresql://app:pw@db/app?application_name=job@pod",  # a raw '@' in a query value, as libpq and psql take it
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_forms_read_as_libpq_reads_them(url: str) -> None:
    assert database_url.parse("DATABASE_URL", url) == conninfo_to_dict(url)


def test_several_hosts_are_described_host_by_host() -> None:
    db = database_config({"DATABASE_URL": "postgresql://app:pw@h1:5432,h2:5433/app"})
    assert db.description == "app@h1:5432,h2:5433/app"
    db = database_config({"DATABASE_URL": "postgresql://app:pw@h1,h2:5433/app"})
    assert db.description == "app@h1:5432,h2:5433/app"


SECRET = "Hunter2Secret"


@pytest.mark.parametrize(("url", "message"), [
    (f"postgres://app:{SECRET}%zz@db/app", "DATABASE_URL is malformed: the password contains '%' not followed by "
                                           "two hex digits; percent-encode special characters (% -> %25, "
                                           "space -> %20, @ -> %40"),
    (f"postgres://app:{SECRET}%@db/app", "the password contains '%' not followed by two hex digits"),
    (f"postgres://app:{SECRET} x@db/app", "the password contains a space"),
    (f"postgres://app: {SECRET}@db/app", "the password contains a space"),
    (f"postgres://app:{SECRET}%00@db/app", "the password contains %00"),
    (f"postgres://app:{SECRET}%ff@db/app", "the password is not UTF-8 once percent-decoded"),
    (f"postgres://app:{SECRET}\udcff@db/app", "the password is not UTF-8 once percent-decoded"),
    (f"postgres://app:{SECRET}@x@db/app", "an '@' may only separate the user name and password from the host"),
    (f"postgres://app:{SECRET}/x@db/app", "an '@' may only separate the user name and password from the host"),
    (f"postgres://app:{SECRET}/db", "DATABASE_URL has an invalid port: use a number between 1 and 65535"),
    (f"postgres://{SECRET}%zz:pw@db/app", "the user name contains '%' not followed by two hex digits"),
    (f"postgres://app@db/app?password={SECRET}%zz", "the password contains '%' not followed by two hex digits"),
    (f"postgres://app@db/app?sslmode=require&password={SECRET}=x", "query parameter 2 has a second '='"),
])
def test_malformed_urls_never_quote_the_user_or_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        database_config({"DATABASE_URL": url})
    assert message in str(raised.value)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://root:pw@localhost/app", "DATABASE_URL has the unsupported scheme 'mysql'"),
    ("my:pw@sql://x", "DATABASE_URL has the unsupported scheme: use"),
    ("localhost:5432/app", "DATABASE_URL is not a URL"),
    ("postgres://u:pw@db:0/app", "DATABASE_URL has an invalid port: use a number between 1 and 65535"),
    ("postgres://u:pw@db:65536/app", "invalid port"),
    ("postgres://u:pw@db:99999999999999999999/app", "invalid port"),
    ("postgres://u:pw@db/app?port=0", "invalid port"),
    ("postgres://u:pw@h1:5432,h2:x/app", "invalid port"),
    ("postgres://u:pw@db/app?port=5432,5433", "names 1 host(s) but 2 ports"),
    ("postgres://u:pw@[::1/app", "an IPv6 host has no closing ']'"),
    ("postgres://u:pw@[]/app", "an IPv6 host is empty"),
    ("postgres://u:pw@[::1]x/app", "an IPv6 host's ']' must be followed by"),
    ("postgres://u:pw@db/app?colour=blue", "DATABASE_URL has the unknown query parameter 'colour'"),
    ("postgres://u:pw@db/app?sslmode", "query parameter 1 has no '='"),
    ("postgres://u:pw@db/a%zz", "the database name contains '%' not followed by two hex digits"),
    ("postgres://u:pw@d%zz/app", "the host contains '%' not followed by two hex digits"),
    ("postgres://u:pw@db/a@pp", "an '@' may only separate"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        database_config({"DATABASE_URL": url})
    assert message in str(raised.value)
    assert ":pw" not in str(raised.value)


def test_pgport_is_checked_when_the_url_has_no_port() -> None:
    with pytest.raises(ConfigError, match=r"^PGPORT has an invalid port"):
        database_config({"DATABASE_URL": "postgres://u:pw@db/app", "PGPORT": "0"})
    assert database_config({"DATABASE_URL": "postgres://u:pw@db:5433/app", "PGPORT": "0"}).params["port"] == "5433"
    assert database_config({"PGHOST": "db", "PGPORT": "5433"}).description == "db:5433/"


SPECIALS = ["%", "%4", "%41", "%zz", "%00", "%ff", "%C3%A9", " ", "@", "/", ":", "?", "&", "=", "#", "[", "]", ",",
            "\u00e9"]


def _part(rng: random.Random, size: int, special: float = 0.15) -> str:
    """Mostly ordinary characters, some of them special to libpq's URL parser."""
    return "".join(rng.choice(SPECIALS) if rng.random() < special else rng.choice("aZ09-._~")
                   for _ in range(rng.randint(0, size)))


def _random_url(rng: random.Random) -> str:
    """A URL in libpq's grammar, each part drawn from valid and invalid choices, sometimes corrupted."""
    userinfo = rng.choice(["", "USRTOKEN@", "USRTOKEN:@", ":PWDTOKEN@", "USRTOKEN:PWDTOKEN@"])
    userinfo = userinfo.replace("USRTOKEN", "USRTOKEN" + _part(rng, 4)).replace("PWDTOKEN", "PWDTOKEN" + _part(rng, 6))
    hosts = ",".join(rng.choice(["db", "", "[::1]", "[]", "[::1", "[fe80::1]x", "h%2Fx", _part(rng, 4)])
                     + rng.choice(["", ":", ":5432", ":0", ":65536", ":x", ":%35", ":" + _part(rng, 3)])
                     for _ in range(rng.choice([1, 1, 2, 3])))
    path = rng.choice(["", "/", "/app", "/a%2Fb", "/" + _part(rng, 5)])
    params = ["sslmode=require", "ssl=true", "ssl=false", "requiressl=1", "colour=blue", "a", "a=b=c", "",
              "options=-c%20x%3D1", "port=5433,5434", "host=h1,h2", "password=PWDTOKEN" + _part(rng, 4),
              "application_name=" + _part(rng, 4)]
    query = rng.choice(["", "?", "?" + "&".join(rng.choice(params) for _ in range(rng.randint(1, 3)))])
    url = f"{rng.choice(['postgres', 'postgresql'])}://{userinfo}{hosts}{path}{query}"
    if rng.random() < 0.2:  # one stray character anywhere after the scheme
        at = rng.randint(len("postgres://"), len(url))
        url = url[:at] + rng.choice(SPECIALS) + url[at:]
    return url


def test_fuzzed_urls_agree_with_libpq_and_never_quote_the_userinfo() -> None:
    """What we accept, libpq reads the same (libpq's parse of a URL we accept never fails); what we refuse, we
    refuse without quoting the user name or password (marked with tokens that appear nowhere else)."""
    rng = random.Random(20211103022310)
    agreed = refused = 0
    for _ in range(3000):
        url = _random_url(rng)
        try:
            ours = database_url.parse("DATABASE_URL", url)
        except ConfigError as exc:
            refused += 1
            message = str(exc)
        else:
            agreed += 1
            assert ours == conninfo_to_dict(url), url
            continue
        assert "USRTOKEN" not in message and "PWDTOKEN" not in message, (url, message)
    assert agreed > 200 and refused > 200, (agreed, refused)  # both paths were exercised


# --- DATABASE_PASSWORD_FILE -----------------------------------------------------------------------------

def _url_with_password_file(path: Path | str) -> dict[str, str]:
    return {"DATABASE_URL": "postgres://app:in-the-url@db/app", "DATABASE_PASSWORD_FILE": str(path)}


@pytest.mark.parametrize(("content", "password"), [
    (b"from-the-secret\n", "from-the-secret"), (b"no-newline", "no-newline"), (b"crlf\r\n", "crlf"),
    (b" spaces kept \n", " spaces kept "), ("p\u00e9#%@:/\n".encode(), "p\u00e9#%@:/"),
    (b"x" * PASSWORD_FILE_MAX, "x" * PASSWORD_FILE_MAX),
])
def test_password_file_overrides_the_url(tmp_path: Path, content: bytes, password: str) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(content)
    assert database_config(_url_with_password_file(secret)).params["password"] == password


def test_password_file_as_kubernetes_mounts_it(tmp_path: Path) -> None:
    """A Secret volume: `password -> ..data/password`, `..data -> ..2024_01_01_00_00_00.123/`."""
    version = tmp_path / "..2024_01_01_00_00_00.123"
    version.mkdir()
    (version / "password").write_text("mounted\n")
    (tmp_path / "..data").symlink_to(version.name)
    (tmp_path / "password").symlink_to("..data/password")
    assert database_config(_url_with_password_file(tmp_path / "password")).params["password"] == "mounted"


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "is empty"), (b"\n", "is empty"), (b"one\ntwo\n", "holds more than one line: put only the password in it"),
    (b"nul\x00byte", "contains a NUL character, which no PostgreSQL password can hold"),
    (b"\xff\xfe not utf-8", "is not UTF-8 text"),
    (b"x" * (PASSWORD_FILE_MAX + 1), f"is larger than {PASSWORD_FILE_MAX} bytes"),
])
def test_bad_password_files(tmp_path: Path, content: bytes, problem: str) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        database_config(_url_with_password_file(secret))
    assert str(raised.value) == f"DATABASE_PASSWORD_FILE={secret} {problem}"


def test_password_file_content_is_never_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"Hunter2Secret\nsecond line\n")
    with pytest.raises(ConfigError) as raised:
        database_config(_url_with_password_file(secret))
    assert "Hunter2" not in str(raised.value) and "second" not in str(raised.value)


def test_special_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    cases = {str(fifo): "is a FIFO: it must be a regular file", "/dev/zero": "is a character device",
             str(tmp_path): "is a directory", str(loop): "cannot be read: a symlink loop",
             str(tmp_path / "absent"): "cannot be read: No such file or directory"}
    for path, problem in cases.items():
        started = time.monotonic()
        with pytest.raises(ConfigError) as raised:
            database_config(_url_with_password_file(path))
        assert str(raised.value).startswith(f"DATABASE_PASSWORD_FILE={path} {problem}")
        assert time.monotonic() - started < 2, f"{path}: a special file must be refused at once"


def test_a_fifo_with_a_writer_is_refused_too(tmp_path: Path) -> None:
    """Even with a writer that never stops, nothing is read: the check is on the file's type."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_RDWR)  # O_RDWR: never blocks, keeps the FIFO open for writing
        try:
            while not stop.wait(0.01):
                with contextlib.suppress(BlockingIOError):
                    os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConfigError, match="is a FIFO"):
            read_text_file("X", fifo, 16)
    finally:
        stop.set()
        thread.join(5)


def test_no_password_in_the_password_file_path_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_PASSWORD_FILE=.* cannot be read"):
        database_config(_url_with_password_file(tmp_path / "absent"))


# --- PG* variables and application_name -----------------------------------------------------------------

def test_pg_variables_without_url() -> None:
    db = database_config({"PGHOST": "db.internal", "PGUSER": "app", "PGDATABASE": "app"})
    assert "host" not in db.params  # libpq reads PG* itself
    assert db.description == "app@db.internal:5432/app"


def test_user_application_name_is_kept() -> None:
    db = database_config({"DATABASE_URL": "postgres://db/app?application_name=release-42"})
    assert db.params["application_name"] == "release-42"


def test_percent_encoded_url_round_trip() -> None:
    for password in ["s3cr3t:p@ss/w?rd", "100% sure", "e", "p\u00e9 #&="]:
        url = f"postgres://app:{quote(password, safe='')}@db/app"
        assert database_config({"DATABASE_URL": url}).params["password"] == password
