"""The throwaway database `migrator verify` works on: an embedded PostgreSQL, or an empty database the user names.

By default verify starts its own PostgreSQL (the `pgserver` package, installed with `migrator[verify]`) in a
temporary directory and deletes it afterwards. A database named by `--database-url` or the repo's URL variable
(DATABASE_URL) is used only when it is empty (nothing but the `public` schema and extensions), or when the
user passed `--wipe`: verify never drops anything in a database that holds something it did not put there
unless told it may. Afterwards it drops what it created, so that the database is empty again for the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import psycopg
from psycopg import sql

from migrator import database, database_url, schema_snapshot
from migrator.config import DatabaseConfig, Timeouts, database_config
from migrator.database import Connection
from migrator.errors import ConfigError, DatabaseUnreachable
from migrator.logs import get_logger
from migrator.redaction import reason
from migrator.repos import Repo

EMBEDDED_DATABASE = "migrator_verify"
# From migrator's own source, never by name from PyPI: the project named migrator there is an unrelated one.
INSTALL_HINT = "pip install '.[verify]' in migrator's clone, or pipx inject migrator pgserver"


@contextmanager
def throwaway(repo: Repo, timeouts: Timeouts, *, url: str | None, wipe: bool,
              env: Mapping[str, str] = os.environ) -> Iterator[DatabaseConfig]:
    """The database to verify on: `url` (from --database-url), else the repo's URL variable when set, else an
    embedded PostgreSQL. A named database must be empty, or `wipe` allows emptying it first."""
    if url is not None:
        if "password" in database_url.parse("--database-url", url):
            raise ConfigError("--database-url must not carry a password (the process list shows it to every user "
                              "of the machine): put the password in PGPASSWORD, DATABASE_PASSWORD_FILE or "
                              f"~/.pgpass, or pass the whole URL in {repo.url_env}")
        db = database_config({**env, repo.url_env: url}, repo.url_env, repo.password_file_env)
    elif env.get(repo.url_env, "").strip():
        db = database_config(env, repo.url_env, repo.password_file_env)
    else:
        with embedded(timeouts) as db:
            yield db
        return
    with emptied(db, timeouts, wipe=wipe):
        yield db


# --- an embedded PostgreSQL -------------------------------------------------------------------------------

@contextmanager
def embedded(timeouts: Timeouts) -> Iterator[DatabaseConfig]:
    """A PostgreSQL started for this run in a temporary directory, deleted afterwards (also on failure)."""
    try:
        # pgserver asks platformdirs for a runtime directory; a root session without XDG_RUNTIME_DIR warns.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise ConfigError("verify needs a throwaway database: install the embedded PostgreSQL with "
                          f"{INSTALL_HINT}, or name an empty database with --database-url or DATABASE_URL") from None
    # pgserver narrates initdb and pg_ctl at INFO, output included: only its warnings belong in verify's log.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    directory = tempfile.mkdtemp(prefix="migrator-verify-")
    try:
        server = pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]
    except Exception as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise DatabaseUnreachable(f"the embedded PostgreSQL (pgserver) did not start: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]}") from None
    try:
        admin = database_config({"DATABASE_URL": server.get_uri()})
        with database.connect(admin, timeouts, autocommit=True, purpose="verify") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DATABASE)))
        get_logger().info(f"Started an embedded PostgreSQL for verify in {directory}")
        yield database_config({"DATABASE_URL": server.get_uri(EMBEDDED_DATABASE)})
    finally:
        # pgserver stops it at interpreter exit, which migrator's entrypoint skips (os._exit): stop it here.
        server.cleanup()


# --- a database the user named ----------------------------------------------------------------------------

@contextmanager
def emptied(db: DatabaseConfig, timeouts: Timeouts, *, wipe: bool) -> Iterator[None]:
    """Refuse `db` unless it is empty or `wipe` allows emptying it; empty it again afterwards."""
    with database.connect(db, timeouts, autocommit=True, purpose="verify") as conn:
        found = schema_snapshot.read(conn, ())
        extensions = {name for kind, name in found if kind == "extension"}
        if not schema_snapshot.is_empty(found):
            if not wipe:
                listing = schema_snapshot.listing(found)
                raise ConfigError(f"verify refuses {db.description}: it is not empty ({listing}); name an empty "
                                  "database, pass --wipe if everything in it may be dropped, or unset --database-url "
                                  f"and DATABASE_URL to verify on an embedded PostgreSQL ({INSTALL_HINT})")
            get_logger().warning(f"Wiping {db.description} for verify (--wipe): {schema_snapshot.listing(found)}")
            extensions = {"plpgsql"}
            drop_everything(conn, keep_extensions=extensions)
    try:
        yield
    finally:
        _empty_again(db, timeouts, extensions)


def _empty_again(db: DatabaseConfig, timeouts: Timeouts, extensions: set[str]) -> None:
    """Drop what verify created; a failure here is logged, not raised, so that it never hides the verdict."""
    try:
        with database.connect(db, timeouts, autocommit=True, purpose="verify") as conn:
            drop_everything(conn, keep_extensions=extensions)
    except (psycopg.Error, DatabaseUnreachable, ConfigError) as exc:
        get_logger().warning(f"verify could not empty {db.description} again: {reason(exc)}; the next "
                             "verify on it needs --wipe")


# Every name comes from the server (regclass, regtype, regprocedure, quote_ident), read with an empty
# search_path: quoted and schema-qualified by PostgreSQL itself, so it is spliced into DROP as it is.
_DROPS = """
SELECT 'SCHEMA', quote_ident(nspname) FROM pg_namespace
WHERE nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'public')
UNION ALL
SELECT 'EXTENSION', quote_ident(extname) FROM pg_extension WHERE NOT extname = ANY(%(keep)s)
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                      WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))  -- goes with its table
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
       p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'  -- not a range's constructor functions ('i'): they go with the range
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('c', 'd', 'e', 'r')
  AND (t.typrelid = 0 OR (SELECT r.relkind FROM pg_class r WHERE r.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                  AND d.deptype = 'e')
"""


def drop_everything(conn: Connection, keep_extensions: Iterable[str]) -> None:
    """Drop every schema but `public`, every extension not kept, and everything in `public`: the database is
    empty afterwards (checked, ConfigError naming what is left otherwise). Each DROP commits on its own, so
    that a large schema does not need all its locks in one transaction."""
    with conn.transaction():
        conn.execute("SET LOCAL search_path = ''")
        drops = conn.execute(_DROPS, {"keep": sorted(keep_extensions)}).fetchall()
    for kind, name in drops:  # schemas first, then extensions: what they held goes with them (CASCADE)
        _drop(conn, kind, name)
    left = schema_snapshot.read(conn, ())
    if not schema_snapshot.is_empty(left):
        raise ConfigError(f"verify could not empty the database: {schema_snapshot.listing(left)} is left; drop it "
                          "by hand or use another database")


def _drop(conn: Connection, kind: str, name: str) -> None:
    statement = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), sql.SQL(name))
    try:
        with conn.transaction():
            conn.execute("SET LOCAL search_path = ''")
            conn.execute(statement)
    except psycopg.errors.DatabaseError as exc:  # a lost connection is not this: it goes up as it is (exit 3)
        if database.is_connection_error(exc):
            raise
        raise ConfigError(f"verify could not empty the database: DROP {kind} {name} failed: "
                          f"{reason(exc)}; drop it by hand or use another database") from None
