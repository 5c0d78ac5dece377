"""Many tenants migrated with one repo's migrations: who they are, which of them this process takes, and the
target each one is.

A repo lists its tenants in migrator.toml (`tenants = [...]`) or by a query on its database (`tenants_query`,
e.g. `SELECT schema_name FROM tenants`), read when the repo's turn comes, so that a repo listed before it can
create the table the query reads. Schema-per-tenant (`tenant_kind = "schema"`, the default): every migration
and seed of a tenant runs with search_path set to the tenant's schema (then `tenant_shared_schemas`), reset
before each step with migrator's other settings, so that raw SQL (`op.execute`) lands there as surely as
SQLAlchemy-built objects, and the tenant's version table and history live in its schema. Database-per-tenant
(`tenant_kind = "database"`): each tenant is the database of that name on the same server, with the repo's
credentials. Either way each tenant has its own version table, history and lock (the lock's key names the
database and the schema), so two processes that take the same tenant migrate it once.

Processes share the tenants out by MIGRATOR_TENANT_SHARDS and their index (an Indexed Job's
JOB_COMPLETION_INDEX): see migrator.config.Shard.
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from migrator import database
from migrator.config import DatabaseConfig, Settings, Timeouts, describe
from migrator.errors import ConfigError
from migrator.logs import get_logger
from migrator.redaction import reason
from migrator.repos import Tenants, check_tenant_names
from migrator.targets import SharedConnection, Target, connection


def of(target: Target) -> Tenants | None:
    return target.repo.tenants


def listed(target: Target, settings: Settings) -> list[str]:
    """Every tenant of `target`'s repo, sorted: the configured list, or the query's rows (ConfigError, exit 2,
    when the query fails or returns something that is not a list of tenant names)."""
    tenants = of(target)
    assert tenants is not None
    if tenants.names is not None:
        return sorted(tenants.names)
    with connection(target, settings, purpose="tenants") as conn:
        return query_or_list(conn, target)


def query_or_list(conn: database.Connection, target: Target) -> list[str]:
    """The tenants, sorted: the configured list, or the query's rows read on `conn` (the repo's database)."""
    tenants = of(target)
    assert tenants is not None
    if tenants.names is not None:
        return sorted(tenants.names)
    assert tenants.query is not None
    return sorted(_query(conn, target, tenants.query))


def _query(conn: database.Connection, target: Target, query: str) -> tuple[str, ...]:
    """Run the tenants query in a read-only transaction, as the one SELECT it must be (a subquery cannot hide a
    second statement or change data), bounded by the stall timeout on the server too."""
    what = f"repo {target.repo.name!r}: tenants_query"
    conn.doing = "listing the tenants"
    limit = f"{round((conn.wait_limit or Timeouts().stall) * 1000)}ms"  # connect() set it to the stall timeout
    try:
        conn.execute("BEGIN READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (limit,))
        cur = conn.execute(sql.SQL("SELECT * FROM ({}) AS tenants").format(sql.SQL(query)))
        rows = cur.fetchall()
        columns = len(cur.description or ())
    except psycopg.Error as exc:
        if database.is_connection_error(exc):
            raise
        # The server's own words without the LINE/caret lines, which would show the subquery wrapped around it.
        why = exc.diag.message_primary or reason(exc)
        raise ConfigError(f"{what} failed on {target.db.description}: {type(exc).__name__}: {why} (it must be one "
                          "SELECT of the names: it runs read-only, as a subquery)") from None
    finally:
        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    if columns != 1:
        raise ConfigError(f"{what} returned {columns} columns: it must return one, the tenants' names")
    return check_tenant_names(what, [row[0] for row in rows])


def share(names: list[str], settings: Settings) -> list[str]:
    """The tenants this process takes (all of them unless MIGRATOR_TENANT_SHARDS shares them out)."""
    return [name for name in names if settings.shard.takes(name)]


def choose(names: list[str], target: Target, name: str) -> str:
    """`--tenant NAME`: it must be one of the repo's tenants (a typo must not create a schema)."""
    if name not in names:
        raise ConfigError(f"--tenant {name}: not a tenant of repo {target.repo.name!r} ({len(names)} listed)")
    return name


def target_for(target: Target, name: str, shared: SharedConnection | None = None) -> Target:
    """The target of one tenant of `target`'s repo; schema tenants may share one connection (`shared`)."""
    tenants = of(target)
    assert tenants is not None
    if tenants.kind == "database":
        params = {**target.db.params, "dbname": name}
        # Described as any database is: the URL's parts, PG* filling in what it leaves out.
        return Target(target.repo, DatabaseConfig(params, describe(params, os.environ)), tenant=name)
    # Names are checked (TENANT_NAME, plain identifiers): quoting cannot be escaped from.
    path = ", ".join(f'"{schema}"' for schema in (name, *tenants.shared))
    repo = target.repo._replace(version_table_schema=name)
    db = target.db._replace(description=f"{target.db.description} schema {name}")
    return Target(repo, db, tenant=name, search_path=path, shared=shared)


def create_schema(conn: database.Connection, target: Target) -> None:
    """A schema tenant's schema, created when missing (as Flyway creates the schemas it lists), under the
    tenant's lock and before its version table: unqualified DDL must never fall through search_path into
    another schema."""
    if target.search_path is None or target.tenant is None:
        return
    row = conn.execute("SELECT to_regnamespace(%s) IS NULL", (sql.Identifier(target.tenant).as_string(conn),)
                       ).fetchone()
    if not (row and row[0]):
        return
    conn.doing = f"creating schema {target.tenant}"
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.tenant)))
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError(f"cannot create schema {target.tenant} on {target.db.description}: permission denied; "
                          "grant the migrator's role CREATE on the database, or create the tenant's schema "
                          "first") from None
    get_logger().info(f"create schema {target.tenant}", tenant=target.tenant)

