"""SQL statements described in Ecto's words, at the right level, with what the runner needs to know.

The statements are the shapes real Alembic histories send: Alembic's own DDL and bookkeeping, SQLAlchemy's
reflection queries, and the raw `op.execute()` SQL people write (enum values, sequences, COMMIT before
CONCURRENTLY, data fixes in CTEs, triggers, policies, grants).
"""

from __future__ import annotations

import re

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.statements import EXECUTE_PREVIEW, Operation, describe, log_statement

INFO, DEBUG = "info", "debug"
C, E = "concurrent", "ends_transaction"


def row(sql: str, text: str, level: str = INFO, index: str | None = None, *flags: str) -> object:
    return pytest.param(sql, text, level, index, set(flags), id=text[:70])


# (statement, description, level, index, flags)
SHAPES = [
    # tables: Alembic's DDL and raw SQL, quoted and lower-case names, comments before the statement
    row("CREATE TABLE users (id BIGINT)", "create table users"),
    row("CREATE TABLE IF NOT EXISTS public.users (id int)", "create table public.users"),
    row("CREATE UNLOGGED TABLE staging AS SELECT * FROM users", "create table staging"),
    row("CREATE TABLE m2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "create table m2024 partition of measurements"),
    row("-- why\n/* block */ CREATE TABLE t (id int)", "create table t"),
    row('create table "Users" ("Id" int)', "create table Users"),
    row("DROP TABLE IF EXISTS a, b CASCADE", "drop table a, b"),
    # indexes
    row("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_index ON users (email)",
        "create index users_email_index", INFO, "users_email_index", C),
    row("CREATE INDEX ix_users_email ON users (email)", "create index ix_users_email", INFO, "ix_users_email"),
    row('CREATE INDEX CONCURRENTLY "IX_Users_Email" ON public."Users" (email)', "create index IX_Users_Email",
        INFO, "IX_Users_Email", C),
    row("CREATE INDEX CONCURRENTLY ON users (email)", "create index on users", INFO, None, C),
    row("DROP INDEX CONCURRENTLY IF EXISTS users_email_index", "drop index users_email_index", INFO,
        "users_email_index", C),
    row("DROP INDEX app.ix_a", "drop index app.ix_a", INFO, "app.ix_a"),
    row("ALTER INDEX IF EXISTS ix_students_email RENAME TO ix_users_email",
        "alter index ix_students_email rename to ix_users_email", INFO, "ix_users_email"),
    row("ALTER INDEX ix_a SET TABLESPACE fast", "alter index ix_a set tablespace fast", INFO, "ix_a"),
    row("ALTER INDEX parent_ix ATTACH PARTITION child_ix", "alter index parent_ix attach partition child_ix",
        INFO, "parent_ix"),
    row("ALTER INDEX ix_a SET (fillfactor = 70)", "alter index ix_a set (fillfactor = 70)", INFO, "ix_a"),
    row("ALTER INDEX ix_a ALTER COLUMN 1 SET STATISTICS 1000", "alter index ix_a alter column 1 set statistics 1000",
        INFO, "ix_a"),
    row("REINDEX INDEX CONCURRENTLY users_email_index", "reindex index users_email_index concurrently", INFO,
        "users_email_index", C),
    row("REINDEX (VERBOSE) TABLE users", "reindex table users"),
    # ALTER TABLE: each action, unnamed constraints, the word COLUMN left out as Alembic leaves it out
    row("ALTER TABLE users ADD COLUMN age INTEGER DEFAULT '0' NOT NULL", "alter table users add column age"),
    row('ALTER TABLE "Users" DROP COLUMN bio', "alter table Users drop column bio"),
    row("ALTER TABLE users ADD COLUMN IF NOT EXISTS a int, ADD b int, DROP COLUMN IF EXISTS c, DROP d",
        "alter table users add column a, add column b, drop column c, drop column d"),
    row("ALTER TABLE users ALTER COLUMN bio TYPE TEXT", "alter table users alter column bio type text"),
    row("ALTER TABLE users ALTER COLUMN age TYPE bigint USING age::bigint",
        "alter table users alter column age type bigint"),
    row("ALTER TABLE users ALTER COLUMN status SET DEFAULT 'Active'",
        "alter table users alter column status set default 'Active'"),
    row("ALTER TABLE users ALTER COLUMN email SET NOT NULL", "alter table users alter column email set not null"),
    row("ALTER TABLE users ALTER email DROP NOT NULL", "alter table users alter column email drop not null"),
    row("ALTER TABLE users RENAME email TO mail", "alter table users rename column email to mail"),
    row("ALTER TABLE users RENAME COLUMN Email TO mail", "alter table users rename column email to mail"),
    row("ALTER TABLE teams RENAME CONSTRAINT fk_a TO fk_b", "alter table teams rename constraint fk_a to fk_b"),
    row("ALTER TABLE users RENAME TO people", "alter table users rename to people"),
    row("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE",
        "alter table orders add foreign key (user_id) references users"),
    row("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
        "alter table orders add foreign key (user_id) references users not valid"),
    row("ALTER TABLE users ADD CONSTRAINT fk_x FOREIGN KEY(age) REFERENCES users (id)",
        "alter table users add constraint fk_x foreign key (age) references users"),
    row("ALTER TABLE users ADD PRIMARY KEY (id)", "alter table users add primary key (id)"),
    row("ALTER TABLE users ADD UNIQUE (email)", "alter table users add unique (email)"),
    row("ALTER TABLE users ADD CHECK (age > 0)", "alter table users add check (age > 0)"),
    row("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
        "alter table users add constraint users_email_key unique (email)"),
    row("ALTER TABLE users ADD CONSTRAINT ck_age CHECK (age > 0) NOT VALID",
        "alter table users add constraint ck_age check (age > 0) not valid"),
    row("ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_ix",
        "alter table users add constraint users_pkey primary key using index users_id_ix"),
    row("ALTER TABLE users VALIDATE CONSTRAINT fk_x", "alter table users validate constraint fk_x"),
    row("ALTER TABLE accounts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
        "alter table accounts enable row level security, force row level security"),
    row("ALTER TABLE m DETACH PARTITION m2020 CONCURRENTLY", "alter table m detach partition m2020 concurrently",
        INFO, None, C),
    row("ALTER TABLE m ATTACH PARTITION m2021 FOR VALUES FROM (1) TO (2)",
        "alter table m attach partition m2021 for values from (1) to (2)"),
    row("ALTER TABLE IF EXISTS ONLY users SET SCHEMA archive", "alter table users set schema archive"),
    # types, enums, domains, sequences, extensions, schemas
    row("CREATE TYPE mood AS ENUM ('sad', 'ok')", "create type mood"),
    row("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy' AFTER 'ok'",
        "alter type mood add value if not exists 'happy' after 'ok'"),
    row("ALTER TYPE mood ADD VALUE 'WATCHER_ADDED'", "alter type mood add value 'WATCHER_ADDED'"),
    row("ALTER TYPE mood RENAME TO mood_old", "alter type mood rename to mood_old"),
    row("DROP TYPE IF EXISTS mood_old", "drop type mood_old"),
    row("CREATE DOMAIN email AS citext CHECK (VALUE ~ '@')", "create domain email"),
    row("CREATE SEQUENCE IF NOT EXISTS posts_id_seq", "create sequence posts_id_seq"),
    row("ALTER SEQUENCE posts_id_seq OWNED BY posts.id", "alter sequence posts_id_seq owned by posts.id"),
    row('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"', "create extension uuid-ossp"),
    row("ALTER EXTENSION postgis UPDATE TO '3.4.0'", "alter extension postgis update to '3.4.0'"),
    row("CREATE SCHEMA IF NOT EXISTS app", "create schema app"),
    row("DROP SCHEMA app CASCADE", "drop schema app"),
    # operators: symbols, schema-qualified
    row("CREATE OPERATOR public.!= (LEFTARG = int, RIGHTARG = int, FUNCTION = int4ne)",
        "create operator public.!="),
    row("CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = f)", "create operator ==="),
    row("DROP OPERATOR IF EXISTS public.!= (int, int)", "drop operator public.!="),
    row("ALTER OPERATOR @@ (text, text) OWNER TO joe", "alter operator @@ owner to joe"),
    row("CREATE OPERATOR CLASS my_ops FOR TYPE int USING btree AS OPERATOR 1 <", "create operator class my_ops"),
    row("CREATE OPERATOR FAMILY weird USING btree", "create operator family weird"),
    # functions, procedures, triggers, views, policies, rules
    row("CREATE OR REPLACE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.updated_at = now(); RETURN NEW; END $$", "create function public.touch"),
    row("DROP FUNCTION IF EXISTS touch(), public.other(int)", "drop function touch, public.other"),
    row("ALTER FUNCTION touch() SET search_path = public", "alter function touch set search_path = public"),
    row("CREATE PROCEDURE archive(days int) LANGUAGE sql AS $$ DELETE FROM events $$", "create procedure archive"),
    row("CREATE TRIGGER users_touch BEFORE INSERT OR UPDATE OF a, b ON public.users FOR EACH ROW "
        "EXECUTE FUNCTION touch()", "create trigger users_touch on public.users"),
    row("CREATE OR REPLACE CONSTRAINT TRIGGER t AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f()",
        "create trigger t on users"),
    row("DROP TRIGGER IF EXISTS users_touch ON users", "drop trigger users_touch on users"),
    row("CREATE EVENT TRIGGER no_drops ON sql_drop EXECUTE FUNCTION f()", "create event trigger no_drops"),
    row("CREATE OR REPLACE VIEW active_users AS SELECT * FROM users", "create view active_users"),
    row("CREATE MATERIALIZED VIEW IF NOT EXISTS stats AS SELECT 1", "create materialized view stats"),
    row("DROP MATERIALIZED VIEW stats", "drop materialized view stats"),
    row("REFRESH MATERIALIZED VIEW CONCURRENTLY stats", "refresh materialized view concurrently stats"),
    row("CREATE POLICY tenant ON accounts USING (tenant_id = current_setting('app.tenant')::int)",
        "create policy tenant on accounts"),
    row("ALTER POLICY tenant ON accounts RENAME TO tenants", "alter policy tenant on accounts rename to tenants"),
    row("DROP POLICY IF EXISTS tenant ON accounts", "drop policy tenant on accounts"),
    row("CREATE RULE no_delete AS ON DELETE TO users DO INSTEAD NOTHING", "create rule no_delete on users"),
    # privileges and comments
    row("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO app",
        "grant select, insert on all tables in schema public to app"),
    row("REVOKE ALL ON SCHEMA public FROM PUBLIC", "revoke all on schema public from public"),
    row("ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO reader",
        "alter default privileges in schema app grant select on tables to reader"),
    row("COMMENT ON COLUMN users.bio IS 'about'", "comment on column users.bio"),
    row("COMMENT ON TABLE users IS 'people'", "comment on table users"),
    row("COMMENT ON INDEX ix_a IS 'why'", "comment on index ix_a"),
    row("COMMENT ON CONSTRAINT fk_x ON users IS 'why'", "comment on constraint fk_x on users"),
    row("COMMENT ON MATERIALIZED VIEW stats IS 'why'", "comment on materialized view stats"),
    row("COMMENT ON FUNCTION touch() IS 'why'", "comment on function touch"),
    # data
    row("INSERT INTO users (id, email) VALUES (1, 'a@b')", "insert into users"),
    row("INSERT INTO archive SELECT * FROM events WHERE created < now()", "insert into archive"),
    row("UPDATE users SET bio = ''", "update users"),
    row("DELETE FROM users WHERE email = 'system@local'", "delete from users"),
    row("TRUNCATE TABLE ONLY a, b RESTART IDENTITY CASCADE", "truncate a, b"),
    row("MERGE INTO users u USING staging s ON u.id = s.id WHEN MATCHED THEN UPDATE SET x = 1", "merge into users"),
    row("COPY users (a, b) FROM STDIN WITH (FORMAT csv)", "copy users from stdin"),
    row("WITH moved AS (DELETE FROM old_events RETURNING *) INSERT INTO events SELECT * FROM moved",
        "insert into events (with delete from old_events)"),
    row("WITH x AS (UPDATE users SET a = 1 RETURNING id) SELECT count(*) FROM x",
        'execute "WITH x AS (UPDATE users SET a = 1 RETURNING id) SELECT co..."'),
    row("SELECT setval('users_id_seq', (SELECT MAX(id) FROM users))",
        """execute "SELECT setval('users_id_seq', (SELECT MAX(id) FROM users))\""""),
    row("SELECT public.backfill_orders()", 'execute "SELECT public.backfill_orders()"'),
    row("SELECT id FROM jobs FOR UPDATE SKIP LOCKED", 'execute "SELECT id FROM jobs FOR UPDATE SKIP LOCKED"'),
    row("SELECT * FROM users FOR KEY SHARE", 'execute "SELECT * FROM users FOR KEY SHARE"'),
    row("SELECT * INTO backup FROM users", 'execute "SELECT * INTO backup FROM users"'),
    row("EXPLAIN ANALYZE DELETE FROM users", 'execute "EXPLAIN ANALYZE DELETE FROM users"'),
    row("SET CONSTRAINTS ALL IMMEDIATE", 'execute "SET CONSTRAINTS ALL IMMEDIATE"'),
    # maintenance and procedural code
    row("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app; "
        "END IF; END $$", 'execute "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE r..."'),
    row("CALL archive(30)", "call archive"),
    row("VACUUM (VERBOSE, ANALYZE) users", "vacuum (verbose, analyze) users"),
    row("ANALYZE users", "analyze users"),
    row("CLUSTER users USING users_pkey", "cluster users using users_pkey"),
    row("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", "lock table users in access exclusive mode"),
    # transaction control
    row("COMMIT", 'execute "COMMIT"', INFO, None, E),
    row("commit and chain", 'execute "commit and chain"', INFO, None, E),
    row("END", 'execute "END"', INFO, None, E),
    row("ROLLBACK", 'execute "ROLLBACK"', INFO, None, E),
    row("ABORT", 'execute "ABORT"', INFO, None, E),
    row("PREPARE TRANSACTION 'x'", """execute "PREPARE TRANSACTION 'x'\"""", INFO, None, E),
    row("COMMIT PREPARED 'x'", """execute "COMMIT PREPARED 'x'\"""", INFO, None, E),
    row("ROLLBACK PREPARED 'x'", """execute "ROLLBACK PREPARED 'x'\"""", INFO, None, E),
    row("ROLLBACK TO SAVEPOINT s", 'execute "ROLLBACK TO SAVEPOINT s"', DEBUG),
    row("ROLLBACK WORK TO s", 'execute "ROLLBACK WORK TO s"', DEBUG),
    row("BEGIN", 'execute "BEGIN"', DEBUG),
    row("SAVEPOINT sa_savepoint_1", 'execute "SAVEPOINT sa_savepoint_1"', DEBUG),
    row("RELEASE SAVEPOINT sa_savepoint_1", 'execute "RELEASE SAVEPOINT sa_savepoint_1"', DEBUG),
]


@pytest.mark.parametrize(("sql", "text", "level", "index", "flags"), SHAPES)
def test_described(sql: str, text: str, level: str, index: str | None, flags: set[str]) -> None:
    op = describe(sql)
    assert op.text == text
    assert (DEBUG if op.quiet else INFO) == level
    assert op.index == index
    assert {flag for flag in (C, E) if getattr(op, flag)} == flags


@pytest.mark.parametrize(("sql", "table"), [
    ("CREATE TABLE public.users (id int)", "public.users"),
    ('ALTER TABLE "Users" ADD COLUMN a int', "Users"),
    ("CREATE INDEX ix ON ONLY orders (a)", "orders"),
    ("CREATE TRIGGER t BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION f()", "users"),
    ("COMMENT ON COLUMN users.bio IS 'x'", "users"),
    ("UPDATE alembic_version SET version_num='b' WHERE alembic_version.version_num = 'a'", "alembic_version"),
    ("INSERT INTO alembic_version (version_num) VALUES ('a') RETURNING alembic_version.version_num",
     "alembic_version"),
    ("CREATE TYPE mood AS ENUM ('a')", None),
])
def test_table_named(sql: str, table: str | None) -> None:
    assert describe(sql).table == table


def test_touches_the_bookkeeping_table_schema_qualified_or_not() -> None:
    assert describe("DELETE FROM app.alembic_version WHERE version_num = 'a'").touches("alembic_version")
    assert not describe("DELETE FROM alembic_version_backup").touches("alembic_version")
    assert not Operation("create type mood", None).touches("alembic_version")


# --- read-only or not -----------------------------------------------------------------------------------

# SQLAlchemy's own reflection query (`has_table`), as Alembic sends it before it reads the version table.
HAS_TABLE = (
    "SELECT pg_catalog.pg_class.relname \nFROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON "
    "pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \nWHERE pg_catalog.pg_class.relname = "
    "%(table_name)s::VARCHAR AND pg_catalog.pg_class.relkind = ANY (ARRAY[%(param_1)s::VARCHAR, "
    "%(param_2)s::VARCHAR, %(param_3)s::VARCHAR, %(param_4)s::VARCHAR, %(param_5)s::VARCHAR]) AND "
    "pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != "
    "%(nspname_1)s::VARCHAR"
)
GET_COLUMNS_PART = (
    "SELECT pg_catalog.pg_attribute.attname AS name, pg_catalog.format_type(pg_catalog.pg_attribute.atttypid, "
    "pg_catalog.pg_attribute.atttypmod) AS format_type, CASE WHEN pg_catalog.pg_attribute.atthasdef THEN "
    "(SELECT pg_catalog.pg_get_expr(pg_catalog.pg_attrdef.adbin, pg_catalog.pg_attrdef.adrelid) AS "
    "pg_get_expr_1 FROM pg_catalog.pg_attrdef WHERE pg_catalog.pg_attrdef.adrelid = "
    "pg_catalog.pg_attribute.attrelid AND pg_catalog.pg_attrdef.adnum = pg_catalog.pg_attribute.attnum) END "
    "AS \"default\", array_agg(CAST(attr.attname AS TEXT) ORDER BY attr.ord) AS cols "
    "FROM pg_catalog.pg_attribute WHERE pg_catalog.pg_attribute.attnum > %(attnum_1)s"
)


@pytest.mark.parametrize("sql", [
    HAS_TABLE, GET_COLUMNS_PART,
    "SELECT alembic_version.version_num FROM alembic_version",
    "select pg_catalog.version()", "select current_schema()", "show standard_conforming_strings",
    "SELECT count(*) FROM users", "SELECT lower (email) FROM users", "SELECT pg_sleep(1)",
    "SELECT x::numeric(10, 2), CAST(y AS varchar(10)) FROM t AS a(x, y)",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION SELECT n + 1 FROM t) SELECT n FROM t",
    "SELECT updated_at, deleted FROM users", "VALUES (1), (2)", "TABLE users",
    "SET lock_timeout = '5s'", "SET statement_timeout TO 14400000;", "RESET ALL", "SHOW server_version",
    "EXPLAIN SELECT f()", "EXPLAIN (COSTS OFF) DELETE FROM users", "BEGIN", "START TRANSACTION",
])
def test_certainly_read_only_is_debug(sql: str) -> None:
    assert describe(sql).quiet


@pytest.mark.parametrize("sql", [
    "SELECT setval('users_id_seq', 1)", "SELECT nextval('users_id_seq')", "SELECT pg_catalog.setval('s', 1)",
    "SELECT my_function()", "SELECT public.lower(x)", 'SELECT "Lower"(x)', "SELECT * FROM dblink('x', 'y')",
    "SELECT * FROM t FOR UPDATE", "SELECT * FROM t FOR NO KEY UPDATE", "SELECT * FROM t FOR SHARE",
    "SELECT * INTO t2 FROM t", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
    "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
    "WITH m AS (SELECT 1) MERGE INTO t USING m ON true WHEN MATCHED THEN DELETE",
    "SELECT count(*) FROM t; DELETE FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", "EXPLAIN ANALYSE SELECT 1",
    "SELECT " + "x, " * 10_000 + "1",  # too long to search for writes: logged, not searched
    "DO $$ BEGIN PERFORM 1; END $$", "CALL p()", "NOTIFY jobs", "EXECUTE prepared_insert(1)",
])
def test_anything_that_may_write_is_info(sql: str) -> None:
    assert not describe(sql).quiet


# --- the preview of a statement described as `execute "..."` ---------------------------------------------

@pytest.mark.parametrize(("sql", "starts"), [
    ("DO $$\nBEGIN\n    PERFORM 1;\n\n    PERFORM 2;\nEND\n$$", "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$"),
    ("SELECT setval('a_very_long_sequence_name_for_a_table_id_seq', (SELECT MAX(id) FROM a_table))",
     "SELECT setval('a_very_long_sequence_name_for_a_table_id_s..."),
    ("-- a comment that is longer than the preview itself would be, on its own line\nSELECT my_function()",
     "SELECT my_function()"),
    ("/* block\ncomment */ NOTIFY jobs, 'x'", "NOTIFY jobs, 'x'"),
    ("SELECT f(" + " " * 500 + "1)", "SELECT f( 1)"),
])
def test_preview_is_one_short_line_of_the_statement_itself(sql: str, starts: str) -> None:
    text = describe(sql).text
    match = re.fullmatch(r'execute "(.*)"', text)
    assert match is not None and "\n" not in text
    assert len(match.group(1)) <= EXECUTE_PREVIEW
    assert match.group(1).startswith(starts)


def test_preview_says_when_it_is_cut() -> None:
    assert describe("NOTIFY " + "x" * 200).text.endswith('..."')
    assert describe("NOTIFY jobs").text == 'execute "NOTIFY jobs"'


@pytest.mark.parametrize("sql", [
    "CREATE ROLE app LOGIN PASSWORD 'hunter2'",
    "ALTER ROLE app WITH PASSWORD 'hunter2'",
    "ALTER USER app ENCRYPTED PASSWORD 'hunter2' VALID UNTIL 'infinity'",
    "DO $$ BEGIN CREATE ROLE x PASSWORD 'hunter2'; END $$",
    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'app', 'hunter2'); END $$",
    "CREATE USER MAPPING FOR app SERVER remote OPTIONS (user 'x', password 'hunter2')",
    "ALTER SERVER remote OPTIONS (SET password 'hunter2')",
    "ALTER USER MAPPING FOR app SERVER remote OPTIONS (SET password 'hunter2')",
])
def test_passwords_never_appear(sql: str) -> None:
    assert "hunter2" not in describe(sql).text


def test_a_column_named_password_is_not_masked() -> None:
    assert describe("ALTER TABLE users ALTER COLUMN password TYPE text").text == \
        "alter table users alter column password type text"


# --- several statements in one text, long statements -----------------------------------------------------

def test_several_statements_in_one_text() -> None:
    op = describe("CREATE TABLE users (id int);\nCREATE INDEX ix ON users (id);\nCOMMIT;\n")
    assert op.text == 'create table users; create index ix; execute "COMMIT"'
    assert op.ends_transaction and op.index == "ix" and not op.quiet and op.table is None
    many = describe(";\n".join(f"INSERT INTO t{k} VALUES (1)" for k in range(5)))
    assert many.text == "insert into t0; insert into t1; insert into t2; ... (5 statements)"
    assert describe("SET lock_timeout = 0; SELECT 1; SHOW x").quiet


def test_semicolons_inside_bodies_strings_and_comments_split_nothing() -> None:
    body = "CREATE FUNCTION f() RETURNS void AS $body$ BEGIN UPDATE t SET a = 1; COMMIT; END $body$ LANGUAGE plpgsql"
    assert describe(body).text == "create function f" and not describe(body).ends_transaction
    assert describe("DO $$ BEGIN PERFORM 1; END $$").text.startswith('execute "DO')
    assert describe("INSERT INTO t VALUES ('a;b', E'c\\';d') -- e; f").text == "insert into t"
    assert describe('CREATE TABLE "a;b" (id int)').text == "create table a;b"


def test_names_beyond_the_first_part_read_are_read_whole() -> None:
    schema, table = "s" * 60, "t" * 60
    assert describe(f"CREATE TABLE {schema}.{table} (id int)").table == f"{schema}.{table}"
    assert describe(f"/* {'x' * 300} */ DROP TABLE users").text == "drop table users"


def test_identifiers_fold_and_truncate_as_postgresql_does() -> None:
    assert describe('CREATE INDEX "IX_a" ON t (a)').index == "IX_a"
    assert describe("CREATE INDEX IX_A ON t (a)").index == "ix_a"
    assert describe("CREATE INDEX " + "i" * 70 + " ON t (a)").index == "i" * 63
    assert describe('CREATE INDEX "a""b" ON t (a)').index == 'a"b'


def test_many_actions_end_in_an_ellipsis() -> None:
    actions = ", ".join(f"ADD COLUMN column_number_{k} integer" for k in range(40))
    text = describe(f"ALTER TABLE users {actions}").text
    assert text.startswith("alter table users add column column_number_0, add column column_number_1")
    assert text.endswith(", ...") and len(text) < 200


@pytest.mark.parametrize("sql", ["TRUNCATE ,", "CREATE", "ALTER TABLE", "CREATE INDEX ON", "WITH x AS (", "COMMENT ON",
                                 "COPY", "DROP INDEX ,", "ALTER TABLE t ADD CONSTRAINT", "REINDEX", "\x1b[31mred",
                                 "CREATE OPERATOR OPERATOR(", "'unterminated", '"unterminated', "$$ body", "/* open"])
def test_malformed_statements_are_described_anyway(sql: str) -> None:
    assert describe(sql).text.isprintable()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcDEF \n\t;'\"$()-/*,.=!E0")), max_size=200)
       | st.text(max_size=100))
def test_never_fails_and_always_one_line(sql: str) -> None:
    op = describe(sql)
    assert op.text and op.text.isprintable()
    preview = re.fullmatch(r'execute "(.*)"', op.text)
    assert ";" in sql or preview is None or len(preview.group(1)) <= EXECUTE_PREVIEW


# --- logging ------------------------------------------------------------------------------------------

def test_log_statement_levels_and_bookkeeping() -> None:
    with structlog.testing.capture_logs() as logs:
        log_statement("SELECT setval('users_id_seq', 1)", "alembic_version", revision="a")
        log_statement("SELECT 1", "alembic_version", revision="a")
        log_statement("UPDATE alembic_version SET version_num='b'", "alembic_version", revision="a")
    assert [(entry["log_level"], entry["event"]) for entry in logs] == [
        ("info", "execute \"SELECT setval('users_id_seq', 1)\""), ("debug", 'execute "SELECT 1"')]
    assert logs[0]["revision"] == "a"
