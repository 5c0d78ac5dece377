"""`migrator verify` end to end, as a subprocess on real PostgreSQL, with real broken histories.

Each project is three revisions (users; an index on users.email; users.bio) with models that match them; each
test breaks one thing the way projects break it and asserts the exact line verify prints and its exit code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg

from migrator import schema_snapshot
from tests.conftest import dbname, migrator_env, query, run_migrator

ENV_PY = """\
from migrator.alembic_env import run_migrations

from models import metadata

run_migrations(target_metadata=metadata)
"""

MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("bio", sa.Text),{extra}
    sa.Index("users_email_index", "email"),
)
"""

REVISION = '''\
"""{message}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

CREATE_USERS = ("create_users",
                '    op.create_table("users", sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),\n'
                '                    sa.Column("email", sa.Text, nullable=False))',
                '    op.drop_table("users")')
ADD_INDEX = ("add_email_index", '    op.create_index("users_email_index", "users", ["email"])',
             '    op.drop_index("users_email_index", table_name="users")')
ADD_BIO = ("add_bio", '    op.add_column("users", sa.Column("bio", sa.Text))', '    op.drop_column("users", "bio")')

PASSED = [
    "ok    single head: 0003 (add_bio)",
    "ok    upgrade: 3 revision(s) from base to 0003, one by one",
    "ok    up/down/up: each of 3 revision(s) downgrades to the schema before its upgrade and upgrades again",
    "ok    drift: the models match the schema at 0003 (add_bio)",
    "ok    offline sql: 3 of 3 revision(s) render without a database",
]


def write_project(root: Path, revisions: list[tuple[str, str, str]] | None = None, *,
                  downs: tuple[str | tuple[str, ...] | None, ...] = (None, "0001", "0002"),
                  extra_model: str = "") -> Path:
    """A project of three revisions 0001..0003 (default: users, its email index, users.bio) and its models."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "models.py").write_text(MODELS.format(extra=extra_model))
    for number, ((message, upgrade, downgrade), down) in enumerate(
            zip(revisions or [CREATE_USERS, ADD_INDEX, ADD_BIO], downs, strict=True), start=1):
        rev = f"{number:04d}"
        (versions / f"{rev}_{message}.py").write_text(REVISION.format(
            message=message, rev=rev, down=repr(down), upgrade=upgrade, downgrade=downgrade))
    return root


def verify(project: Path, database_url: str | None, *args: str) -> tuple[int, list[str]]:
    """verify's exit code and its stdout lines, the last one's duration as N.N."""
    proc = run_migrator(["verify", *args], cwd=project, database_url=database_url)
    lines = proc.stdout.splitlines()
    if lines:
        lines[-1] = re.sub(r" in \d+\.\ds$", " in N.Ns", lines[-1])
    return proc.returncode, lines


def is_empty(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return schema_snapshot.is_empty(schema_snapshot.read(conn, ()))


def test_a_sound_history_passes_every_check_on_an_embedded_postgresql(tmp_path: Path) -> None:
    """No database named: verify starts its own (pgserver) and deletes it."""
    code, lines = verify(write_project(tmp_path), None)
    assert (code, lines) == (0, [*PASSED, "verify: 5 passed, 0 failed, 0 skipped in N.Ns"])


FORGETS_THE_INDEX = (ADD_INDEX[0], ADD_INDEX[1], "    pass")
RETYPES_EMAIL = (ADD_BIO[0], ADD_BIO[1], ADD_BIO[2] + '\n    op.alter_column("users", "email", type_=sa.String(200))')
CHANGED_EMAIL = "changed column public.users.email: was text not null, now character varying(200) not null"


RETYPED_0003 = (f"FAIL  up/down/up: 0003 (add_bio): the downgrade {CHANGED_EMAIL}; the upgrade applied again differs "
                f"from its first run: {CHANGED_EMAIL}")


def test_downgrades_that_do_not_restore_the_schema_fail_up_down_up(tmp_path: Path, database_url: str) -> None:
    """0002's downgrade forgets its index (its upgrade then fails again); 0003's changes a column it never
    touched (its upgrade then runs, on a different schema)."""
    project = write_project(tmp_path, [CREATE_USERS, FORGETS_THE_INDEX, RETYPES_EMAIL])
    code, lines = verify(project, database_url)
    assert code == 1
    assert lines[2:] == [
        "FAIL  up/down/up: 0002 (add_email_index): the downgrade left behind index public.users_email_index "
        "(CREATE INDEX users_email_index ON public.users USING btree (email)); the upgrade applied again failed: "
        "migration 0002 (add_email_index) failed and was rolled back: DuplicateTable: relation "
        "\"users_email_index\" already exists; nothing was applied",
        # Checked although 0002 failed, and drift too: verify rebuilt the database from base after each failure.
        RETYPED_0003, PASSED[3], PASSED[4], "verify: 4 passed, 1 failed, 0 skipped in N.Ns"]
    assert is_empty(database_url)  # the named database is left as verify found it

    code, lines = verify(project, database_url, "--downgrades-from", "0003")  # 0001 and 0002 only upgrade
    assert (code, lines[2:4]) == (1, [RETYPED_0003, PASSED[3]])


MERGE = ("merge", "    pass", "    pass")
NOOP = ("noop", "    pass", "    pass")


def test_two_heads_fail_the_single_head_check_and_every_branch_is_verified(tmp_path: Path,
                                                                          database_url: str) -> None:
    """0002 and 0003 branch from 0001 and merge in 0004; 0005 branches from 0001 again and is never merged.
    Each revision is taken down alone, also beside its sibling branches and at the merge point."""
    project = write_project(tmp_path, [CREATE_USERS, ADD_INDEX, ADD_BIO, MERGE, NOOP],
                            downs=(None, "0001", "0001", ("0002", "0003"), "0001"))
    code, lines = verify(project, database_url)
    assert (code, lines) == (1, [
        "FAIL  single head: 2 heads, 0004 (merge), 0005 (noop): merge them (alembic merge heads) or rebase the "
        "newer one on the other",
        "ok    upgrade: 5 revision(s) from base to 0004, 0005, one by one",
        "ok    up/down/up: each of 5 revision(s) downgrades to the schema before its upgrade and upgrades again",
        "ok    drift: the models match the schema at 0004 (merge), 0005 (noop)",
        "ok    offline sql: 4 of 4 revision(s) render without a database (1 merge point(s) left out)",
        "verify: 4 passed, 1 failed, 0 skipped in N.Ns",
    ])


READS_DATA = (ADD_BIO[0],
              '    if op.get_bind().execute(sa.text("SELECT count(*) FROM users")).scalar() > 1000:\n'
              '        raise RuntimeError("too many users to add a column here")\n' + ADD_BIO[1], ADD_BIO[2])
NEEDS_DATABASE = ("note  offline sql: 0003 (add_bio): upgrade 0002 -> 0003 cannot be rendered offline (AttributeError: "
                  "'NoneType' object has no attribute 'scalar'): it needs a database (it reads "
                  "data, or branches on what it finds); review it in the migration file instead")


NO_METADATA = ("skip  drift: env.py gives no target_metadata (pass your models' metadata: "
               "run_migrations(target_metadata=Base.metadata), importable where verify runs)")


def test_a_migration_that_needs_a_database_is_a_note_and_fails_with_strict(tmp_path: Path,
                                                                          database_url: str) -> None:
    """Its env.py gives no metadata, too: drift is skipped with the reason, which is no failure either."""
    project = write_project(tmp_path, [CREATE_USERS, ADD_INDEX, READS_DATA])
    (project / "migrations" / "env.py").write_text(
        "from migrator.alembic_env import run_migrations\n\nrun_migrations(target_metadata=None)\n")
    code, lines = verify(project, database_url)
    assert (code, lines[3:]) == (0, [
        NO_METADATA,
        NEEDS_DATABASE,
        "ok    offline sql: 2 of 3 revision(s) render without a database; the others need one (reported; --strict "
        "fails them)",
        "verify: 4 passed, 0 failed, 1 skipped, 1 note(s) in N.Ns"])
    code, lines = verify(project, database_url, "--strict")
    assert (code, lines[3:]) == (1, [
        NO_METADATA,
        NEEDS_DATABASE.replace("note", "FAIL", 1),
        "FAIL  offline sql: 2 of 3 revision(s) render without a database",
        "verify: 3 passed, 1 failed, 1 skipped in N.Ns"])


def test_models_that_do_not_load_skip_drift_with_the_reason(tmp_path: Path, database_url: str) -> None:
    """An adopted env.py names its models through a function; where they do not import, verify says why it could
    not compare them (not that env.py gives none: it does)."""
    project = write_project(tmp_path)
    (project / "migrations" / "env.py").write_text(
        "from migrator.alembic_env import run_migrations\n\n\ndef target_metadata():\n"
        "    from shop.models import metadata\n\n    return metadata\n\n\n"
        "run_migrations(target_metadata, naming_convention={'ix': 'ix_%(column_0_label)s'})\n")
    code, lines = verify(project, database_url)
    assert (code, lines[3]) == (0, "skip  drift: env.py's target_metadata() failed where verify runs "
                                   "(ModuleNotFoundError: No module named 'shop'): run verify where your models "
                                   "import (your app's packages installed, its settings set)")


def test_a_rebuild_that_fails_after_a_failed_cycle_still_reports_every_check(tmp_path: Path,
                                                                             database_url: str) -> None:
    """0002 creates a role (it belongs to the server, not to the database) and its downgrade keeps it: the
    upgrade applied again fails, and so does verify's rebuild from base after that failed cycle. The checks are
    still reported, each on its line, with the summary: not one [error] line on stderr in their place."""
    role = f"verify_{dbname(database_url)}"
    creates_role = ("create_role", f'    op.execute("CREATE ROLE {role}")', "    pass")
    project = write_project(tmp_path, [CREATE_USERS, creates_role, ADD_BIO])
    exists = (f"migration 0002 (create_role) failed and was rolled back: DuplicateObject: role \"{role}\" already "
              "exists; ")
    try:
        code, lines = verify(project, database_url)
    finally:
        query(database_url, f"DROP ROLE IF EXISTS {role}")
    assert (code, lines) == (1, [
        "ok    single head: 0003 (add_bio)",
        f"skip  upgrade: stopped at 0002 (create_role) (revision 2 of 3): the rebuild from base after its failed "
        f"up/down/up failed: {exists}earlier migrations stay applied",
        f"FAIL  up/down/up: 0002 (create_role): the upgrade applied again failed: {exists}nothing was applied",
        "skip  drift: the upgrade did not reach head",
        "ok    offline sql: 3 of 3 revision(s) render without a database",
        "verify: 2 passed, 1 failed, 2 skipped in N.Ns"])


def test_a_password_in_what_a_downgrade_left_behind_is_masked(tmp_path: Path, database_url: str) -> None:
    """The line that shows a left-behind function's definition masks a PASSWORD literal in it, as the logs do."""
    rotates = ("rotate_password",
               '    op.execute("CREATE FUNCTION rotate() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN "\n'
               """               "EXECUTE 'ALTER ROLE app PASSWORD ''Rotated-Secret-7'''; END $f$")""", "    pass")
    code, lines = verify(write_project(tmp_path, [CREATE_USERS, rotates, ADD_BIO]), database_url)
    assert code == 1
    assert lines[2].startswith("FAIL  up/down/up: 0002 (rotate_password): the downgrade left behind function "
                               "public.rotate() (CREATE OR REPLACE FUNCTION public.rotate() RETURNS void LANGUAGE "
                               "plpgsql AS $function$ BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''***'''; END")
    assert "Rotated-Secret-7" not in "\n".join(lines)


def test_a_model_that_drifts_names_the_migration_it_lacks(tmp_path: Path, database_url: str) -> None:
    project = write_project(tmp_path, extra_model='\n    sa.Column("age", sa.Integer),')
    code, lines = verify(project, database_url)
    assert (code, lines[3:]) == (1, [
        "FAIL  drift: the models differ from the schema at 0003 (add_bio); a migration to match them would run: "
        "op.add_column('users', sa.Column('age', sa.Integer(), nullable=True))",
        PASSED[4],
        "verify: 4 passed, 1 failed, 0 skipped in N.Ns"])


def test_a_revision_that_does_not_upgrade_stops_the_walk(tmp_path: Path, database_url: str) -> None:
    broken = (ADD_INDEX[0], '    op.create_index("users_email_index", "users", ["e_mail"])', ADD_INDEX[2])
    code, lines = verify(write_project(tmp_path, [CREATE_USERS, broken, ADD_BIO]), database_url)
    assert (code, lines[1:4]) == (1, [
        "FAIL  upgrade: 0002 (add_email_index) (revision 2 of 3): migration 0002 (add_email_index) failed and was "
        "rolled back: UndefinedColumn: column \"e_mail\" does not exist; nothing was applied",
        "skip  up/down/up: stopped at 0002 (add_email_index), which does not upgrade",
        "skip  drift: the upgrade did not reach head"])


def test_a_database_that_holds_something_is_refused_and_kept(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)")
    project = write_project(tmp_path)
    proc = run_migrator(["verify"], cwd=project, database_url=database_url)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines()[-1].endswith(
        f"[error] verify refuses postgres@{database_url.split('host=')[1]}/{dbname(database_url)}: it is not empty "
        "(column public.orders.id, table public.orders); name an empty database, pass --wipe if everything in it "
        "may be dropped, or unset --database-url and DATABASE_URL to verify on an embedded PostgreSQL (pip install "
        "'.[verify]' in migrator's clone, or pipx inject migrator pgserver)")
    assert query(database_url, "SELECT id FROM orders") == [(1,)]

    code, lines = verify(project, database_url, "--wipe")
    assert (code, lines) == (0, [*PASSED, "verify: 5 passed, 0 failed, 0 skipped in N.Ns"])
    assert is_empty(database_url)


def test_a_password_on_the_command_line_is_refused(tmp_path: Path) -> None:
    proc = run_migrator(["verify", "--database-url", "postgresql://app:hunter2@db/app"], cwd=write_project(tmp_path),
                        database_url=None)
    assert proc.returncode == 2
    assert "hunter2" not in proc.stderr + proc.stdout
    assert proc.stderr.splitlines()[-1].endswith(
        "[error] --database-url must not carry a password (the process list shows it to every user of the "
        "machine): put the password in PGPASSWORD, DATABASE_PASSWORD_FILE or ~/.pgpass, or pass the whole URL in "
        "DATABASE_URL")


def test_without_pgserver_verify_names_the_extra(tmp_path: Path) -> None:
    """pgserver's absence, emulated by blocking its import (None in sys.modules), as where it is not installed."""
    code = ("import sys; sys.modules['pgserver'] = None; sys.argv = ['migrator', 'verify']; "
            "from migrator.cli import entrypoint; entrypoint()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=write_project(tmp_path), capture_output=True, text=True,
                          env=migrator_env(None), timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith(
        "[error] verify needs a throwaway database: install the embedded PostgreSQL with pip install "
        "'.[verify]' in migrator's clone, or pipx inject migrator pgserver, or name an empty database with "
        "--database-url or DATABASE_URL")


def test_the_snapshot_ignores_column_order_and_sees_a_changed_default(database_url: str) -> None:
    """A column dropped and added back comes last (PostgreSQL cannot reorder): the same schema to verify."""
    query(database_url, "CREATE TABLE t (a int, b text)")
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = schema_snapshot.read(conn, ())
        conn.execute("ALTER TABLE t DROP COLUMN a; ALTER TABLE t ADD COLUMN a int")
        assert not schema_snapshot.compare(before, schema_snapshot.read(conn, ()))
        conn.execute("ALTER TABLE t ALTER COLUMN b SET DEFAULT 'x'; CREATE INDEX t_b ON t (b); ALTER TABLE t "
                     "DROP COLUMN a")
        assert schema_snapshot.compare(before, schema_snapshot.read(conn, ())).describe(
            added="left behind", removed="did not restore") == (
            "left behind index public.t_b (CREATE INDEX t_b ON public.t USING btree (b)); did not restore column "
            "public.t.a (integer); changed column public.t.b: was text, now text default 'x'::text")
