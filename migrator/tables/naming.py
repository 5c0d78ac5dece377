"""The names of the tables migrator reads and writes, and their creation.

Every name is a psycopg.sql.Identifier, also where it is passed as text (to_regclass): a schema or table name with
a double quote, an upper-case letter or a dot in it means what it says.

`CREATE TABLE IF NOT EXISTS` is not safe under concurrency: two sessions that check at the same moment both go on,
and the second fails on pg_type's unique index. Migrators of different repos (different version tables, so
different migration locks) create the history table at once, so creation takes a transaction-level advisory
lock of its own, per schema, first: the second creator waits, then finds the table made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

NAMESPACE = b"migrator/tables/v1"


def qualified(schema: str | None, table: str) -> sql.Identifier:
    """`schema.table`, or `table` alone (found through search_path) when no schema is given."""
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


def regclass(schema: str | None, table: str) -> str:
    """The name as to_regclass() reads it: each part quoted as an identifier."""
    return qualified(schema, table).as_string()


def exists(conn: psycopg.Connection[Any], schema: str | None, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (regclass(schema, table),)).fetchone()
    return bool(row and row[0])


def creation_key(schema: str) -> int:
    """A signed 64-bit advisory lock key for creating migrator's tables in `schema` (locks are per database)."""
    import hashlib  # noqa: PLC0415  (not on the no-op path, which creates nothing)

    digest = hashlib.blake2b(NAMESPACE + b"\0" + schema.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def creating(conn: psycopg.Connection[Any], schema: str) -> Iterator[None]:
    """A transaction (on an autocommit `conn`) in which this session alone creates or alters migrator's tables
    in `schema`; the lock ends with the transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (creation_key(schema),))
        yield
