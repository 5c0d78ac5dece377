"""DATABASE_URL parsed as libpq parses a connection URI, with errors that never quote the user name or password.

libpq's own parser quotes the offending token in its errors, so a password with a stray `%` or space used to
reach the log and the termination message. This module follows libpq's algorithm (conninfo_uri_parse_options
in fe-connect.c) step by step, so the keywords it returns are the ones libpq would have produced, and it
refuses, with one line that names the part at fault but not its text:

- a raw `@` anywhere but between the password and the host, or in a query parameter's value. libpq takes the
  first `@` before the first `/` as the end of the password, so a password with a raw `@` or `/` is silently
  split into user, host, port and database name, which would then be printed (in errors and in every log
  line's description);
- a `%` not followed by two hex digits, `%00`, a raw space (libpq trims spaces at either end of a part and
  refuses them inside), text that is not UTF-8 once percent-decoded;
- ports that are not numbers from 1 to 65535, or that cannot be matched to the hosts;
- query parameters that are not libpq's connection keywords.
"""

from __future__ import annotations

import re
from functools import cache

from migrator.errors import ConfigError

SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}
ENCODE_HINT = "percent-encode special characters (% -> %25, space -> %20, @ -> %40, / -> %2F, : -> %3A ...)"
USAGE = "use postgres://USER:PASSWORD@HOST:PORT/DATABASE"
PORT_MIN, PORT_MAX = 1, 65535
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,30}$")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"^[0-9]+$")
_HOST_END = ":/?,"


def parse(var: str, url: str) -> dict[str, str]:
    """libpq's connection keywords for `url` (the password included); ConfigError names the part at fault."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{var} is not a URL: {USAGE}")
    if scheme.lower() not in SCHEMES:
        shown = f" {scheme!r}" if _SCHEME.match(scheme) else ""  # anything else may be part of a password
        raise ConfigError(f"{var} has the unsupported scheme{shown}: use postgres://, postgresql:// "
                          "or postgresql+psycopg://")
    params: dict[str, str] = {}
    rest = _userinfo(var, rest, params)
    rest = _hosts(var, rest, params)
    if rest.startswith("/"):
        path, question, query = rest[1:].partition("?")
        if path:
            params["dbname"] = _decode(var, path, "the database name")
        rest = question + query
    if rest.startswith("?"):
        _query(var, rest[1:], params)
    check_ports(var, params)
    return params


def _userinfo(var: str, rest: str, params: dict[str, str]) -> str:
    """Store user and password; the text after them (libpq: the first `@` before the first `/` ends them)."""
    slash = rest.find("/")
    at = rest.find("@", 0, slash if slash >= 0 else len(rest))
    # A raw '@' in a query parameter's value (application_name=job@pod) is libpq's too; anywhere else between the
    # user name and the query it would split a password into host, port and database name.
    if "@" in (rest[at + 1:] if at >= 0 else rest).split("?", 1)[0]:
        raise ConfigError(f"{var} is malformed: an '@' may only separate the user name and password from the "
                          f"host; {ENCODE_HINT}")
    if at < 0:
        return rest
    user, colon, password = rest[:at].partition(":")
    if user:
        params["user"] = _decode(var, user, "the user name")
    if colon and password:
        params["password"] = _decode(var, password, "the password")
    return rest[at + 1:]


def _hosts(var: str, rest: str, params: dict[str, str]) -> str:
    """Store host and port lists (`h1:5432,[::1]:5433`) as libpq joins them; the text after them."""
    hosts: list[str] = []
    ports: list[str] = []
    i = 0
    while True:
        if rest.startswith("[", i):
            end = rest.find("]", i + 1)
            if end < 0:
                raise ConfigError(f"{var} is malformed: an IPv6 host has no closing ']'")
            if end == i + 1:
                raise ConfigError(f"{var} is malformed: an IPv6 host is empty ('[]')")
            hosts.append(rest[i + 1:end])
            i = end + 1
            if i < len(rest) and rest[i] not in _HOST_END:
                raise ConfigError(f"{var} is malformed: an IPv6 host's ']' must be followed by ':PORT', '/', "
                                  "'?' or ','")
        else:
            end = _find_any(rest, _HOST_END, i)
            hosts.append(rest[i:end])
            i = end
        port = ""
        if rest.startswith(":", i):
            end = _find_any(rest, "/?,", i + 1)
            port, i = rest[i + 1:end], end
        ports.append(port)
        if not rest.startswith(",", i):
            break
        i += 1
    host, port = ",".join(hosts), ",".join(ports)
    if host:
        params["host"] = _decode(var, host, "the host")
    if port:
        params["port"] = _decode(var, port, "the port")
    return rest[i:]


def _find_any(text: str, stops: str, start: int) -> int:
    """Index of the first character of `stops` at or after `start`, else len(text)."""
    for i in range(start, len(text)):
        if text[i] in stops:
            return i
    return len(text)


def _query(var: str, query: str, params: dict[str, str]) -> None:
    """`key=value&...`: libpq's keywords only; `ssl=true` and `requiressl` as libpq translates them."""
    items = query.split("&")
    if items[-1] == "":  # libpq stops at the end of the text: a trailing '&' (or a bare '?') ends the list
        items.pop()
    for number, item in enumerate(items, start=1):
        raw_key, eq, raw_value = item.partition("=")
        if not eq or "=" in raw_value:
            problem = "has no '='" if not eq else "has a second '=' (percent-encode it: = -> %3D)"
            raise ConfigError(f"{var} is malformed: query parameter {number} {problem}; use NAME=VALUE pairs "
                              "joined by '&'")
        key = _decode(var, raw_key, f"query parameter {number}'s name")
        what = "the password" if key == "password" else f"the value of query parameter {key!r}"
        value = _decode(var, raw_value, what)
        if key == "ssl" and value == "true":  # libpq's JDBC compatibility
            key, value = "sslmode", "require"
        elif key == "requiressl":  # libpq's backward compatibility
            key, value = "sslmode", "require" if value.startswith("1") else "prefer"
        if key not in libpq_keywords():
            raise ConfigError(f"{var} has the unknown query parameter {key!r}: use libpq's connection "
                              "parameters (sslmode, sslrootcert, application_name, options, host, port, ...)")
        params[key] = value


def _decode(var: str, text: str, what: str) -> str:
    """libpq's percent-decoding, refusing what libpq refuses or would trim (`what` names the part, not its text)."""
    problem = None
    if " " in text:
        problem = "contains a space"
    elif _PERCENT.search(text):
        problem = "contains '%' not followed by two hex digits"
    elif "%00" in text:
        problem = "contains %00 (NUL), which libpq refuses"
    if problem is None:
        try:
            return _unquote(text)
        except UnicodeError:  # undecodable bytes, percent-encoded or from a non-UTF-8 environment
            problem = "is not UTF-8 once percent-decoded"
    raise ConfigError(f"{var} is malformed: {what} {problem}; {ENCODE_HINT}")


def _unquote(text: str) -> str:
    if "%" not in text:
        text.encode("utf-8")  # raises for the surrogates of bytes that were not UTF-8 in the environment
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            raw += text[i].encode("utf-8", "surrogateescape")
            i += 1
    return raw.decode("utf-8")


def check_ports(var: str, params: dict[str, str]) -> None:
    """Each port 1..65535, one for all hosts or one per host; empty entries are libpq's default port."""
    port = params.get("port")
    if port is None:
        return
    ports = port.split(",")
    # Not quoted: without an '@', "postgres://user:password/db" reads as host `user`, port `password`.
    if any(p and not (_DIGITS.match(p) and len(p) <= 5 and PORT_MIN <= int(p) <= PORT_MAX) for p in ports):
        raise ConfigError(f"{var} has an invalid port: use a number between {PORT_MIN} and {PORT_MAX}, as in "
                          "postgres://USER:PASSWORD@HOST:PORT/DATABASE")
    hosts = len(params.get("host", "").split(","))
    if len(ports) > 1 and len(ports) != hosts:
        raise ConfigError(f"{var} names {hosts} host(s) but {len(ports)} ports: give one port for all hosts or "
                          "one per host (h1:5432,h2:5433)")


@cache
def libpq_keywords() -> frozenset[str]:
    """The connection keywords the installed libpq knows (its list grows with its versions)."""
    from psycopg import pq  # noqa: PLC0415  (psycopg is imported only once a URL has query parameters)

    return frozenset(option.keyword.decode() for option in pq.Conninfo.parse(b""))
