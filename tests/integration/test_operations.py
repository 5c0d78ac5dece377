"""Operating around a release: wait, sql, new, several databases, termination message, lint."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrator import errors
from migrator.lock import lock_key
from tests.conftest import (
    FIRST,
    HEAD,
    ROOT,
    add_revision,
    dbname,
    migrator_env,
    query,
    run_migrator,
    running_lines,
    start_migrator,
)
from tests.postgres import Server, free_port


def versions(url: str, table: str = "alembic_version") -> list[object]:
    return [row[0] for row in query(url, f"SELECT version_num FROM {table}")]


# --- wait -----------------------------------------------------------------------------------------------

def test_wait_returns_once_another_process_migrates(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url).returncode == 0
    waiter = start_migrator(["wait", "--timeout", "60", "--interval", "0.2"], cwd=project,
                            database_url=database_url)
    time.sleep(1.5)
    assert waiter.poll() is None, "wait returned before the schema was at head"
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    migrated_at = time.monotonic()
    assert waiter.wait(timeout=30) == 0
    assert time.monotonic() - migrated_at < 5
    _, err = waiter.communicate()
    assert "Waiting for" in err and f"at {FIRST}, waiting for {HEAD}" in err
    assert "Schema ready" in err and not running_lines(err)


def test_wait_times_out_with_5(project: Path, database_url: str) -> None:
    run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url)
    result = run_migrator(["wait", "--timeout", "1"], cwd=project, database_url=database_url)
    assert result.returncode == 5
    assert result.stderr.splitlines()[-1].endswith(f"not ready after 1s: at {FIRST}, waiting for {HEAD}")
    assert versions(database_url) == [FIRST], "wait must never migrate"


def test_wait_on_a_newer_database_both_ways(project: Path, database_url: str, tmp_path: Path) -> None:
    """A newer release (one more migration) migrated the database: the old image waits by default, and with
    --allow-newer accepts it because the history proves the newer revision descends from its head."""
    newer = tmp_path / "newer"
    shutil.copytree(project, newer)
    add_revision(newer, "20990101000000", HEAD, "op.create_table('later', sa.Column('id', sa.Integer))")
    assert run_migrator(["migrate"], cwd=newer, database_url=database_url).returncode == 0
    strict = run_migrator(["wait", "--timeout", "1"], cwd=project, database_url=database_url)
    assert strict.returncode == 5
    assert "which this image does not know (a newer release?)" in strict.stderr
    allowed = run_migrator(["wait", "--timeout", "1", "--allow-newer"], cwd=project, database_url=database_url)
    assert allowed.returncode == 0, allowed.stderr
    assert f"accepted (--allow-newer): it descends from {HEAD}" in allowed.stderr
    # The old image's migrate, seed and status agree (helm rollback, old pods restarting mid-rollout).
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 2
    assert run_migrator(["status", "--check"], cwd=project, database_url=database_url).returncode == 5
    for args in (["migrate", "--allow-newer"], ["seed", "--allow-newer"], ["status", "--check", "--allow-newer"]):
        result = run_migrator(args, cwd=project, database_url=database_url)
        assert result.returncode == 0, (args, result.stderr)
        assert "20990101000000" in result.stderr + result.stdout
    assert not running_lines(result.stderr)
    assert query(database_url, "SELECT count(*) FROM users") == [(0,)], "the old image's seeds must not run"
    assert versions(database_url) == ["20990101000000"]


def test_allow_newer_needs_proof(project: Path, database_url: str) -> None:
    """A revision nobody recorded (stamped by hand, another tool): --allow-newer cannot prove its ancestry."""
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    query(database_url, "UPDATE alembic_version SET version_num = '20990101000000'")
    for args in (["wait", "--timeout", "1", "--allow-newer"], ["migrate", "--allow-newer"],
                 ["seed", "--allow-newer"]):
        result = run_migrator(args, cwd=project, database_url=database_url)
        assert result.returncode == (5 if args[0] == "wait" else 2), (args, result.stderr)
        assert "the history has no record of revision 20990101000000" in result.stderr, (args, result.stderr)
    assert versions(database_url) == ["20990101000000"]


def test_wait_takes_no_lock(project: Path, database_url: str) -> None:
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(dbname(database_url), "public", "alembic_version"),))
        assert run_migrator(["wait", "--timeout", "5"], cwd=project, database_url=database_url).returncode == 0


def test_wait_unreachable_exits_3(project: Path) -> None:
    result = run_migrator(["wait", "--timeout", "30"], cwd=project,
                          database_url=f"postgres://a:b@127.0.0.1:{free_port()}/x", MIGRATOR_CONNECT_TIMEOUT="1")
    assert result.returncode == 3


# --- sql ------------------------------------------------------------------------------------------------

def test_sql_renders_offline_without_connecting(project: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        url = f"postgres://app:pw@127.0.0.1:{listener.getsockname()[1]}/app"
        up = run_migrator(["sql"], cwd=project, database_url=url)
        down = run_migrator(["sql", "--from", HEAD, "--to", FIRST], cwd=project, database_url=url)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody knocked
    assert up.returncode == 0 and down.returncode == 0, up.stderr + down.stderr
    assert "CREATE TABLE users (" in up.stdout
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_index ON users (email);" in up.stdout
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{FIRST}')" in up.stdout
    assert "DROP INDEX CONCURRENTLY IF EXISTS users_email_index;" in down.stdout
    assert "DROP TABLE users" not in down.stdout and "CREATE TABLE" not in down.stdout


def test_sql_from_current_reads_the_database(project: Path, database_url: str) -> None:
    run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url)
    result = run_migrator(["sql", "--from", "current"], cwd=project, database_url=database_url)
    assert result.returncode == 0
    assert "CREATE UNIQUE INDEX" in result.stdout and "CREATE TABLE users" not in result.stdout


def test_sql_with_nothing_to_render_says_so_in_sql(project: Path, database_url: str) -> None:
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    at_head = run_migrator(["sql", "--from", "current"], cwd=project, database_url=database_url)
    assert at_head.returncode == 0, at_head.stderr
    assert re.fullmatch(rf"-- nothing to migrate: postgres@\S+/{dbname(database_url)} is at {HEAD}\n", at_head.stdout)
    offline = run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None)
    assert offline.returncode == 0 and offline.stdout == f"-- nothing to migrate: from {HEAD} to heads\n"


@pytest.mark.parametrize("command", [["sql"], ["status"], ["history", "--json"]])
def test_a_reader_that_went_away_ends_the_output_quietly(project: Path, database_url: str, command: list[str]
                                                         ) -> None:
    """`migrator sql | head -1`: once the reader has closed the pipe, migrator stops writing with 141 (what a
    shell reports after SIGPIPE), without a traceback or "please report it", and changes nothing."""
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte
    try:
        proc = subprocess.run([sys.executable, "-m", "migrator", *command], cwd=project, stdout=write,
                              stderr=subprocess.PIPE, text=True, env=migrator_env(database_url), timeout=120,
                              check=False)
    finally:
        os.close(write)
    assert proc.returncode == errors.OUTPUT_CLOSED, proc.stderr
    assert "Traceback" not in proc.stderr and "[error]" not in proc.stderr, proc.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]


# --- new ------------------------------------------------------------------------------------------------

def test_new_revision_has_a_timestamp_id_and_the_head_as_parent(project: Path, database_url: str) -> None:
    created = run_migrator(["new", "add users age"], cwd=project, database_url=None)
    assert created.returncode == 0, created.stderr
    path = Path(created.stdout.strip())
    match = re.fullmatch(r"(\d{14})_add_users_age\.py", path.name)
    assert match and path.parent == project / "migrations" / "versions"
    text = path.read_text()
    assert f"revision: str = '{match[1]}'" in text and f"down_revision: str | Sequence[str] | None = '{HEAD}'" in text
    path.write_text(fill_in(text, "op.add_column('users', sa.Column('age', sa.Integer))"))
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert f"== Running {match[1]} add_users_age.upgrade forward" in result.stderr
    assert "alter table users add column age" in result.stderr
    assert versions(database_url) == [match[1]]


def fill_in(text: str, upgrade: str) -> str:
    """A revision file written by `new`, filled in as its comment says: the operations and their imports."""
    text = text.replace("def upgrade() -> None:\n    pass", f"def upgrade() -> None:\n    {upgrade}")
    return text.replace("from collections.abc import Sequence\n",
                        "from collections.abc import Sequence\n\nimport sqlalchemy as sa\nfrom alembic import op\n")


def lint_as_the_project_does(project: Path, path: Path) -> str:
    """ruff and mypy with this repository's settings on one revision file; their complaints, or ''."""
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")  # per-file settings match project paths
    bin_dir = Path(sys.executable).parent
    found = []
    for argv in ([str(bin_dir / "ruff"), "check", "--no-cache", str(path)],
                 [str(bin_dir / "mypy"), "--config-file", "pyproject.toml", "--no-incremental", str(path)]):
        proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            found.append(proc.stdout + proc.stderr)
    return "\n".join(found)


def test_new_writes_what_ruff_and_mypy_accept_empty_and_filled_in(project: Path) -> None:
    created = run_migrator(["new", "add users age"], cwd=project, database_url=None)
    assert created.returncode == 0, created.stderr
    path = Path(created.stdout.strip())
    assert lint_as_the_project_does(project, path) == ""
    path.write_text(fill_in(path.read_text(), "op.add_column('users', sa.Column('age', sa.Integer))"))
    assert lint_as_the_project_does(project, path) == ""


@pytest.mark.parametrize("message", [
    '"""; open("pwned", "w").write("ran"); """',
    "x'''; open('pwned', 'w').write('ran'); '''",
    'a "quoted" word, a backslash \\ and a last one \\',
    "two\nlines: import os; os.mkdir('pwned')",
])
def test_new_message_stays_text(project: Path, message: str) -> None:
    created = run_migrator(["new", message], cwd=project, database_url=None)
    assert created.returncode == 0, created.stderr
    path = Path(created.stdout.strip())
    assert re.fullmatch(r"\d{14}_[a-z0-9_]+\.py", path.name)
    loaded = subprocess.run([sys.executable, "-c", "import runpy, sys; print(runpy.run_path(sys.argv[1])['__doc__'])",
                             str(path)], cwd=project, capture_output=True, text=True, timeout=60, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines()[0] == " ".join(message.split())
    assert not (project / "pwned").exists()
    assert run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None).returncode == 0


def test_new_refuses_a_message_with_control_characters(project: Path) -> None:
    result = run_migrator(["new", "a\x01b"], cwd=project, database_url=None)
    assert result.returncode == 2
    assert "the message must be printable text" in result.stderr.splitlines()[0]
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 2


def without_root_overrides() -> list[str]:
    """A command prefix under which this process's user obeys file modes: as root, root without the
    capabilities that override them (root owns the project, so its mode bits apply); else nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is missing: as root, nothing else makes a directory read-only to us")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_new_in_a_read_only_directory_is_one_line(project: Path) -> None:
    versions_dir = project / "migrations" / "versions"
    before = sorted(p.name for p in versions_dir.iterdir())
    versions_dir.chmod(0o555)
    try:
        proc = subprocess.run([*without_root_overrides(), sys.executable, "-m", "migrator", "new", "add users age"],
                              cwd=project, capture_output=True, text=True, timeout=120, check=False,
                              env=migrator_env(None))
    finally:
        versions_dir.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert re.search(rf"\[error\] cannot write {versions_dir}/\d{{14}}_add_users_age\.py: Permission denied$", line)
    assert sorted(p.name for p in versions_dir.iterdir()) == before


def test_new_refuses_with_several_heads(project: Path) -> None:
    add_revision(project, "20220101000000", HEAD, "pass", name="a")
    add_revision(project, "20220101000001", HEAD, "pass", name="b")
    result = run_migrator(["new", "more"], cwd=project, database_url=None)
    assert result.returncode == 2
    assert "several heads (20220101000000, 20220101000001)" in result.stderr
    assert len(list((project / "migrations" / "versions").glob("*.py"))) == 4


# --- several databases ----------------------------------------------------------------------------------

ANALYTICS_REVISION = "20230101000000"


@pytest.fixture
def two_databases(project: Path, pg_server: Server) -> tuple[Path, dict[str, str]]:
    analytics = project / "analytics" / "migrations"
    (analytics / "versions").mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", analytics / "env.py")
    shutil.copy(ROOT / "migrations" / "script.py.mako", analytics / "script.py.mako")
    (project / "analytics" / "seeds").mkdir()
    (analytics / "versions" / f"{ANALYTICS_REVISION}_create_events.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = '{ANALYTICS_REVISION}'\ndown_revision = None\n\n"
        "def upgrade():\n    op.create_table('events', sa.Column('id', sa.BigInteger, primary_key=True))\n\n"
        "def downgrade():\n    op.drop_table('events')\n")
    (project / "migrator.toml").write_text(
        '[[repos]]\nname = "primary"\nscript_location = "migrations"\nseeds = "seeds"\n\n'
        '[[repos]]\nname = "analytics"\nurl_env = "ANALYTICS_DATABASE_URL"\n'
        'script_location = "analytics/migrations"\nseeds = "analytics/seeds"\nversion_table = "analytics_version"\n')
    urls = {"primary": pg_server.url_for(pg_server.create_database()),
            "analytics": pg_server.url_for(pg_server.create_database())}
    return project, urls


def test_migrate_goes_through_every_database_in_order(two_databases: tuple[Path, dict[str, str]]) -> None:
    project, urls = two_databases
    result = run_migrator(["migrate"], cwd=project, database_url=urls["primary"],
                          ANALYTICS_DATABASE_URL=urls["analytics"])
    assert result.returncode == 0, result.stderr
    assert versions(urls["primary"]) == [HEAD]
    assert versions(urls["analytics"], "analytics_version") == [ANALYTICS_REVISION]
    assert query(urls["analytics"], "SELECT to_regclass('alembic_version'), to_regclass('users')") == [(None, None)]
    order = running_lines(result.stderr)
    assert [FIRST in order[0], HEAD in order[1], ANALYTICS_REVISION in order[2]] == [True, True, True]
    status = run_migrator(["status", "--json", "--check"], cwd=project, database_url=urls["primary"],
                          ANALYTICS_DATABASE_URL=urls["analytics"])
    assert status.returncode == 0 and len(status.stdout.splitlines()) == 2


def test_each_database_has_its_own_lock(two_databases: tuple[Path, dict[str, str]]) -> None:
    import psycopg

    project, urls = two_databases
    with psycopg.connect(urls["primary"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(dbname(urls["primary"]), "public", "alembic_version"),))
        result = run_migrator(["migrate", "--repo", "analytics"], cwd=project, database_url=urls["primary"],
                              ANALYTICS_DATABASE_URL=urls["analytics"], MIGRATOR_LOCK_TIMEOUT="2")
    assert result.returncode == 0, result.stderr
    assert versions(urls["analytics"], "analytics_version") == [ANALYTICS_REVISION]


def test_rollback_touches_only_the_named_database(two_databases: tuple[Path, dict[str, str]]) -> None:
    project, urls = two_databases
    env = {"ANALYTICS_DATABASE_URL": urls["analytics"]}
    run_migrator(["migrate"], cwd=project, database_url=urls["primary"], env=env)
    result = run_migrator(["rollback", "--repo", "analytics", "base"], cwd=project, database_url=urls["primary"],
                          env=env)
    assert result.returncode == 0, result.stderr
    assert versions(urls["analytics"], "analytics_version") == []
    assert versions(urls["primary"]) == [HEAD]
    bare = run_migrator(["rollback", "base"], cwd=project, database_url=urls["primary"], env=env)
    assert bare.returncode == 2 and "choose it with --repo (primary, analytics)" in bare.stderr


@pytest.mark.parametrize(("config", "message"), [
    ('[[repos]]\nname = "primary"\nscript_location = "nowhere"\n', "migrations directory"),
    ('[[repos]]\nname = "primary"\nseeds = "no-seeds"\n', "seeds directory"),
    ('[[repos]]\nname = "primary"\nurl_env = "MISSING_URL"\n', "no database configured: set MISSING_URL"),
    ('[[repos]]\nname = "primary"\n\n[[repos]]\nname = "primary"\n', "primary repeats"),
    ('[[repos]]\nname = "primary"\ncolour = "blue"\n', "unknown key(s) colour"),
    ('[[repos]]\nname = "primary"\nurl_env = "not a var"\n', "must be an environment variable name"),
    ("[[repos]\n", "cannot be read as TOML"),
])
def test_bad_configurations(project: Path, database_url: str, config: str, message: str) -> None:
    (project / "migrator.toml").write_text(config)
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[0]
    assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_unknown_repo(project: Path, database_url: str) -> None:
    result = run_migrator(["status", "--repo", "nope"], cwd=project, database_url=database_url)
    assert result.returncode == 2 and "unknown repo 'nope': configured repos are default" in result.stderr


def test_pyproject_tool_table(project: Path, database_url: str) -> None:
    (project / "migrations").rename(project / "db")
    (project / "pyproject.toml").write_text('[tool.migrator]\nscript_location = "db"\n')
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    assert versions(database_url) == [HEAD]


# --- termination message --------------------------------------------------------------------------------

def test_termination_message_on_success_and_failure(project: Path, database_url: str, tmp_path: Path,
                                                    tcp_server: Server) -> None:
    log = tmp_path / "termination-log"
    ok = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_TERMINATION_LOG=str(log))
    assert ok.returncode == 0
    assert re.fullmatch(rf"migrate default: 2 applied \({FIRST}, {HEAD}\), base -> {HEAD} in \d+\.\ds "
                        r"\(total \d+\.\ds\)\n", log.read_text())
    assert tcp_server.password
    bad_url = tcp_server.admin_url.replace("@", "x@")  # a wrong password that contains the real one
    failed = run_migrator(["migrate"], cwd=project, database_url=bad_url, MIGRATOR_TERMINATION_LOG=str(log))
    assert failed.returncode == 3
    text = log.read_text()
    assert text.startswith("migrate failed (exit 3): cannot connect to postgres@127.0.0.1:")
    assert "password authentication failed" in text
    assert tcp_server.password not in text
    assert len(text.splitlines()) == 1


# --- lint -----------------------------------------------------------------------------------------------

def test_lint_passes_on_the_example(project: Path) -> None:
    shutil.copy(ROOT / ".squawk.toml", project / ".squawk.toml")
    result = run_migrator(["lint"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "squawk: 2 migration(s), no problems\n"


def test_lint_fails_on_dangerous_ddl(project: Path) -> None:
    shutil.copy(ROOT / ".squawk.toml", project / ".squawk.toml")
    add_revision(project, "20220101000000", HEAD,
                 "op.add_column('users', sa.Column('age', sa.BigInteger, nullable=False))\n"
                 "op.create_index('users_name_index', 'users', ['name'])", name="dangerous")
    result = run_migrator(["lint"], cwd=project, database_url=None)
    assert result.returncode == 1
    assert "adding-required-field" in result.stdout
    assert "require-concurrent-index-creation" in result.stdout
    assert "20220101000000_dangerous.sql" in result.stdout
    assert result.stderr.splitlines()[-1].endswith("squawk found 2 problem(s) in 1 of 3 migration(s)")
    only_new = run_migrator(["lint", "--from", HEAD], cwd=project, database_url=None)
    assert only_new.returncode == 1 and "in 1 of 1 migration(s)" in only_new.stderr
