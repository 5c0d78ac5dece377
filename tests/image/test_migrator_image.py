"""The migrator image, run as the chart and `kubectl run` run it, against the TCP test PostgreSQL."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.conftest import assert_no_secret, query
from tests.docker import docker, run_container, start_container, wait_for
from tests.image.conftest import migrate
from tests.postgres import SUPERUSER_PASSWORD, free_port

pytestmark = pytest.mark.docker

FIRST, HEAD = "20211103022310", "20211104101500"
SLOW = "20211105000000"
SLOW_REVISION = f'''"""test only: holds its transaction for a minute, to be interrupted

Revision ID: {SLOW}
Revises: {HEAD}
"""

import sqlalchemy as sa
from alembic import op

revision = "{SLOW}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("slow_marker", sa.Column("id", sa.Integer))
    op.execute("SELECT pg_sleep(60)")


def downgrade() -> None:
    op.drop_table("slow_marker")
'''


def run(image: str, args: list[str], url: str | None, **env: str):
    """The migrator container with ARGS (exactly what `kubectl run ... -- ARGS` passes); secrets checked."""
    values = {"MIGRATOR_CONNECT_TIMEOUT": "10", **env}
    if url is not None:
        values["DATABASE_URL"] = url
    proc = run_container(image, args, env=values)
    assert_no_secret(proc.stdout, proc.stderr)
    return proc


def versions(url: str) -> list[str]:
    return [str(row[0]) for row in query(url, "SELECT version_num FROM alembic_version")]


def table_exists(url: str, name: str) -> bool:
    return query(url, "SELECT to_regclass(%s) IS NOT NULL", name)[0][0] is True


def index_exists(url: str, name: str) -> bool:
    return bool(query(url, "SELECT 1 FROM pg_indexes WHERE indexname = %s", name))


# --- the commands ---------------------------------------------------------------------------------------

def test_default_command_migrates_an_empty_database_with_the_ecto_log(migrator_image, tcp_database_url):
    proc = run(migrator_image, [], tcp_database_url)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    for line in (rf"\[info\] == Running {FIRST} \S+\.upgrade forward$",
                 r"\[info\] create table users$",
                 rf"\[info\] == Migrated {FIRST} in \d+\.\ds$",
                 rf"\[info\] == Running {HEAD} \S+\.upgrade forward$",
                 rf"\[info\] == Migrated {HEAD} in \d+\.\ds$"):
        assert re.search(line, log, re.MULTILINE), f"no line matching {line!r} in:\n{log}"
    assert versions(tcp_database_url) == [HEAD]
    assert table_exists(tcp_database_url, "users")
    assert index_exists(tcp_database_url, "users_email_index")


def test_json_logs_for_log_collectors(migrator_image, tcp_database_url):
    proc = run(migrator_image, ["migrate"], tcp_database_url, MIGRATOR_LOG_FORMAT="json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert records, "migrate logs"
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    assert any(r["event"].startswith(f"== Running {FIRST} ") for r in records)


def test_migrate_again_is_a_no_op(migrator_image, migrated_database):
    proc = run(migrator_image, ["migrate"], migrated_database)
    assert proc.returncode == 0, proc.stderr
    assert "== Running" not in proc.stdout + proc.stderr
    assert versions(migrated_database) == [HEAD]


def test_status_reports_head_and_pending(migrator_image, tcp_database_url):
    proc = run(migrator_image, ["status", "--check"], tcp_database_url)
    assert proc.returncode == 5, "an empty database is not at head"
    migrate(migrator_image, tcp_database_url)
    proc = run(migrator_image, ["status"], tcp_database_url)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"current:\s+{HEAD}", proc.stdout), proc.stdout
    proc = run(migrator_image, ["status", "--json", "--check"], tcp_database_url)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["current"], report["heads"], report["pending"]) == ([HEAD], [HEAD], [])


def test_seed_inserts_user1_once(migrator_image, tcp_database_url):
    migrate(migrator_image, tcp_database_url)
    proc = run(migrator_image, ["seed"], tcp_database_url)
    assert proc.returncode == 0, proc.stderr
    assert query(tcp_database_url, "SELECT name, bio, number_of_pets FROM users") == [
        ("User1", "The start to my bio", 2)]
    assert run(migrator_image, ["seed"], tcp_database_url).returncode == 0
    assert query(tcp_database_url, "SELECT count(*) FROM users") == [(1,)]


def test_rollback_with_the_arguments_kubectl_run_passes(migrator_image, migrated_database):
    """`kubectl run migrator --image=IMG -- rollback REV` keeps the ENTRYPOINT and passes exactly these args."""
    proc = run(migrator_image, ["rollback", FIRST], migrated_database)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"== Running {HEAD} \S+\.downgrade backward", proc.stderr), proc.stderr
    assert versions(migrated_database) == [FIRST]
    assert not index_exists(migrated_database, "users_email_index")
    assert query(migrated_database, "SELECT name FROM users") == [("User1",)], "rollback REV keeps REV's data"


def test_password_file_mounted_like_a_secret(migrator_image, tcp_database_url, tmp_path):
    parts = urlsplit(tcp_database_url)
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o755)
    (secret / "password").write_text(unquote(parts.password or "") + "\n")
    (secret / "password").chmod(0o644)
    url_without_password = tcp_database_url.replace(f":{parts.password}@", "@")
    assert ":" + str(parts.password) not in url_without_password
    proc = run_container(migrator_image, ["migrate"], env={
        "DATABASE_URL": url_without_password, "DATABASE_PASSWORD_FILE": "/var/run/secrets/db/password"},
        volumes=[f"{secret}:/var/run/secrets/db:ro"])
    assert_no_secret(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert versions(tcp_database_url) == [HEAD]


def test_wait_as_the_app_pods_init_container(migrator_image, tcp_database_url, containers):
    """`migrator wait` holds an app pod until the schema is at head, and never migrates by itself."""
    proc = run(migrator_image, ["wait", "--timeout", "3", "--interval", "1"], tcp_database_url)
    assert proc.returncode == 5, proc.stderr
    assert not table_exists(tcp_database_url, "users"), "wait never migrates"

    waiting = start_container(migrator_image, ["wait", "--timeout", "120", "--interval", "1"],
                              env={"DATABASE_URL": tcp_database_url})
    containers.append(waiting)
    time.sleep(2)
    assert waiting.running(), waiting.logs()
    migrate(migrator_image, tcp_database_url)
    assert waiting.wait(timeout=60) == 0, waiting.logs()
    assert_no_secret(waiting.logs())


def test_sql_renders_offline_without_a_database(migrator_image):
    proc = run(migrator_image, ["sql"], None)
    assert proc.returncode == 0, proc.stderr
    assert "CREATE TABLE users" in proc.stdout
    assert re.search(r"CREATE UNIQUE INDEX CONCURRENTLY (IF NOT EXISTS )?users_email_index", proc.stdout)


# --- exit codes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["bogus"], ["rollback"], ["migrate", "--to"], ["status", "--nope"]])
def test_bad_arguments_exit_2(migrator_image, tcp_database_url, args):
    proc = run(migrator_image, args, tcp_database_url)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip(), "a usage error says what is wrong"
    assert not table_exists(tcp_database_url, "alembic_version")


def test_unknown_revision_exits_2(migrator_image, migrated_database):
    proc = run(migrator_image, ["rollback", "19990101000000"], migrated_database)
    assert proc.returncode == 2, proc.stderr
    assert "19990101000000" in proc.stderr
    assert versions(migrated_database) == [HEAD]


def test_no_database_configured_exits_2(migrator_image):
    proc = run(migrator_image, ["migrate"], None)
    assert proc.returncode == 2
    assert "DATABASE_URL" in proc.stderr


def test_unreachable_database_exits_3_promptly(migrator_image):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    started = time.monotonic()
    proc = run(migrator_image, ["migrate"], url, MIGRATOR_CONNECT_TIMEOUT="2")
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 30
    assert "127.0.0.1" in proc.stderr


def test_wrong_password_exits_3_without_showing_it(migrator_image, tcp_server):
    wrong = "wr0ng:" + SUPERUSER_PASSWORD[::-1]
    url = f"postgresql://postgres:{quote(wrong, safe='')}@127.0.0.1:{tcp_server.port}/postgres"
    proc = run(migrator_image, ["status"], url, MIGRATOR_CONNECT_TIMEOUT="2")
    assert proc.returncode == 3, proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert wrong not in text
        assert quote(wrong, safe="") not in text


# --- concurrency and signals ----------------------------------------------------------------------------

def test_eight_containers_at_once_apply_each_migration_once(migrator_image, tcp_database_url, containers):
    env = {"DATABASE_URL": tcp_database_url, "MIGRATOR_CONNECT_TIMEOUT": "30"}
    containers.extend(start_container(migrator_image, env=env) for _ in range(8))
    codes = [c.wait(timeout=240) for c in containers]
    logs = [c.logs() for c in containers]
    assert_no_secret(*logs)
    assert codes == [0] * 8, "\n---\n".join(logs)
    for revision in (FIRST, HEAD):
        runners = [log for log in logs if f"== Running {revision} " in log]
        assert len(runners) == 1, f"{revision} ran in {len(runners)} containers"
    assert versions(tcp_database_url) == [HEAD]


@pytest.fixture(scope="module")
def slow_image(migrator_image, tmp_path_factory) -> str:
    """The migrator image plus a test-only revision that sleeps in its transaction: built FROM it, as a
    project adds its migrations, so the image under test stays untouched."""
    context: Path = tmp_path_factory.mktemp("slow-image")
    (context / f"{SLOW}_slow.py").write_text(SLOW_REVISION)
    (context / "Dockerfile").write_text(
        f"FROM {migrator_image}\nCOPY {SLOW}_slow.py /app/migrations/versions/\n")
    tag = f"{migrator_image.rsplit(':', 1)[0]}:test-slow"
    docker("build", "--quiet", "--tag", tag, str(context), timeout=300, env={"DOCKER_BUILDKIT": "1"})
    return tag


def test_docker_stop_during_a_slow_migration_exits_143_and_changes_nothing(slow_image, tcp_database_url,
                                                                          containers):
    container = start_container(slow_image, env={"DATABASE_URL": tcp_database_url})
    containers.append(container)
    wait_for(lambda: sleeping(tcp_database_url) or not container.running(), timeout=120,
             what="the slow migration to be running")
    assert container.running(), container.logs()
    assert f"== Running {SLOW} " in container.logs()

    started = time.monotonic()
    container.stop(grace=30)
    elapsed = time.monotonic() - started
    log = container.logs()
    assert_no_secret(log)
    assert container.exit_code() == 143, log
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f}s: the migrator must cancel, not wait for docker's SIGKILL"
    assert versions(tcp_database_url) == [HEAD], "the interrupted migration is not recorded"
    assert not table_exists(tcp_database_url, "slow_marker"), "its DDL was rolled back"
    wait_for(lambda: not sleeping(tcp_database_url), timeout=10, what="the server to end the cancelled query")


def sleeping(url: str) -> bool:
    dbname = urlsplit(url).path.lstrip("/")
    return bool(query(url, "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                           "AND query LIKE '%%pg_sleep(60)%%' AND pid <> pg_backend_pid()", dbname))
