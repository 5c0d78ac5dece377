"""The seed ledger (`migrator_seeds`): which seed file ran with which content, per repo.

A row per repo (its version table, which tells repos sharing a database apart) and file name, with the file's
sha256, written in the seed's own transaction: a file runs once per content. Ledgers written by migrator before
the repo was part of the key (name alone) are upgraded in place, their rows given to the repo that upgrades
them; another repo sharing the database then runs its seeds once more (seeds are written to be idempotent).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from migrator.tables import naming

TABLE = "migrator_seeds"


def ensure(conn: psycopg.Connection[Any], schema: str | None, version_table: str, key_schema: str) -> None:
    """The ledger exists and is keyed by repo (on an autocommit `conn`), made or upgraded by one migrator at a
    time; `key_schema` is where it is (the schema search_path gives it when `schema` is None)."""
    if naming.exists(conn, schema, TABLE) and _keyed_by_repo(conn, schema):
        return
    table = naming.qualified(schema, TABLE)
    with naming.creating(conn, key_schema):
        conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
            version_table text NOT NULL,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (version_table, name))""").format(table))
        if not _keyed_by_repo(conn, schema):
            _upgrade(conn, table, version_table)


def _keyed_by_repo(conn: psycopg.Connection[Any], schema: str | None) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                       "AND attname = 'version_table' AND NOT attisdropped)",
                       (naming.regclass(schema, TABLE),)).fetchone()
    return bool(row and row[0])


def _upgrade(conn: psycopg.Connection[Any], table: sql.Identifier, version_table: str) -> None:
    """A ledger of an older migrator (keyed by name alone): its rows become this repo's."""
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN version_table text NOT NULL DEFAULT {}").format(
        table, sql.Literal(version_table)))
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN version_table DROP DEFAULT").format(table))
    row = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
                       (table.as_string(conn),)).fetchone()
    if row is not None:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(row[0])))
    conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (version_table, name)").format(table))


def checksums(conn: psycopg.Connection[Any], schema: str | None, version_table: str) -> dict[str, str]:
    """File name -> the checksum it last ran with, for this repo."""
    rows = conn.execute(sql.SQL("SELECT name, checksum FROM {} WHERE version_table = %s").format(
        naming.qualified(schema, TABLE)), (version_table,)).fetchall()
    return {str(name): str(checksum) for name, checksum in rows}


def record(conn: psycopg.Connection[Any], schema: str | None, version_table: str, name: str, checksum: str) -> None:
    """The file ran with this content: in the seed's own transaction, so it commits with the seed's work."""
    conn.execute(sql.SQL("INSERT INTO {} (version_table, name, checksum) VALUES (%s, %s, %s) "
                         "ON CONFLICT (version_table, name) DO UPDATE SET checksum = excluded.checksum, "
                         "applied_at = now()").format(naming.qualified(schema, TABLE)),
                 (version_table, name, checksum))
