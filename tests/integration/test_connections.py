"""Reaching the database: waiting for it, refusing bad credentials at once, SSL, password files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import HEAD, query, require_debian_postgres, run_migrator, start_migrator
from tests.postgres import SUPERUSER_PASSWORD, DebianServer, free_port, make_ca_and_server_cert


def versions(url: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT version_num FROM alembic_version")]


def test_waits_for_a_database_that_starts_later(project: Path) -> None:
    require_debian_postgres()
    server = DebianServer(start=False)
    try:
        proc = start_migrator(["migrate"], cwd=project, database_url=server.admin_url,
                              MIGRATOR_CONNECT_TIMEOUT="60")
        time.sleep(3)
        assert proc.poll() is None, "migrate gave up before the server started"
        server.start()
        code = proc.wait(timeout=60)
        _, err = proc.communicate()
        assert code == 0, err
        assert "waiting for database postgres@127.0.0.1" in err
        assert SUPERUSER_PASSWORD not in err
        assert versions(server.admin_url) == [HEAD]
    finally:
        server.destroy()


def test_wrong_password_fails_at_once(project: Path, tcp_server: DebianServer) -> None:
    url = f"postgresql://postgres:{quote('not-the-password')}@127.0.0.1:{tcp_server.port}/postgres"
    started = time.monotonic()
    result = run_migrator(["migrate"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="60")
    assert result.returncode == 3
    assert time.monotonic() - started < 30, "a failed authentication must not be retried until the timeout"
    assert "waiting for database" not in result.stderr
    [line] = result.stderr.splitlines()
    assert f"cannot connect to postgres@127.0.0.1:{tcp_server.port}/postgres" in line
    assert 'password authentication failed for user "postgres"' in line
    assert "not-the-password" not in result.stderr


def test_unreachable_host_exits_3_after_the_timeout(project: Path) -> None:
    url = f"postgres://app:secret-pw@127.0.0.1:{free_port()}/app"
    started = time.monotonic()
    result = run_migrator(["migrate"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="2")
    assert result.returncode == 3
    assert time.monotonic() - started >= 2
    assert "unreachable after 2s" in result.stderr.splitlines()[-1]
    assert "Connection refused" in result.stderr
    assert "secret-pw" not in result.stderr


def test_unresolvable_host_is_waited_for_then_fails(project: Path) -> None:
    result = run_migrator(["status"], cwd=project, database_url="postgres://u:pw@db.invalid:5432/app",
                          MIGRATOR_CONNECT_TIMEOUT="1")
    assert result.returncode == 3
    assert 'could not translate host name "db.invalid" to address' in result.stderr.splitlines()[-1]


def test_article_url_form_and_percent_encoded_password(project: Path, tcp_server: DebianServer) -> None:
    """postgres://, postgresql:// and postgresql+psycopg:// with a password full of URL-special characters."""
    name = tcp_server.create_database()
    try:
        encoded = quote(SUPERUSER_PASSWORD, safe="")
        for scheme in ("postgres", "postgresql", "postgresql+psycopg"):
            url = f"{scheme}://postgres:{encoded}@localhost:{tcp_server.port}/{name}"
            result = run_migrator(["status", "--json"], cwd=project, database_url=url)
            assert result.returncode == 0, result.stderr
        assert run_migrator(["migrate"], cwd=project, database_url=url).returncode == 0
    finally:
        tcp_server.drop_database(name)


def test_password_file(project: Path, tcp_server: DebianServer, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SUPERUSER_PASSWORD + "\n")
    url = f"postgresql://postgres@127.0.0.1:{tcp_server.port}/postgres"
    result = run_migrator(["status", "--json"], cwd=project, database_url=url,
                          DATABASE_PASSWORD_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    assert run_migrator(["status"], cwd=project, database_url=url, DATABASE_PASSWORD_FILE=str(wrong)).returncode == 3


# --- SSL ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DebianServer, Path]]:
    require_debian_postgres()
    certs = tmp_path_factory.mktemp("certs")
    ca = make_ca_and_server_cert(certs)
    server = DebianServer(ssl_dir=certs)
    yield server, ca
    server.destroy()


def test_ssl_verify_full_in_the_url(project: Path, ssl_server: tuple[DebianServer, Path]) -> None:
    server, ca = ssl_server
    url = (f"postgres://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@localhost:{server.port}/postgres"
           f"?sslmode=verify-full&sslrootcert={ca}")
    result = run_migrator(["migrate"], cwd=project, database_url=url)
    assert result.returncode == 0, result.stderr
    used_ssl = query(server.admin_url + "?sslmode=require",
                     "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                     "WHERE pid = pg_backend_pid()")
    assert used_ssl == [(True,)]


def test_ssl_through_pgssl_variables(project: Path, ssl_server: tuple[DebianServer, Path]) -> None:
    server, ca = ssl_server
    url = f"postgres://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@localhost:{server.port}/postgres"
    result = run_migrator(["status", "--json"], cwd=project, database_url=url, PGSSLMODE="verify-full",
                          PGSSLROOTCERT=str(ca))
    assert result.returncode == 0, result.stderr


def test_ssl_with_an_untrusted_ca_fails_clearly(project: Path, ssl_server: tuple[DebianServer, Path],
                                                tmp_path: Path) -> None:
    server, _ = ssl_server
    other_ca = make_ca_and_server_cert(tmp_path)
    url = (f"postgres://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@localhost:{server.port}/postgres"
           f"?sslmode=verify-full&sslrootcert={other_ca}")
    result = run_migrator(["status"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="30")
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert "certificate verify failed" in line


def test_ssl_required_against_a_server_without_ssl(project: Path, tcp_server: DebianServer) -> None:
    url = (f"postgres://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@127.0.0.1:{tcp_server.port}/postgres"
           "?sslmode=require")
    result = run_migrator(["migrate"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="30")
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert "server does not support SSL, but SSL was required" in line


@pytest.mark.parametrize(("url_tail", "message"), [
    ("?options=-c%20nosuch%3D1", 'unrecognized configuration parameter "nosuch"'),
    ("?options=-c%20lock_timeout%3Dsoon", 'invalid value for parameter "lock_timeout"'),
])
def test_configuration_the_server_refuses_is_not_retried(project: Path, tcp_server: DebianServer, url_tail: str,
                                                         message: str) -> None:
    url = f"postgresql://postgres:{quote(SUPERUSER_PASSWORD, safe='')}@127.0.0.1:{tcp_server.port}/postgres{url_tail}"
    started = time.monotonic()
    result = run_migrator(["migrate"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="60")
    assert result.returncode == 2, result.stderr  # configuration: a retry cannot fix it
    assert time.monotonic() - started < 10, "a setting the server refuses must not be retried"
    [line] = result.stderr.splitlines()
    assert message in line


def test_no_password_supplied_is_not_retried(project: Path, tcp_server: DebianServer) -> None:
    url = f"postgresql://postgres@127.0.0.1:{tcp_server.port}/postgres"
    started = time.monotonic()
    result = run_migrator(["status"], cwd=project, database_url=url, MIGRATOR_CONNECT_TIMEOUT="60")
    assert result.returncode == 3
    assert time.monotonic() - started < 10
    [line] = result.stderr.splitlines()
    assert "no password supplied" in line
