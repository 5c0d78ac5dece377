"""SQL statements described in Ecto's words."""

from __future__ import annotations

import pytest

from migrator.operations import describe


@pytest.mark.parametrize(("sql", "text", "table"), [
    ("CREATE TABLE users (id BIGINT)", "create table users", "users"),
    ("CREATE TABLE IF NOT EXISTS public.users (id int)", "create table public.users", "public.users"),
    ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_index ON users (email)",
     "create index users_email_index", "users"),
    ("DROP INDEX CONCURRENTLY IF EXISTS users_email_index", "drop index users_email_index", None),
    ("ALTER TABLE users ADD COLUMN age INTEGER", "alter table users add column age", "users"),
    ('ALTER TABLE "Users" DROP COLUMN bio', "alter table Users drop column bio", "Users"),
    ("ALTER TABLE users ALTER COLUMN bio TYPE TEXT", "alter table users alter column bio", "users"),
    ("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
     "alter table users add constraint users_email_key", "users"),
    ("ALTER TABLE users RENAME TO people", "alter table users rename to people", "users"),
    ("DROP TABLE users", "drop table users", "users"),
    ("CREATE EXTENSION IF NOT EXISTS citext", "create extension citext", None),
    ("CREATE OR REPLACE FUNCTION touch() RETURNS trigger AS $$ $$", "create function touch", None),
    ("CREATE MATERIALIZED VIEW stats AS SELECT 1", "create materialized view stats", None),
    ("INSERT INTO alembic_version (version_num) VALUES ('1')", "insert into alembic_version", "alembic_version"),
    ("UPDATE users SET bio = ''", "update users", "users"),
    ("DELETE FROM users", "delete from users", "users"),
    ("COMMENT ON COLUMN users.bio IS 'about'", "comment on column users.bio", "users.bio"),
    ("-- why\n/* block */ CREATE TABLE t (id int)", "create table t", "t"),
])
def test_described(sql: str, text: str, table: str | None) -> None:
    op = describe(sql)
    assert (op.text, op.table, op.quiet) == (text, table, False)


@pytest.mark.parametrize("sql", ["SELECT pg_sleep(1)", "SET lock_timeout = 0", "SAVEPOINT s1", "COMMIT"])
def test_quiet(sql: str) -> None:
    assert describe(sql).quiet


def test_unknown_statements_fall_back_to_execute() -> None:
    op = describe("DO $$ BEGIN PERFORM 1; END $$")
    assert op.text == 'execute "DO $$ BEGIN PERFORM 1; END $$"' and not op.quiet
    assert describe("VACUUM " + "x" * 200).text.endswith('..."')
