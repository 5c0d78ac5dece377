"""The example app's image, run as the chart runs it, against a database the migrator image prepared."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.conftest import assert_no_secret, query, require_debian_postgres
from tests.docker import Container, run_container, start_container, wait_for
from tests.postgres import SUPERUSER_PASSWORD, DebianServer, free_port

pytestmark = pytest.mark.docker


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 15) -> tuple[int, str, str]:
    """(status, content type, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get_content_type(), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read().decode()


def start_app(image: str, containers: list[Container], env: dict[str, str], **options: Any) -> str:
    """Start the app container on a free port and wait until it listens; returns its base URL."""
    port = free_port()
    container = start_container(image, env={"PORT": str(port), **env}, **options)
    containers.append(container)
    base = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        assert container.running(), f"the app exited:\n{container.logs()}"
        try:
            http("GET", base + "/nothing", timeout=2)
        except OSError:
            return False
        return True

    wait_for(listening, timeout=30, what="the app to listen")
    return base


def post_json(base: str, payload: object) -> tuple[int, str, str]:
    return http("POST", base + "/users", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def test_app_serves_the_seeded_user_and_adds_one(app_image, migrated_database, containers):
    base = start_app(app_image, containers, {"DATABASE_URL": migrated_database})

    status, ctype, body = http("GET", base + "/users")
    assert (status, ctype) == (200, "text/html")
    assert "<td>User1</td>" in body
    assert "The start to my bio" in body

    status, ctype, body = http("GET", base + "/users", headers={"Accept": "application/json"})
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == [{"id": 1, "name": "User1", "email": "user1@example.com",
                                 "bio": "The start to my bio", "number_of_pets": 2}]

    status, _, body = post_json(base, {"name": "User2", "email": "user2@example.com", "number_of_pets": 3})
    assert status == 201, body
    assert json.loads(body)["name"] == "User2"
    form = b"name=User3&email=user3%40example.com&bio=Hi+%3Cthere%3E&number_of_pets=0"
    status, ctype, body = http("POST", base + "/users", form,
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, ctype) == (201, "text/html")
    assert "Hi &lt;there&gt;" in body, "user text must be escaped in HTML"

    status, _, body = http("GET", base + "/users?format=json")
    assert status == 200
    assert [u["name"] for u in json.loads(body)] == ["User1", "User2", "User3"]
    assert query(migrated_database, "SELECT count(*) FROM users") == [(3,)]
    assert_no_secret(containers[0].logs())


@pytest.mark.parametrize("case", [
    ({"email": "x@example.com"}, 400, "name: required"),
    ({"name": "X", "email": "no-at-sign"}, 400, "email: must contain @"),
    ({"name": "X", "email": "x@example.com", "number_of_pets": "many"}, 400, "number_of_pets"),
    ({"name": "X", "email": "x@example.com", "number_of_pets": -1}, 400, "number_of_pets"),
    (["not", "an", "object"], 400, "JSON object"),
    ({"name": "X", "email": "user1@example.com"}, 409, "email: already taken"),
])
def test_bad_users_are_refused_and_nothing_is_added(app_image, migrated_database, containers, case):
    payload, status, message = case
    base = start_app(app_image, containers, {"DATABASE_URL": migrated_database})
    got, ctype, body = post_json(base, payload)
    assert (got, ctype) == (status, "application/json"), body
    assert message in json.loads(body)["error"]
    assert query(migrated_database, "SELECT count(*) FROM users") == [(1,)]


def test_unparsable_body_is_a_400(app_image, migrated_database, containers):
    base = start_app(app_image, containers, {"DATABASE_URL": migrated_database})
    status, _, body = http("POST", base + "/users", b"{not json", {"Content-Type": "application/json"})
    assert status == 400
    assert "not valid JSON" in body
    status, _, body = http("POST", base + "/users", b"name=X", {"Content-Type": "text/plain"})
    assert status == 400
    assert "Content-Type" in body


def test_users_before_migration_is_a_clear_503(app_image, tcp_database_url, containers):
    base = start_app(app_image, containers, {"DATABASE_URL": tcp_database_url})
    status, _, body = http("GET", base + "/users")
    assert status == 503
    assert body.strip() == "database not migrated: table users does not exist"


def test_healthz_follows_the_database_and_never_hangs(app_image, containers):
    """200 while the database answers, 503 with one clear line while it is down, 200 again after."""
    require_debian_postgres()
    server = DebianServer()
    try:
        base = start_app(app_image, containers, {"DATABASE_URL": server.admin_url})
        assert http("GET", base + "/healthz")[::2] == (200, "ok\n")

        server.stop()
        started = time.monotonic()
        status, _, body = http("GET", base + "/healthz", timeout=20)
        assert time.monotonic() - started < 10, "healthz must answer within its connect timeout"
        assert status == 503
        assert body.startswith("database unreachable: "), body
        assert body.count("\n") == 1, "one line"
        assert f"port {server.port} failed" in body, "the reason names where it tried"

        server.start()
        assert http("GET", base + "/healthz")[::2] == (200, "ok\n")
    finally:
        server.destroy()
    assert_no_secret(containers[0].logs())


def test_healthz_gives_up_on_a_silent_database_within_its_timeout(app_image, containers):
    """A peer that accepts TCP but never speaks (a hung server, a black-holing proxy): 503, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        base = start_app(app_image, containers,
                         {"DATABASE_URL": f"postgresql://app@127.0.0.1:{port}/app", "APP_DB_TIMEOUT": "2"})
        started = time.monotonic()
        status, _, body = http("GET", base + "/healthz", timeout=30)
        elapsed = time.monotonic() - started
    assert status == 503
    assert body.startswith("database unreachable: "), body
    assert "timeout" in body
    assert 1.5 < elapsed < 8, f"answered after {elapsed:.1f}s, expected about APP_DB_TIMEOUT=2"


def test_healthz_names_a_wrong_password_without_showing_any(app_image, tcp_server, containers):
    wrong = "wr0ng:" + SUPERUSER_PASSWORD[::-1]
    url = f"postgresql://postgres:{quote(wrong, safe='')}@127.0.0.1:{tcp_server.port}/postgres"
    base = start_app(app_image, containers, {"DATABASE_URL": url})
    status, _, body = http("GET", base + "/healthz")
    assert status == 503
    assert "password authentication failed" in body
    for text in (body, containers[0].logs()):
        assert wrong not in text
        assert quote(wrong, safe="") not in text
        assert_no_secret(text)


def _pg_env(url: str, tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """The URL's parts as libpq PG* variables, the password in a file mounted like a Secret."""
    parts = urlsplit(url)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "password").write_text(unquote(parts.password or "") + "\n")
    secret.chmod(0o755)
    (secret / "password").chmod(0o644)
    env = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port), "PGUSER": parts.username or "",
           "PGDATABASE": parts.path.lstrip("/"), "DATABASE_PASSWORD_FILE": "/var/run/secrets/db/password"}
    return env, [f"{secret}:/var/run/secrets/db:ro"]


@pytest.mark.parametrize("form", ["postgresql+psycopg", "postgres", "pg-vars-and-password-file"])
def test_database_configuration_forms(app_image, migrated_database, containers, tmp_path, form):
    if form == "pg-vars-and-password-file":
        env, volumes = _pg_env(migrated_database, tmp_path)
    else:
        env, volumes = {"DATABASE_URL": form + migrated_database.removeprefix("postgresql")}, []
    base = start_app(app_image, containers, env, volumes=volumes)
    status, _, body = http("GET", base + "/users?format=json")
    assert status == 200, body
    assert json.loads(body)[0]["name"] == "User1"


def test_sigterm_stops_the_app_promptly_and_cleanly(app_image, migrated_database, containers):
    base = start_app(app_image, containers, {"DATABASE_URL": migrated_database})
    assert http("GET", base + "/healthz")[0] == 200
    container = containers[0]
    started = time.monotonic()
    container.stop(grace=20)
    assert time.monotonic() - started < 5, "SIGTERM must stop the app, not docker's SIGKILL after the grace"
    assert container.exit_code() == 0
    assert container.logs().rstrip().endswith("stopped")


def test_bad_port_is_a_configuration_error(app_image):
    proc = run_container(app_image, env={"PORT": "not-a-port"})
    assert proc.returncode == 2
    assert "users_app:" in proc.stderr


def test_app_image_holds_no_migrations_no_alembic_no_sqlalchemy(app_image):
    for module in ("alembic", "sqlalchemy", "migrator"):
        proc = run_container(app_image, ["-c", f"import {module}"], entrypoint="python3")
        assert proc.returncode == 1, module
        assert f"No module named '{module}'" in proc.stderr
    proc = run_container(app_image, ["-c", "import psycopg, users_app; print(psycopg.pq.version())"],
                         entrypoint="python3")
    assert proc.returncode == 0, proc.stderr
    # Every path in the image: none may be a migration script directory, a revision or a seed.
    # As root, for a scan that no directory hides from; -xdev keeps it to the image's own filesystem.
    proc = run_container(app_image, ["/", "-xdev"], entrypoint="find", hardening=False, extra=["--user", "0:0"])
    assert proc.returncode == 0, proc.stderr
    paths = proc.stdout.splitlines()
    assert len(paths) > 1000, "find saw the whole filesystem"
    suspicious = [p for p in paths if any(word in p.lower() for word in
                                          ("alembic", "migration", "seeds", "sqlalchemy", "create_users"))]
    assert suspicious == []
