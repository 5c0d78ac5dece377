"""Many tenants with one repo's migrations: listed by a query or in migrator.toml, each in its schema (or
database) with its own version table, history and lock; a failing tenant leaves the others migrated, with the
summary and exit 7; status and wait over all tenants; bad tenant settings are one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import errors, tenants
from migrator.config import Settings, database_config
from migrator.errors import ConfigError
from migrator.repos import Repo, Tenants
from migrator.targets import Target
from tests.conftest import query, run_migrator
from tests.postgres import Server
from tests.tenants.tenant_projects import (
    HEAD,
    QUERY_CONFIG,
    REVISIONS,
    applied,
    make_tenants_table,
    tenant_versions,
    write_project,
)

TENANTS = ["acme", "globex", "initech"]


def tables(url: str, schema: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema)]


def test_tenants_from_a_query_each_migrated_in_its_own_schema(tmp_path: Path, database_url: str) -> None:
    make_tenants_table(database_url, TENANTS)
    project = write_project(tmp_path / "p", QUERY_CONFIG)
    log = tmp_path / "termination-log"
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_TERMINATION_LOG=str(log))
    assert result.returncode == 0, result.stderr
    for tenant in TENANTS:
        assert tenant_versions(database_url, tenant) == [HEAD]
        # t2 is raw SQL (op.execute): search_path placed it in the tenant's schema as it did the others.
        assert tables(database_url, tenant) == ["alembic_version", "migrator_history", "t1", "t2", "t3", "t4"]
        assert applied(database_url, tenant) == REVISIONS
    assert tables(database_url, "public") == ["tenants"]
    lines = result.stderr.splitlines()
    assert "migrate: 3 of 3 tenants of repo default" in lines[0]
    assert [line.split("] ", 1)[1] for line in lines if "create schema" in line] == [
        f"create schema {t}" for t in TENANTS]
    assert any(line.endswith(f"schema globex to {HEAD}") for line in lines)
    assert "Tenants of repo default done: 3 tenants (schemas): 3 migrated in " in lines[-1]
    assert log.read_text().startswith("migrate default: 3 tenants (schemas): 3 migrated in ")

    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert "3 tenants (schemas): 3 already up" in again.stderr.splitlines()[-1]
    assert [applied(database_url, t) for t in TENANTS] == [REVISIONS] * 3


def test_tenants_listed_in_the_config_the_search_path_reset_before_each_step_and_seeds(tmp_path: Path,
                                                                                           database_url: str) -> None:
    project = write_project(tmp_path / "p", 'tenants = ["beta", "alpha"]\n', revisions=1)
    # r2 moves its own search_path away; r3's unqualified table must still land in the tenant's schema. r3 leaves
    # a temporary table in the session, which the next tenant's r3 (on the same connection) must not meet.
    (project / "migrations" / "versions" / "2024010100_r2.py").write_text(
        f'"""r2"""\nfrom alembic import op\n\nrevision = "r2"\ndown_revision = "{REVISIONS[0]}"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    op.execute('SET search_path = public')\n\n\n"
        "def downgrade():\n    pass\n")
    (project / "migrations" / "versions" / "2024010100_r3.py").write_text(
        '"""r3"""\nfrom alembic import op\n\nrevision = "r3"\ndown_revision = "r2"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    op.execute('CREATE TABLE after_reset (id int)')\n"
        "    op.execute('CREATE TEMP TABLE scratch (id int)')\n\n\n"
        "def downgrade():\n    pass\n")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    for tenant in ("alpha", "beta"):
        assert tenant_versions(database_url, tenant) == ["r3"]
        assert "after_reset" in tables(database_url, tenant)
    assert tables(database_url, "public") == []
    migrated = [line for line in result.stderr.splitlines() if "] Migrated " in line]
    assert [line.rsplit(" schema ", 1)[1] for line in migrated] == ["alpha to r3", "beta to r3"]

    # Seeds run per tenant too, on the same search_path, each tenant with its own ledger.
    (project / "seeds").mkdir()
    (project / "seeds" / "01_rows.py").write_text(
        "import sqlalchemy as sa\n\ndef run(session):\n"
        "    session.execute(sa.text('INSERT INTO after_reset VALUES (1)'))\n")
    seeded = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert seeded.returncode == 0, seeded.stderr
    assert "2 tenants (schemas): 2 seeded" in seeded.stderr.splitlines()[-1]
    for tenant in ("alpha", "beta"):
        assert query(database_url, f"SELECT count(*) FROM {tenant}.after_reset") == [(1,)]
        assert query(database_url, f"SELECT name FROM {tenant}.migrator_seeds") == [("01_rows.py",)]


def test_a_failing_tenant_leaves_the_others_migrated_with_the_summary_and_exit_7(tmp_path: Path,
                                                                                database_url: str) -> None:
    make_tenants_table(database_url, TENANTS)
    query(database_url, "CREATE SCHEMA globex")
    query(database_url, "CREATE TABLE globex.t3 (conflicting int)")
    project = write_project(tmp_path / "p", QUERY_CONFIG)
    log = tmp_path / "termination-log"
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_TERMINATION_LOG=str(log))
    assert result.returncode == errors.TENANTS_FAILED == 7, result.stderr
    assert tenant_versions(database_url, "acme") == [HEAD]
    assert tenant_versions(database_url, "initech") == [HEAD]
    assert tenant_versions(database_url, "globex") == [REVISIONS[1]], "t1 and t2 committed, t3 rolled back"
    lines = result.stderr.splitlines()
    failed = [line for line in lines if "tenant globex" in line]
    assert len(failed) == 2 and all("[error]" in line for line in failed)
    assert (f'failed (exit 1): migration {REVISIONS[2]} (t3) failed and was rolled back: DuplicateTable: relation "t3" '
            "already exists; earlier migrations stay applied") in failed[0]
    assert failed[1].split("] ", 1)[1].startswith(f"tenant globex: exit 1: migration {REVISIONS[2]} (t3) failed")
    # initech, after globex in name order, was migrated after globex failed
    after = lines[lines.index(failed[0]):lines.index(failed[1])]
    assert any(line.endswith(f"schema initech to {HEAD}") for line in after)
    summary = lines[-1].split("] ", 1)[1]
    assert summary.startswith("migrate default: 3 tenants (schemas): 2 migrated, 1 failed in ")
    assert summary.endswith("; failed: globex (exit 1)")
    assert log.read_text().startswith("migrate failed (exit 7): migrate default: 3 tenants (schemas): 2 migrated, "
                                      "1 failed in ")


def test_status_and_wait_summarise_every_tenant(tmp_path: Path, database_url: str) -> None:
    make_tenants_table(database_url, TENANTS)
    project = write_project(tmp_path / "p", QUERY_CONFIG)
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    query(database_url, "DROP TABLE initech.t3, initech.t4")
    query(database_url, "UPDATE initech.alembic_version SET version_num = %s", REVISIONS[1])

    status = run_migrator(["status", "--check"], cwd=project, database_url=database_url)
    assert status.returncode == 5, status.stderr
    assert status.stdout.splitlines()[:3] == [
        f"default acme: at head ({HEAD})", f"default globex: at head ({HEAD})",
        f"default initech: not at head: 2 pending: {REVISIONS[2]}, {REVISIONS[3]} (current {REVISIONS[1]})"]
    assert status.stdout.splitlines()[3].endswith(": 3 tenants (schemas): 2 at head, 1 not at head")
    assert status.stderr.splitlines()[-1].endswith(
        f"not at head: default initech 2 pending: {REVISIONS[2]}, {REVISIONS[3]}")
    as_json = [json.loads(line) for line in run_migrator(["status", "--json"], cwd=project,
                                                         database_url=database_url).stdout.splitlines()]
    assert [(o["tenant"], o["at_head"]) for o in as_json] == [("acme", True), ("globex", True), ("initech", False)]

    wait = run_migrator(["wait", "--timeout", "1", "--interval", "0.2"], cwd=project, database_url=database_url)
    assert wait.returncode == 5
    assert "Waiting for repo default: 1 of 3 tenants behind: initech at " in wait.stderr
    assert wait.stderr.splitlines()[-1].endswith(
        f"repo default: not ready after 1s: 1 of 3 tenants behind: initech at {REVISIONS[1]}, waiting for {HEAD}")
    assert run_migrator(["migrate", "--tenant", "initech"], cwd=project, database_url=database_url).returncode == 0
    ready = run_migrator(["wait", "--timeout", "10"], cwd=project, database_url=database_url)
    assert ready.returncode == 0, ready.stderr
    assert f"Schema ready: 3 tenants of repo default at {HEAD}" in ready.stderr


def test_database_per_tenant(tmp_path: Path, database_url: str, pg_server: Server) -> None:
    names = [pg_server.create_database() for _ in range(2)]
    try:
        query(database_url, "CREATE TABLE tenant_databases (name text)")
        for name in names:
            query(database_url, "INSERT INTO tenant_databases VALUES (%s)", name)
        project = write_project(tmp_path / "p", 'tenant_kind = "database"\n'
                                'tenants_query = "SELECT name FROM tenant_databases"\n')
        result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_FORMAT="json")
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stderr.splitlines()]
        # In JSON every line of a tenant's work carries the tenant: its migrations' lines too.
        assert [(e["tenant"], e["revision"]) for e in events if e["event"].startswith("== Migrated")] == [
            (name, revision) for name in sorted(names) for revision in REVISIONS]
        for name in names:
            url = pg_server.url_for(name)
            assert [r[0] for r in query(url, "SELECT version_num FROM alembic_version")] == [HEAD]
            assert tables(url, "public") == ["alembic_version", "migrator_history", "t1", "t2", "t3", "t4"]
        assert tables(database_url, "public") == ["tenant_databases"]
        assert "2 tenants (databases): 2 migrated" in events[-1]["event"]
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_rollback_needs_a_tenant_and_touches_only_it(tmp_path: Path, database_url: str) -> None:
    project = write_project(tmp_path / "p", 'tenants = ["acme", "globex"]\n')
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    bare = run_migrator(["rollback", "--steps", "1"], cwd=project, database_url=database_url)
    assert bare.returncode == 2
    assert bare.stderr.splitlines()[0].endswith("rollback works on one database: choose the tenant of repo "
                                                "'default' with --tenant NAME")
    typo = run_migrator(["rollback", "--steps", "1", "--tenant", "acmee"], cwd=project, database_url=database_url)
    assert typo.returncode == 2 and "--tenant acmee: not a tenant of repo 'default' (2 listed)" in typo.stderr
    one = run_migrator(["rollback", "--steps", "1", "--tenant", "acme"], cwd=project, database_url=database_url)
    assert one.returncode == 0, one.stderr
    assert tenant_versions(database_url, "acme") == [REVISIONS[2]]
    assert tenant_versions(database_url, "globex") == [HEAD]
    # history visits every tenant, each row naming its tenant.
    rows = [json.loads(line) for line in run_migrator(["history", "--json"], cwd=project,
                                                      database_url=database_url).stdout.splitlines()]
    assert [(r["tenant"], r["revision"], r["outcome"]) for r in rows if r["direction"] == "down"] == [
        ("acme", HEAD, "reverted")]
    assert [r["tenant"] for r in rows].count("globex") == len(REVISIONS)


def test_a_bad_tenants_query_is_one_line_exit_2_and_changes_nothing(tmp_path: Path, database_url: str) -> None:
    """End to end, once: the command line's answer to a query that would write (test_tenant_settings.py and the
    next test check every other bad setting and query without a process each)."""
    query(database_url, "CREATE SEQUENCE keep_seq")
    project = write_project(tmp_path / "p", 'tenants_query = "SELECT \'a\' FROM (SELECT nextval(\'keep_seq\')) s"\n')
    result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_TENANT_SHARDS="1")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.endswith(": ReadOnlySqlTransaction: cannot execute nextval() in a read-only transaction (it must be "
                         "one SELECT of the names: it runs read-only, as a subquery)")
    assert query(database_url, "SELECT nspname FROM pg_namespace WHERE nspname = 'a'") == []
    assert query(database_url, "SELECT last_value, is_called FROM keep_seq") == [(1, False)]


@pytest.fixture(scope="module")
def query_database(pg_server: Server) -> Iterator[str]:
    """One database for the bad queries, which must change nothing in it."""
    name = pg_server.create_database()
    url = pg_server.url_for(name)
    query(url, "CREATE TABLE keep (id int)")
    query(url, "CREATE SEQUENCE keep_seq")
    yield url
    pg_server.drop_database(name)


@pytest.mark.parametrize(("tenants_query", "message"), [
    ("SELECT nope FROM nowhere",
     'tenants_query failed on {db}: UndefinedTable: relation "nowhere" does not exist {how}'),
    ("SELECT 1, 2", "tenants_query returned 2 columns: it must return one, the tenants' names"),
    ("SELECT 'x y'", "tenants_query: 'x y' is not a tenant name (letters, digits, _, $ or -, starting with a letter "
                     "or _, at most 63 characters)"),
    ("SELECT 'a' UNION ALL SELECT 'a'", "tenants_query: 'a' is listed twice"),
    ("SELECT NULL", "tenants_query: None is not a tenant name (letters, digits, _, $ or -, starting with a letter "
                    "or _, at most 63 characters)"),
    ("SELECT 1; DROP TABLE keep", "tenants_query failed on {db}: SyntaxError: syntax error at or near \";\" {how}"),
    ("DELETE FROM keep RETURNING 'a'",
     "tenants_query failed on {db}: SyntaxError: syntax error at or near \"FROM\" {how}"),
    ("SELECT 'a' FROM (SELECT nextval('keep_seq')) s", "tenants_query failed on {db}: ReadOnlySqlTransaction: "
                                                       "cannot execute nextval() in a read-only transaction {how}"),
])
def test_a_bad_tenants_query_is_a_config_error_and_changes_nothing(tmp_path: Path, query_database: str,
                                                                   tenants_query: str, message: str) -> None:
    database_url = query_database
    repo = Repo("default", tmp_path, tmp_path, tmp_path, tenants=Tenants(query=tenants_query))
    target = Target(repo, database_config({"DATABASE_URL": database_url}))
    with pytest.raises(ConfigError) as raised:
        tenants.listed(target, Settings())
    assert raised.value.exit_code == 2
    how = "(it must be one SELECT of the names: it runs read-only, as a subquery)"
    assert str(raised.value) == f"repo 'default': {message.format(db=target.db.description, how=how)}"
    assert tables(database_url, "public") == ["keep"]
    assert query(database_url, "SELECT last_value, is_called FROM keep_seq") == [(1, False)]


def test_shards_split_the_tenants_between_processes(tmp_path: Path, database_url: str) -> None:
    names = [f"tenant_{i:02d}" for i in range(12)]
    make_tenants_table(database_url, names)
    project = write_project(tmp_path / "p", QUERY_CONFIG, revisions=1)
    taken = []
    for index, var in enumerate(("MIGRATOR_TENANT_SHARD", "JOB_COMPLETION_INDEX")):
        result = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_TENANT_SHARDS="2",
                              env={var: str(index)})
        assert result.returncode == 0, result.stderr
        assert f", shard {index} of 2" in result.stderr.splitlines()[0]
        taken.append({line.rsplit(" schema ", 1)[1].split()[0] for line in result.stderr.splitlines()
                      if "] Migrated " in line})
    assert taken[0] and taken[1] and not taken[0] & taken[1]
    assert taken[0] | taken[1] == set(names)
