"""The example app of the seed article (Phoenix's `hello_migrations`), reduced to what the images need.

A users list over HTTP, backed by the `users` table that the migrator creates and seeds. It owns no schema:
no migrations, no Alembic, no SQLAlchemy; stdlib http.server and psycopg only.

    GET  /users     HTML, or JSON with `Accept: application/json` or `?format=json`
    POST /users     form or JSON body: name, email, bio, number_of_pets -> 201 (400 bad input, 409 email taken)
    GET  /healthz   200 when the database answers `SELECT 1`, else 503 with a one-line reason

Environment: PORT (4000); DATABASE_URL (postgres://, postgresql:// or postgresql+psycopg://) or libpq's
PG* variables; DATABASE_PASSWORD_FILE (a mounted Secret, overrides the URL's password);
APP_DB_TIMEOUT (seconds, 3): bound on connecting and on each query, so that no request hangs.
"""

from __future__ import annotations

import html
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

MAX_BODY = 64 * 1024
COLUMNS = ("id", "name", "email", "bio", "number_of_pets")
SCHEMES = {"postgres": "postgresql", "postgresql": "postgresql", "postgresql+psycopg": "postgresql"}


class BadInputError(ValueError):
    """The client sent something the app cannot accept: answered with 400 and this message."""


class ConflictError(ValueError):
    """The user collides with one already there (the unique email index): answered with 409."""


class DatabaseUnavailableError(RuntimeError):
    """The database cannot answer: answered with 503 and this message (one line, no secret)."""


@dataclass(frozen=True)
class DatabaseConfig:
    """How to reach the database: a libpq conninfo or URL ('' means PG* variables) and a password."""

    conninfo: str
    password: str | None
    timeout: int
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DatabaseConfig:
        password = None
        if env.get("DATABASE_PASSWORD_FILE"):
            with open(env["DATABASE_PASSWORD_FILE"], encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        # libpq's connect_timeout has a floor of 2 seconds.
        timeout = max(2, int(env.get("APP_DB_TIMEOUT", "3")))
        url = normalize_url(env.get("DATABASE_URL", ""))
        secrets = tuple(s for s in (password, *url_passwords(url), env.get("PGPASSWORD")) if s)
        return cls(url, password, timeout, secrets)

    def describe(self, error: BaseException) -> str:
        """The error's first line with every known password blanked out: libpq names host, port and
        cause, but a malformed URL can make it quote a piece of the URL."""
        text = one_line(error)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def connect(self) -> psycopg.Connection[Any]:
        kwargs: dict[str, Any] = {"connect_timeout": self.timeout, "autocommit": True,
                                  "application_name": "migrator-example-app",
                                  "options": f"-c statement_timeout={self.timeout * 1000}"}
        if self.password is not None:
            kwargs["password"] = self.password
        try:
            return psycopg.connect(self.conninfo, **kwargs)
        except psycopg.Error as e:
            raise DatabaseUnavailableError(f"database unreachable: {self.describe(e)}") from None


def normalize_url(url: str) -> str:
    """A URL libpq accepts: SQLAlchemy's `postgresql+psycopg://` and Heroku's `postgres://` become `postgresql://`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme not in SCHEMES:
        raise ValueError(f"DATABASE_URL: unsupported scheme {scheme!r} (use postgresql://)")
    return f"{SCHEMES[scheme]}://{rest}"


def url_passwords(url: str) -> list[str]:
    """The URL's password as written and decoded, for redaction."""
    try:
        raw = urlsplit(url).password
    except ValueError:
        return []
    return [raw, unquote(raw)] if raw else []


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- the users ------------------------------------------------------------------------------------------

def list_users(db: DatabaseConfig) -> list[dict[str, Any]]:
    with db.connect() as conn:
        try:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM users ORDER BY id").fetchall()  # noqa: S608
        except psycopg.errors.UndefinedTable:
            raise DatabaseUnavailableError("database not migrated: table users does not exist") from None
        except psycopg.Error as e:
            raise DatabaseUnavailableError(f"database error: {db.describe(e)}") from None
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def add_user(db: DatabaseConfig, user: dict[str, Any]) -> dict[str, Any]:
    fields = [c for c in COLUMNS if c != "id"]
    sql = (f"INSERT INTO users ({', '.join(fields)}) VALUES ({', '.join(['%s'] * len(fields))}) "  # noqa: S608
           f"RETURNING {', '.join(COLUMNS)}")
    with db.connect() as conn:
        try:
            row = conn.execute(sql, [user[f] for f in fields]).fetchone()
        except psycopg.errors.UndefinedTable:
            raise DatabaseUnavailableError("database not migrated: table users does not exist") from None
        except psycopg.errors.UniqueViolation:
            raise ConflictError("email: already taken") from None
        except psycopg.errors.IntegrityError as e:
            raise BadInputError(db.describe(e)) from None
        except psycopg.Error as e:
            raise DatabaseUnavailableError(f"database error: {db.describe(e)}") from None
    assert row is not None, "INSERT ... RETURNING returns the row"
    return dict(zip(COLUMNS, row, strict=True))


def validate_user(data: Mapping[str, Any]) -> dict[str, Any]:
    """The four fields, checked and typed; raises BadInputError naming the first bad one."""
    name = _text(data, "name", required=True)
    email = _text(data, "email", required=True)
    if "@" not in email:
        raise BadInputError("email: must contain @")
    return {"name": name, "email": email, "bio": _text(data, "bio", required=False) or None,
            "number_of_pets": _pets(data.get("number_of_pets"))}


def _text(data: Mapping[str, Any], field: str, *, required: bool) -> str:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise BadInputError(f"{field}: required")
        return ""
    if not isinstance(value, str):
        raise BadInputError(f"{field}: must be a string")
    if len(value) > 255:
        raise BadInputError(f"{field}: at most 255 characters")
    return value.strip()


def _pets(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadInputError("number_of_pets: must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInputError("number_of_pets: must be a whole number") from None
    if isinstance(value, float) and value != number:
        raise BadInputError("number_of_pets: must be a whole number")
    if not 0 <= number <= 1_000_000:
        raise BadInputError("number_of_pets: must be between 0 and 1000000")
    return number


# --- HTTP -----------------------------------------------------------------------------------------------

def _cell(value: object) -> str:
    return html.escape("" if value is None else str(value))


def render_users(users: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(u[c])}</td>" for c in COLUMNS) + "</tr>" for u in users)
    form = ('<form method="post" action="/users">'
            + "".join(f'<label>{f} <input name="{f}"></label> ' for f in COLUMNS if f != "id")
            + '<button type="submit">Add user</button></form>')
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Listing Users</title></head>"
            f"<body><h1>Listing Users</h1><table><tr>{head}</tr>{rows}</table>{form}</body></html>")


class Handler(BaseHTTPRequestHandler):
    server_version = "migrator-example-app"
    db: DatabaseConfig  # set on the class by serve()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._healthz()
        elif path == "/users":
            self._guard(lambda: self._send_users(list_users(self.db)))
        else:
            self._send(HTTPStatus.NOT_FOUND, "not found\n")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/users":
            self._send(HTTPStatus.NOT_FOUND, "not found\n")
            return
        self._guard(self._create_user)

    def _healthz(self) -> None:
        try:
            with self.db.connect() as conn:
                conn.execute("SELECT 1")
        except DatabaseUnavailableError as e:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{e}\n")
        except psycopg.Error as e:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"database error: {self.db.describe(e)}\n")
        else:
            self._send(HTTPStatus.OK, "ok\n")

    def _create_user(self) -> None:
        user = add_user(self.db, validate_user(self._read_body()))
        if self._wants_json():
            self._send_json(HTTPStatus.CREATED, user)
        else:
            self._send(HTTPStatus.CREATED, render_users([user]), "text/html; charset=utf-8")

    def _guard(self, action: Callable[[], None]) -> None:
        """Run ACTION, answering the app's own errors with their status and one line."""
        try:
            action()
        except BadInputError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
        except ConflictError as e:
            self._error(HTTPStatus.CONFLICT, str(e))
        except DatabaseUnavailableError as e:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(e))

    def _read_body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadInputError("Content-Length: not a number") from None
        if not 0 <= length <= MAX_BODY:
            raise BadInputError(f"body: at most {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        ctype = self.headers.get_content_type()
        if ctype == "application/json":
            try:
                data = json.loads(raw or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BadInputError("body: not valid JSON") from None
            if not isinstance(data, dict):
                raise BadInputError("body: expected a JSON object")
            return data
        if ctype == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        raise BadInputError("Content-Type: use application/json or application/x-www-form-urlencoded")

    def _wants_json(self) -> bool:
        """JSON for `?format=json`, `Accept: application/json`, or a JSON request body; else HTML."""
        query = parse_qs(urlsplit(self.path).query)
        return (query.get("format") == ["json"] or "application/json" in self.headers.get("Accept", "")
                or (self.command == "POST" and self.headers.get_content_type() == "application/json"))

    def _send_users(self, users: list[dict[str, Any]]) -> None:
        if self._wants_json():
            self._send_json(HTTPStatus.OK, users)
        else:
            self._send(HTTPStatus.OK, render_users(users), "text/html; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        if self._wants_json():
            self._send_json(status, {"error": message})
        else:
            self._send(status, message + "\n")

    def _send_json(self, status: HTTPStatus, body: object) -> None:
        self._send(status, json.dumps(body) + "\n", "application/json")

    def _send(self, status: HTTPStatus, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _stop(signum: int, _frame: FrameType | None) -> None:
    # Raised in the main thread, inside serve_forever's wait: the server closes its socket and exits 0.
    raise SystemExit(0)


def serve(env: Mapping[str, str]) -> None:
    Handler.db = DatabaseConfig.from_env(env)
    port = int(env.get("PORT", "4000"))
    server = ThreadingHTTPServer((env.get("HOST", ""), port), Handler)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"listening on port {port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("stopped", file=sys.stderr, flush=True)


def main() -> int:
    try:
        serve(os.environ)
    except (ValueError, OSError) as e:
        print(f"users_app: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
