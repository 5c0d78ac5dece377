"""The commands end to end, as subprocesses against a real PostgreSQL: log lines, exit codes, database state."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIRST, HEAD, add_revision, migrator_env, query, run_migrator, running_lines

ECTO_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \[(info|warning|error|debug)\] ")


def versions(url: str) -> list[str]:
    return [row[0] for row in query(url, "SELECT version_num FROM alembic_version")]  # type: ignore[misc]


def test_release_sequence(project: Path, database_url: str) -> None:
    """migrate, status, seed twice, rollback REV, rollback --steps 1, migrate again."""
    migrate = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrate.returncode == 0, migrate.stderr
    lines = migrate.stderr.splitlines()
    assert all(ECTO_LINE.match(line) for line in lines), lines
    # The durations' format, not their value: a busy machine takes 0.1s (no timed assertions in tests).
    messages = [re.sub(r" in \d+\.\ds$", " in N.Ns", ECTO_LINE.sub("", line)) for line in lines]
    assert messages[:3] == [f"== Running {FIRST} create_users.upgrade forward", "create table users",
                            f"== Migrated {FIRST} in N.Ns"]
    assert messages[3:6] == [f"== Running {HEAD} add_users_email_index.upgrade forward",
                             "create index users_email_index", f"== Migrated {HEAD} in N.Ns"]
    assert versions(database_url) == [HEAD]
    columns = {r[0] for r in query(database_url, "SELECT column_name FROM information_schema.columns "
                                                 "WHERE table_name = 'users'")}
    assert columns == {"id", "name", "email", "bio", "number_of_pets", "inserted_at", "updated_at"}

    status = run_migrator(["status"], cwd=project, database_url=database_url)
    assert status.returncode == 0
    assert f"current: {HEAD}" in status.stdout and "pending: none" in status.stdout and "at head: yes" in status.stdout

    for _ in range(2):
        seed = run_migrator(["seed"], cwd=project, database_url=database_url)
        assert seed.returncode == 0, seed.stderr
    assert "== Running seed 01_users.py" in run_migrator(["seed", "--force"], cwd=project,
                                                           database_url=database_url).stderr
    assert query(database_url, "SELECT name, email, bio, number_of_pets FROM users") == [
        ("User1", "user1@example.com", "The start to my bio", 2)]

    rollback = run_migrator(["rollback", FIRST], cwd=project, database_url=database_url)
    assert rollback.returncode == 0, rollback.stderr
    assert f"== Running {HEAD} add_users_email_index.downgrade backward" in rollback.stderr
    assert "drop index users_email_index" in rollback.stderr
    assert re.search(rf"== Migrated {HEAD} in \d+\.\ds", rollback.stderr)
    assert versions(database_url) == [FIRST]
    assert query(database_url, "SELECT to_regclass('users_email_index')") == [(None,)]

    steps = run_migrator(["rollback", "--steps", "1"], cwd=project, database_url=database_url)
    assert steps.returncode == 0, steps.stderr
    assert f"== Running {FIRST} create_users.downgrade backward" in steps.stderr
    assert versions(database_url) == []
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]

    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0 and len(running_lines(again.stderr)) == 2
    assert versions(database_url) == [HEAD]


def test_already_up_is_one_line(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0
    assert len(again.stderr.splitlines()) == 1
    assert "Migrations already up" in again.stderr and HEAD in again.stderr


def test_migrate_to_and_rollback_to_base(project: Path, database_url: str) -> None:
    to = run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url)
    assert to.returncode == 0 and len(running_lines(to.stderr)) == 1
    assert versions(database_url) == [FIRST]
    base = run_migrator(["rollback", "base"], cwd=project, database_url=database_url)
    assert base.returncode == 0, base.stderr
    assert versions(database_url) == []
    noop = run_migrator(["rollback", "base"], cwd=project, database_url=database_url)
    assert noop.returncode == 0 and "Nothing to roll back" in noop.stderr


def test_rollback_dry_run_changes_nothing(project: Path, database_url: str) -> None:
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    dry = run_migrator(["rollback", "base", "--dry-run"], cwd=project, database_url=database_url)
    assert dry.returncode == 0, dry.stderr
    assert f"== Would run {HEAD} add_users_email_index.downgrade backward" in dry.stderr
    assert f"== Would run {FIRST} create_users.downgrade backward" in dry.stderr
    assert "nothing was changed" in dry.stderr
    assert versions(database_url) == [HEAD]
    assert query(database_url, "SELECT to_regclass('users_email_index')::text") == [("users_email_index",)]


def test_rollback_to_current_is_a_no_op(project: Path, database_url: str) -> None:
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    same = run_migrator(["rollback", HEAD], cwd=project, database_url=database_url)
    assert same.returncode == 0 and "Nothing to roll back" in same.stderr
    assert versions(database_url) == [HEAD]


def test_status_json_and_check(project: Path, database_url: str) -> None:
    behind = run_migrator(["status", "--json", "--check"], cwd=project, database_url=database_url)
    assert behind.returncode == 5
    doc = json.loads(behind.stdout)
    assert doc["current"] == [] and doc["heads"] == [HEAD] and doc["pending"] == [FIRST, HEAD]
    assert doc["at_head"] is False
    assert behind.stderr.splitlines()[0].endswith(f"not at head: default 2 pending: {FIRST}, {HEAD}")
    run_migrator(["migrate"], cwd=project, database_url=database_url)
    ok = run_migrator(["status", "--json", "--check"], cwd=project, database_url=database_url)
    assert ok.returncode == 0
    assert json.loads(ok.stdout) == {"repo": "default", "database": json.loads(ok.stdout)["database"],
                                     "current": [HEAD], "heads": [HEAD], "pending": [], "unknown": [],
                                     "partial": [], "changed": [], "missing": [], "unrecorded": 0,
                                     "at_head": True}


def test_json_logs(project: Path, database_url: str) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_FORMAT="json")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    running = [e for e in events if e["event"].startswith("== Running")]
    migrated = [e for e in events if e["event"].startswith("== Migrated")]
    assert [e["revision"] for e in running] == [FIRST, HEAD]
    assert all(e["direction"] == "forward" and e["level"] == "info" for e in running)
    assert all(isinstance(e["duration"], float) and e["timestamp"].endswith("Z") for e in migrated)
    assert {"event": "create table users", "revision": FIRST}.items() <= events[1].items()


def test_alembic_records_go_through_the_same_pipeline(project: Path, database_url: str) -> None:
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_FORMAT="json",
                          MIGRATOR_LOG_LEVEL="debug")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    alembic = [e for e in events if e.get("logger", "").startswith("alembic")]
    assert alembic and all("timestamp" in e and "level" in e for e in alembic)


def test_several_heads_refused_unless_to_names_one(project: Path, database_url: str) -> None:
    add_revision(project, "20220101000000", HEAD, "op.create_table('a', sa.Column('id', sa.Integer))", name="a")
    add_revision(project, "20220101000001", HEAD, "op.create_table('b', sa.Column('id', sa.Integer))", name="b")
    refused = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert refused.returncode == 2
    assert "several heads (20220101000000, 20220101000001)" in refused.stderr.splitlines()[0]
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]
    chosen = run_migrator(["migrate", "--to", "20220101000001"], cwd=project, database_url=database_url)
    assert chosen.returncode == 0, chosen.stderr
    assert versions(database_url) == ["20220101000001"]


def test_plain_alembic_still_works(project: Path, database_url: str) -> None:
    result = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=project, text=True,
                            capture_output=True, env=migrator_env(database_url), check=False)
    assert result.returncode == 0, result.stderr
    assert versions(database_url) == [HEAD]
    status = run_migrator(["status", "--check"], cwd=project, database_url=database_url)
    assert status.returncode == 0
