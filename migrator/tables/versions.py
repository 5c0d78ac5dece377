"""What the database says about its schema: the version table's revisions, and whether a migration was left
part-way (open rows in the migration history). Read with psycopg alone, in one query on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from migrator import blocking, database
from migrator.tables import history, naming
from migrator.tables.naming import qualified


class DbState(NamedTuple):
    """The version table's revisions (sorted; empty at base) and whether some migration is left part-way;
    when asked for, the digest of the applied revisions' file hashes (history.digest_sql), read in the same
    round trip: None when nothing is recorded, or when it could not be read (`digest_read` False)."""

    versions: tuple[str, ...]
    partial: bool = False
    digest: str | None = None
    digest_read: bool = False


def read(conn: psycopg.Connection[Any], table: str, schema: str | None, *, digest: bool = False) -> DbState:
    """The state in one round trip when both tables exist (the usual case); `conn` must be autocommit. With
    `digest`, also the digest of the applied revisions' file hashes (migrator.validation). A version table
    locked by another session is waited for, and its holder named (migrator.blocking.unless_locked)."""
    if not isinstance(conn, database.Connection):
        return _read(conn, table, schema, digest)
    shown = qualified(schema, table).as_string(conn)
    return blocking.unless_locked(conn, shown, lambda: _read(conn, table, schema, digest))


def _read(conn: psycopg.Connection[Any], table: str, schema: str | None, digest: bool) -> DbState:
    history_table = qualified(schema, history.TABLE)
    query = sql.SQL("SELECT v.version_num, EXISTS (SELECT 1 FROM {} h WHERE h.version_table = %(vt)s AND h.outcome "
                    "IN ('running', 'partial')){} FROM {} v").format(
                        history_table, sql.SQL(", {}").format(history.digest_sql(history_table)) if digest else
                        sql.SQL(""), qualified(schema, table))
    try:
        rows = _execute(conn, query, {"vt": table}).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return _read_apart(conn, table, schema)
    except psycopg.errors.UndefinedColumn:  # a history table older than its checksum columns
        return _read(conn, table, schema, False)
    if not rows:
        return DbState((), _partial(conn, table, schema))
    return DbState(tuple(sorted(row[0] for row in rows)), bool(rows[0][1]), rows[0][2] if digest else None,
                   digest_read=digest)


def _read_apart(conn: psycopg.Connection[Any], table: str, schema: str | None) -> DbState:
    """One of the two tables is missing: a fresh database, or one migrated without migrator's history."""
    names = [naming.regclass(schema, name) for name in (table, history.TABLE)]
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL", names).fetchone()
    has_versions, has_history = (bool(row[0]), bool(row[1])) if row else (False, False)
    versions: tuple[str, ...] = ()
    if has_versions:
        rows = _execute(conn, sql.SQL("SELECT version_num FROM {}").format(qualified(schema, table))).fetchall()
        versions = tuple(sorted(r[0] for r in rows))
    return DbState(versions, _partial(conn, table, schema) if has_history else False)


def _execute(conn: psycopg.Connection[Any], query: sql.Composed, params: Any = None) -> psycopg.Cursor[Any]:
    if isinstance(conn, database.Connection):
        return database.execute_unblocked(conn, query, params)
    return conn.execute(query, params)


def _partial(conn: psycopg.Connection[Any], table: str, schema: str | None) -> bool:
    try:
        row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE version_table = %s AND outcome IN "
                                   "('running', 'partial'))").format(qualified(schema, history.TABLE)),
                           (table,)).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return False
    return bool(row and row[0])


def stamp(conn: psycopg.Connection[Any], table: str, schema: str | None, *, remove: Iterable[str],
          add: Iterable[str]) -> None:
    """Move the version table from `remove` to `add` in the caller's transaction (resolve --mark-applied)."""
    name = qualified(schema, table)
    for old in remove:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version_num = %s").format(name), (old,))
    for new in add:
        conn.execute(sql.SQL("INSERT INTO {} (version_num) VALUES (%s)").format(name), (new,))
