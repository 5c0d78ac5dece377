"""Shapes met in real public Alembic histories of PostgreSQL projects, each reduced to a small migration of our own.

Each test runs the shape with `migrator` and, where the point is that migrator drops into an Alembic project
unchanged, with the plain `alembic` command on the same project and a second fresh database, and compares
what the two leave behind. None of these files comes from those projects.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HEAD, add_revision, fresh_database, migrator_env, query, run_migrator, running_lines
from tests.postgres import Server

NEXT = "20220101000000"
LATER = "20220101000001"
LEFT, RIGHT, MIDDLE, MERGE = "20220102000001", "20220102000002", "20220102000003", "20220102000009"


@pytest.fixture
def other_url(pg_server: Server) -> Iterator[str]:
    """A second fresh database on the same server, for the plain `alembic` command."""
    yield from fresh_database(pg_server)


def alembic(args: list[str], *, cwd: Path, database_url: str | None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=cwd, capture_output=True, text=True,
                          env=migrator_env(database_url, **env), timeout=120, check=False)


def versions(url: str) -> list[str]:
    return sorted(str(row[0]) for row in query(url, "SELECT version_num FROM alembic_version"))


def indexes(url: str) -> list[tuple[object, ...]]:
    """Every index outside the catalogs, with its definition and whether it is valid."""
    return query(url, "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                      "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = 'public' AND c.relname NOT LIKE 'migrator_history%' ORDER BY 1")


def outcomes(url: str, revision: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT outcome FROM migrator_history WHERE revision = %s ORDER BY id",
                                    revision)]


# --- pypi/warehouse: the migration's own commit, then an autocommit block ---------------------------------

COMMIT_AFTER_DDL = """
op.create_index("users_name_idx", "users", ["name"])
# CREATE INDEX CONCURRENTLY cannot run in a transaction: close ours first.
op.get_bind().commit()
with op.get_context().autocommit_block():
    op.create_index("users_inserted_at_idx", "users", ["inserted_at"], postgresql_concurrently=True)
"""
COMMIT_FIRST = """
op.get_bind().commit()

with op.get_context().autocommit_block():
    op.create_index("users_inserted_at_idx", "users", ["inserted_at"], postgresql_concurrently=True)
"""


@pytest.mark.parametrize("upgrade", [COMMIT_AFTER_DDL, COMMIT_FIRST], ids=["after_ddl", "first"])
def test_commit_through_the_bind_before_an_autocommit_block(project: Path, database_url: str, other_url: str,
                                                            upgrade: str) -> None:
    """`op.get_bind().commit()` right before `autocommit_block()` (needed under an env.py that keeps one
    transaction open, as warehouse's does): Alembic applies it; so must migrator, stamped and recorded."""
    add_revision(project, NEXT, HEAD, upgrade, 'op.drop_index("users_inserted_at_idx", table_name="users")',
                 name="concurrent_index")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    reference = alembic(["upgrade", "head"], cwd=project, database_url=other_url)
    assert reference.returncode == 0, reference.stderr
    assert result.returncode == 0, result.stderr
    assert versions(database_url) == versions(other_url) == [NEXT]
    assert indexes(database_url) == indexes(other_url)
    assert all(valid for _, _, valid in indexes(database_url))
    assert outcomes(database_url, NEXT) == ["applied"]


def test_batched_data_migration_committing_through_the_bind(project: Path, database_url: str,
                                                            other_url: str) -> None:
    """A backfill that commits every batch with `op.get_bind().commit()`, then makes the column NOT NULL
    (warehouse's env.py commits whatever is open at the end). The statements after the last batch and the
    version stamp must commit too, or the run must fail: never `== Migrated` and exit 0 with them rolled back."""
    upgrade = """
conn = op.get_bind()
while conn.execute(sa.text("SELECT count(*) FROM users WHERE bio IS NULL")).scalar():
    conn.execute(sa.text("UPDATE users SET bio = 'none' WHERE id IN "
                         "(SELECT id FROM users WHERE bio IS NULL LIMIT 2)"))
    op.get_bind().commit()
op.alter_column("users", "bio", existing_type=sa.Text(), nullable=False)
"""
    for url in (database_url, other_url):
        assert run_migrator(["migrate"], cwd=project, database_url=url).returncode == 0
        query(url, "INSERT INTO users (name, email) SELECT 'u' || g, 'u' || g || '@x' FROM generate_series(1, 5) g")
    add_revision(project, NEXT, HEAD, upgrade, name="backfill_bio")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    reference = alembic(["upgrade", "head"], cwd=project, database_url=other_url)
    assert reference.returncode == 0, reference.stderr
    assert result.returncode == 0, result.stderr
    not_null = "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'bio'"
    assert query(database_url, not_null) == query(other_url, not_null) == [("NO",)]
    assert versions(database_url) == [NEXT]
    assert outcomes(database_url, NEXT) == ["applied"]


# --- hypothesis/h: op.execute("COMMIT"), then a concurrent index outside any autocommit block -------------

def test_explicit_commit_then_concurrent_index_fails_truthfully(project: Path, database_url: str,
                                                               other_url: str) -> None:
    """Written for psycopg2, which sends no BEGIN after a COMMIT it did not issue; psycopg 3 sees the session
    idle and begins again, so the build fails under plain Alembic too. migrator says what happened, keeps
    its word about the next run, and `resolve --rerun` after the fix (an autocommit block) completes it."""
    h_style = """
# Creating a concurrent index does not work inside a transaction
op.execute("COMMIT")
op.create_index(op.f("ix__users_name"), "users", ["name"], postgresql_concurrently=True)
"""
    path = add_revision(project, NEXT, HEAD, h_style, name="users_name_index")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    reference = alembic(["upgrade", "head"], cwd=project, database_url=other_url)
    assert reference.returncode != 0 and "cannot run inside a transaction block" in reference.stderr
    assert result.returncode == 6, result.stderr
    last = result.stderr.splitlines()[-1]
    assert f"migration {NEXT} (users_name_index) failed after part of it committed" in last
    assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in last
    assert versions(database_url) == versions(other_url) == [HEAD]
    status = run_migrator(["status"], cwd=project, database_url=database_url)
    assert f"left part-way: {NEXT} (upgrade)" in status.stdout
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 6 and f"migration {NEXT} (users_name_index) was left part-way" in again.stderr
    assert "create index" not in again.stderr  # refused before running anything

    path.write_text(path.read_text().replace('    op.execute("COMMIT")\n    op.create_index',
                                             "    with op.get_context().autocommit_block():\n"
                                             "        op.create_index"))
    assert run_migrator(["resolve", NEXT, "--rerun"], cwd=project, database_url=database_url).returncode == 0
    fixed = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert fixed.returncode == 0, fixed.stderr
    assert versions(database_url) == [NEXT]
    assert ("ix__users_name", "CREATE INDEX ix__users_name ON public.users USING btree (name)", True) \
        in indexes(database_url)


# --- pypi/warehouse: a data migration that reads rows cannot be rendered offline --------------------------

def test_a_data_migration_that_reads_rows_is_refused_offline(project: Path) -> None:
    """`for row in op.get_bind().execute(...)` has no offline counterpart (Alembic fails with a TypeError):
    `migrator sql` says which migration and why in one line, exit 2, and prints no partial SQL."""
    add_revision(project, NEXT, HEAD, """
for row in op.get_bind().execute(sa.text("SELECT id, name FROM users")):
    op.execute(sa.text("UPDATE users SET email = lower(email) WHERE id = :id").bindparams(id=row.id))
""", name="lowercase_emails")
    result = run_migrator(["sql"], cwd=project, database_url=None)
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert f"-> {NEXT} cannot be rendered offline" in last and "needs a database" in last
    assert "Traceback" not in result.stderr and "please report" not in result.stderr
    assert result.stdout == ""


# --- pypi/warehouse: % in DDL and raw SQL, online and offline ---------------------------------------------

PERCENT = """
op.create_table("classifiers", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
op.create_check_constraint("ck_no_private", "classifiers", "name not ilike 'private ::%'")
op.execute("INSERT INTO classifiers (name) VALUES ('100% pure')")
op.execute(sa.text("UPDATE classifiers SET name = name || ' %' WHERE name LIKE '%pure'"))
"""


def test_percent_signs_are_sent_and_rendered_once(project: Path, database_url: str) -> None:
    add_revision(project, NEXT, HEAD, PERCENT, name="percent")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ck_no_private'") \
        == [("CHECK ((name !~~* 'private ::%'::text))",)]
    assert query(database_url, "SELECT name FROM classifiers") == [("100% pure %",)]
    rendered = run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None)
    assert rendered.returncode == 0, rendered.stderr
    assert "%%" not in rendered.stdout
    assert "name not ilike 'private ::%'" in rendered.stdout and "VALUES ('100% pure')" in rendered.stdout
    reference = alembic(["upgrade", f"{HEAD}:head", "--sql"], cwd=project, database_url=None)
    assert reference.returncode == 0, reference.stderr
    assert rendered.stdout == reference.stdout


# --- merges (warehouse, polar): three branches and a black-formatted merge file ---------------------------

def add_merge(project: Path, revision: str, parents: tuple[str, ...]) -> None:
    """A merge revision as `alembic merge` writes it and black then formats it: the tuple over several lines."""
    listed = "".join(f'    "{p}",\n' for p in parents)
    (project / "migrations" / "versions" / f"{revision}_merge.py").write_text(
        f'"""merge"""\n\nrevision = "{revision}"\ndown_revision = (\n{listed})\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")


def three_branches(project: Path) -> None:
    for rev, table in ((LEFT, "lefts"), (RIGHT, "rights"), (MIDDLE, "middles")):
        add_revision(project, rev, HEAD, f"op.create_table('{table}', sa.Column('id', sa.Integer))",
                     f"op.drop_table('{table}')", name=f"add_{table}")
    add_merge(project, MERGE, (LEFT, RIGHT, MIDDLE))


def test_a_black_formatted_merge_migrates_like_alembic(project: Path, database_url: str, other_url: str) -> None:
    three_branches(project)
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    reference = alembic(["upgrade", "head"], cwd=project, database_url=other_url)
    assert result.returncode == 0 and reference.returncode == 0, result.stderr + reference.stderr
    assert versions(database_url) == versions(other_url) == [MERGE]
    assert len(running_lines(result.stderr)) == 6  # the example's two, three branches, the merge
    tables = "SELECT tablename FROM pg_tables WHERE tablename IN ('lefts', 'rights', 'middles') ORDER BY 1"
    assert query(database_url, tables) == query(other_url, tables) == [("lefts",), ("middles",), ("rights",)]
    rendered = run_migrator(["sql", "--from", HEAD], cwd=project, database_url=None, PYTHONHASHSEED="0")
    offline = alembic(["upgrade", f"{HEAD}:heads", "--sql"], cwd=project, database_url=None, PYTHONHASHSEED="0")
    assert rendered.returncode == 0 and offline.returncode == 0, rendered.stderr + offline.stderr
    assert rendered.stdout == offline.stdout


def test_no_op_after_a_black_formatted_merge_takes_the_fast_path(project: Path, database_url: str) -> None:
    """A merge file's tuple over several lines is still a literal: the no-op answers from the files' text."""
    three_branches(project)
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert "Migrations already up" in again.stderr
    assert "fast path not taken" not in again.stderr, again.stderr


# --- pypi/warehouse: an f-string that reads `revision` in a function ------------------------------------

def test_no_op_takes_the_fast_path_when_an_f_string_reads_revision(project: Path, database_url: str) -> None:
    """`raise RuntimeError(f"Cannot downgrade past revision: {revision!r}")` (three warehouse revisions) only
    reads the name; the text still says what `revision` is, so the no-op answers from it."""
    add_revision(project, NEXT, HEAD, "op.add_column('users', sa.Column('age', sa.Integer))",
                 'raise RuntimeError(f"Cannot downgrade past revision: {revision!r}")', name="irreversible")
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert "Migrations already up" in again.stderr
    assert "fast path not taken" not in again.stderr, again.stderr
    back = run_migrator(["rollback", "--steps", "1"], cwd=project, database_url=database_url)
    assert back.returncode == 1 and f"Cannot downgrade past revision: '{NEXT}'" in back.stderr.splitlines()[-1]


# --- polarsource/polar: autocommit blocks in upgrade and downgrade, rolled back and forth -----------------

def concurrent_index(name: str, columns: str, extra: str = "") -> tuple[str, str]:
    upgrade = f"""
with op.get_context().autocommit_block():
    # A build interrupted earlier leaves an INVALID index of that name: drop it first.
    op.drop_index("{name}", table_name="users", if_exists=True, postgresql_concurrently=True)
    op.create_index("{name}", "users", {columns}, postgresql_concurrently=True{extra})
"""
    downgrade = f"""
with op.get_context().autocommit_block():
    op.drop_index("{name}", table_name="users", if_exists=True, postgresql_concurrently=True)
"""
    return upgrade, downgrade


def test_rollback_steps_through_autocommit_downgrades_like_alembic(project: Path, database_url: str,
                                                                   other_url: str) -> None:
    add_revision(project, NEXT, HEAD, *concurrent_index(
        "users_name_pets_uniq", '["name", "number_of_pets"]',
        ', unique=True, postgresql_nulls_not_distinct=True, postgresql_where=sa.text("bio IS NULL")'),
        name="unique_name_pets")
    add_revision(project, LATER, NEXT, *concurrent_index("users_updated_at_idx", '["updated_at"]'),
                 name="updated_at_index")
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    assert alembic(["upgrade", "head"], cwd=project, database_url=other_url).returncode == 0
    at_head = indexes(database_url)
    assert at_head == indexes(other_url) and all(valid for _, _, valid in at_head)

    back = run_migrator(["rollback", "--steps", "2"], cwd=project, database_url=database_url)
    reference = alembic(["downgrade", "-2"], cwd=project, database_url=other_url)
    assert back.returncode == 0 and reference.returncode == 0, back.stderr + reference.stderr
    assert versions(database_url) == versions(other_url) == [HEAD]
    assert indexes(database_url) == indexes(other_url)
    assert {name for name, _, _ in indexes(database_url)}.isdisjoint({"users_name_pets_uniq", "users_updated_at_idx"})
    assert outcomes(database_url, LATER) == ["applied", "reverted"]

    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert indexes(database_url) == at_head


# --- pypi/warehouse: an autogenerated unnamed constraint, which its downgrade cannot drop ----------------

def test_a_downgrade_dropping_an_unnamed_constraint_fails_like_alembic(project: Path, database_url: str,
                                                                       other_url: str) -> None:
    """`op.create_foreign_key(None, ...)` works (PostgreSQL names it); `op.drop_constraint(None, ...)` cannot
    compile. The rollback stops there, one line naming the migration, the migrations above it reverted."""
    add_revision(project, NEXT, HEAD, """
op.create_table("pets", sa.Column("id", sa.Integer, primary_key=True), sa.Column("owner_id", sa.Integer))
op.create_foreign_key(None, "pets", "users", ["owner_id"], ["id"])
""", 'op.drop_constraint(None, "pets", type_="foreignkey")\nop.drop_table("pets")', name="pets")
    add_revision(project, LATER, NEXT, "op.add_column('pets', sa.Column('name', sa.Text))",
                 "op.drop_column('pets', 'name')", name="pet_names")
    for url in (database_url, other_url):
        assert run_migrator(["migrate"], cwd=project, database_url=url).returncode == 0
    foreign_keys = "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = 'pets'::regclass"
    assert query(database_url, foreign_keys) == [("pets_owner_id_fkey",)]
    result = run_migrator(["rollback", HEAD], cwd=project, database_url=database_url)
    reference = alembic(["downgrade", HEAD], cwd=project, database_url=other_url)
    assert result.returncode == 1 and reference.returncode != 0, result.stderr + reference.stderr
    last = result.stderr.splitlines()[-1]
    assert f"migration {NEXT} (pets) failed and was rolled back" in last and "it has no name" in last
    assert versions(database_url) == versions(other_url) == [NEXT]
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'pets' ORDER BY 1"
    assert query(database_url, columns) == query(other_url, columns) == [("id",), ("owner_id",)]


# --- ckan/ckan: a migration that reads a setting of alembic.ini ------------------------------------------

def test_a_migration_reads_a_main_option_of_alembic_ini(project: Path, database_url: str, other_url: str) -> None:
    """CKAN's migrations skip themselves when alembic.ini says an older migration tool applied them."""
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\nlegacy_migrate_version = 7\n", 1))
    add_revision(project, NEXT, HEAD, """
legacy = op.get_context().config.get_main_option("legacy_migrate_version")
if legacy and int(legacy) >= 7:
    return
op.create_table("legacy", sa.Column("id", sa.Integer))
""", name="skipped_when_legacy")
    result = run_migrator(["migrate"], cwd=project, database_url=database_url)
    reference = alembic(["upgrade", "head"], cwd=project, database_url=other_url)
    assert result.returncode == 0 and reference.returncode == 0, result.stderr + reference.stderr
    assert versions(database_url) == versions(other_url) == [NEXT]
    assert query(database_url, "SELECT to_regclass('legacy')") == query(other_url, "SELECT to_regclass('legacy')") \
        == [(None,)]
