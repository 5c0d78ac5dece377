"""Real Alembic projects' habits: merges, offline SQL, their own env.py and alembic.ini, the plain `alembic`
command next to migrator, and the migration history that records every run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from migrator.lock import lock_key
from tests.conftest import FIRST, HEAD, add_revision, dbname, migrator_env, query, run_migrator, running_lines

A, B, B2, C, M, D = "30000000000001", "30000000000002", "30000000000003", "30000000000004", "30000000000005", \
    "30000000000006"


def versions(url: str) -> list[str]:
    return sorted(str(row[0]) for row in query(url, "SELECT version_num FROM alembic_version"))


def merge_history(project: Path) -> None:
    """HEAD -> A -> (B -> B2, C) -> M (merge) -> D."""
    add_revision(project, A, HEAD, "op.create_table('a', sa.Column('id', sa.Integer))", "op.drop_table('a')", "a")
    add_revision(project, B, A, "op.create_table('b', sa.Column('id', sa.Integer))", "op.drop_table('b')", "b")
    add_revision(project, B2, B, "op.create_table('b2', sa.Column('id', sa.Integer))", "op.drop_table('b2')", "b2")
    add_revision(project, C, A, "op.create_table('c', sa.Column('id', sa.Integer))", "op.drop_table('c')", "c")
    add_revision(project, M, (B2, C), "pass", name="merge")
    add_revision(project, D, M, "op.create_table('d', sa.Column('id', sa.Integer))", "op.drop_table('d')", "d")


def alembic(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=project, capture_output=True, text=True,
                          env=migrator_env(url), check=False, timeout=120)


def test_rollback_steps_across_a_merge_does_what_alembic_does_or_refuses(project: Path, database_url: str) -> None:
    merge_history(project)
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    one = run_migrator(["rollback", "--steps", "1"], cwd=project, database_url=database_url)
    assert one.returncode == 0, one.stderr
    assert versions(database_url) == [M]
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    for args in (["rollback", "--steps", "2"], ["rollback", "--steps", "5", "--dry-run"]):
        ambiguous = run_migrator(args, cwd=project, database_url=database_url)
        assert ambiguous.returncode == 2, ambiguous.stderr
        assert f"rollback --steps {args[2]} is ambiguous" in ambiguous.stderr
        assert "name the revision" in ambiguous.stderr and not running_lines(ambiguous.stderr)
        assert versions(database_url) == [D]
    # Alembic refuses the same walks, and walks the same unambiguous one.
    assert alembic(project, database_url, "downgrade", "-2").returncode != 0
    assert alembic(project, database_url, "downgrade", "-1").returncode == 0
    assert versions(database_url) == [M]


def test_rollback_to_a_branch_revision_matches_alembic(project: Path, database_url: str) -> None:
    merge_history(project)
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    dry = run_migrator(["rollback", B, "--dry-run"], cwd=project, database_url=database_url)
    planned = [line.split("== Would run ")[1].split()[0] for line in dry.stderr.splitlines() if "Would run" in line]
    done = run_migrator(["rollback", B], cwd=project, database_url=database_url)
    assert done.returncode == 0, done.stderr
    ran = [line.split("== Running ")[1].split()[0] for line in running_lines(done.stderr)]
    assert planned == ran == [D, M, B2]
    mine = versions(database_url)
    assert alembic(project, database_url, "upgrade", "heads").returncode == 0
    assert alembic(project, database_url, "downgrade", B).returncode == 0
    assert versions(database_url) == mine == [B, C]


def test_offline_sql_keeps_percent_signs(project: Path) -> None:
    add_revision(project, A, HEAD, "op.execute(\"CREATE FUNCTION shard(id bigint) RETURNS int LANGUAGE sql AS "
                                   "'SELECT (id % 1024)::int'\")", name="shard")
    result = run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    assert "(id % 1024)" in result.stdout and "%%" not in result.stdout


def test_offline_sql_of_a_migration_that_reads_data_is_one_line(project: Path) -> None:
    add_revision(project, A, HEAD, "rows = op.get_bind().execute(sa.text('SELECT id FROM users')).fetchall()\n"
                                   "for row in rows:\n"
                                   "    op.execute(f'UPDATE users SET bio = NULL WHERE id = {row[0]}')", name="reads")
    result = run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "upgrade 20211104101500 -> 30000000000001 cannot be rendered offline" in line
    assert "please report" not in line


FOREIGN_ENV = '''from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
'''


def test_an_env_py_that_does_not_delegate_is_refused(project: Path, database_url: str) -> None:
    (project / "migrations" / "env.py").write_text(FOREIGN_ENV)
    for args in (["migrate"], ["sql"]):
        result = run_migrator(args, cwd=project, database_url=database_url)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert "env.py" in line and "from migrator.alembic_env import run_migrations" in line
        assert "Traceback" not in result.stderr and "please report" not in line
    assert query(database_url, "SELECT to_regclass('alembic_version'), to_regclass('users')") == [(None, None)]


def test_an_env_py_that_connects_by_itself_is_refused(project: Path, database_url: str) -> None:
    url = database_url.replace("postgresql://", "postgresql+psycopg://")
    own = FOREIGN_ENV.replace("engine_from_config(config.get_section(config.config_ini_section), "
                              "prefix=\"sqlalchemy.\",\n                                     poolclass=pool.NullPool)",
                              f"__import__('sqlalchemy').create_engine({url!r}, poolclass=pool.NullPool)")
    (project / "migrations" / "env.py").write_text(own)
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 2, result.stderr
    assert "configures Alembic itself instead of handing over migrator's connection" in result.stderr
    assert query(database_url, "SELECT to_regclass('alembic_version'), to_regclass('users')") == [(None, None)]


def test_alembic_ini_decides_where_the_scripts_are(project: Path, database_url: str) -> None:
    """A project laid out the Alembic way (alembic/ with version_locations elsewhere): both tools see it."""
    shutil.move(project / "migrations", project / "alembic")
    (project / "alembic" / "versions").rename(project / "history")
    (project / "history" / "more").mkdir()
    add = project / "history" / "more" / f"{A}_nested.py"
    add.write_text(f"revision = {A!r}\ndown_revision = {HEAD!r}\nbranch_labels = None\ndepends_on = None\n"
                   "from alembic import op\nimport sqlalchemy as sa\n"
                   "def upgrade():\n    op.create_table('nested', sa.Column('id', sa.Integer))\n"
                   "def downgrade():\n    op.drop_table('nested')\n")
    (project / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n"
                                         "version_locations = %(here)s/history\nrecursive_version_locations = true\n"
                                         "path_separator = os\nprepend_sys_path = .\n")
    status = run_migrator(["status", "--json"], cwd=project, database_url=database_url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pending"] == [FIRST, HEAD, A]
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    assert versions(database_url) == [A]
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0 and "already up" in again.stderr
    current = alembic(project, database_url, "current")
    assert current.stdout.split()[0] == A, (current.stdout, current.stderr)


def test_plain_alembic_takes_the_migration_lock(project: Path, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(dbname(database_url), "public", "alembic_version"),))
        env = {**migrator_env(database_url), "MIGRATOR_LOCK_TIMEOUT": "1"}
        result = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=project,
                                capture_output=True, text=True, env=env, check=False, timeout=60)
    assert result.returncode != 0
    assert "migration lock on" in result.stderr and "not acquired after 1s" in result.stderr
    assert query(database_url, "SELECT to_regclass('users')") == [(None,)]
    assert alembic(project, database_url, "upgrade", "head").returncode == 0
    assert versions(database_url) == [HEAD]


def test_history_records_who_ran_what(project: Path, database_url: str) -> None:
    env = {"MIGRATOR_POD_NAME": "app-migrate-x7k2p", "MIGRATOR_POD_NAMESPACE": "shop",
           "MIGRATOR_IMAGE": "registry.example/migrator:1.2.3"}
    assert run_migrator(["migrate"], cwd=project, database_url=database_url, env=env).returncode == 0
    assert run_migrator(["rollback", FIRST], cwd=project, database_url=database_url, env=env).returncode == 0
    text = run_migrator(["history"], cwd=project, database_url=database_url)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("default (") and lines[0].endswith("3 row(s)")
    assert f" {FIRST} up applied in " in lines[1] and "by app-migrate-x7k2p image registry.example/migrator:1.2.3" \
        in lines[1]
    assert f" {HEAD} down reverted in " in lines[3]
    rows = [json.loads(line) for line in
            run_migrator(["history", "--json"], cwd=project, database_url=database_url).stdout.splitlines()]
    assert [(r["revision"], r["direction"], r["outcome"]) for r in rows] == [
        (FIRST, "up", "applied"), (HEAD, "up", "applied"), (HEAD, "down", "reverted")]
    assert {r["pod"] for r in rows} == {"app-migrate-x7k2p"} and {r["namespace"] for r in rows} == {"shop"}
    assert rows[1]["parents"] == [FIRST] and all(r["duration_ms"] >= 0 for r in rows)
    assert rows[0]["migrator_version"] == __import__("migrator").__version__
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"  # ISO 8601 in UTC, as the JSON logs write times
    assert all(re.fullmatch(iso, r["started_at"]) and re.fullmatch(iso, r["finished_at"]) for r in rows), rows
    assert os.environ.get("MIGRATOR_POD_NAME") is None


def test_history_rows_keep_odd_values_exactly(project: Path, database_url: str) -> None:
    """The history row travels with the step's COMMIT, its values quoted on the client: what the environment
    says (the chart's downward API, or anyone's) is stored as written, never run as SQL, also with
    standard_conforming_strings off."""
    query(database_url, f'ALTER DATABASE "{dbname(database_url)}" SET standard_conforming_strings = off')
    pod = "x'); DROP TABLE users; --"
    image = "reg\\istry.example/m:1 $$ %s %(x)s \u00e9\u00e9"
    env = {"MIGRATOR_POD_NAME": pod, "MIGRATOR_IMAGE": image}
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, env=env)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT pod, image, outcome FROM migrator_history ORDER BY id") == [
        (pod, image, "applied"), (pod, image, "applied")]
    assert versions(database_url) == [HEAD]
    assert query(database_url, "SELECT to_regclass('users') IS NOT NULL") == [(True,)]
