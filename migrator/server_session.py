"""The migration session as the server sees it: who it is (backend pid, database, the version table's schema,
server version, standby or not), the checks made before any lock (a primary, a pooler that keeps sessions), and
the settings every migration and seed starts from."""

from __future__ import annotations

from typing import NamedTuple

from migrator import database
from migrator.config import DatabaseConfig, Timeouts
from migrator.database import Connection
from migrator.errors import DatabaseUnreachable

SERVER_VERSION_TCP_USER_TIMEOUT = 120000  # the server-side tcp_user_timeout setting exists from PostgreSQL 12
SERVER_VERSION_CLIENT_CHECK = 140000  # client_connection_check_interval exists from PostgreSQL 14
CLIENT_CHECK_INTERVAL_MS = 2000


class ServerSession(NamedTuple):
    """The migration session as the server sees it."""

    pid: int  # pg_backend_pid(): a pooler's BackendKeyData pid is not the server's
    database: str
    schema: str  # where the version table is: its configured schema, where search_path finds it, or where it will be
    server_version: int
    in_recovery: bool  # a hot standby: read-only


def identify(conn: Connection, schema: str | None, table: str) -> ServerSession:
    """Who we are on the server; one round trip, nothing set.

    The schema is where the version table resolves, not search_path's first entry: two migrators whose
    search_path differ (a role's setting, `options=-csearch_path=...`, a "$user" schema) must agree on the
    lock and the history of the one table Alembic finds."""
    conn.doing = "identifying the session"
    row = conn.execute("SELECT pg_backend_pid(), current_database(), coalesce(%s, (SELECT n.nspname FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)), "
                       "current_schema(), 'public'), pg_is_in_recovery()",
                       (schema, _quoted(table))).fetchone()
    assert row is not None
    return ServerSession(int(row[0]), str(row[1]), str(row[2]), conn.info.server_version, bool(row[3]))


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def require_primary(server: ServerSession, db: DatabaseConfig) -> None:
    """A hot standby cannot be migrated; after a failover, a retry reaches the new primary (exit 3)."""
    if server.in_recovery:
        raise DatabaseUnreachable(f"{db.description} is a read-only standby (in recovery): migrations need the "
                                  "primary; point the URL at it (libpq's target_session_attrs=read-write picks it "
                                  "among several hosts)")


def require_session_pooling(conn: Connection, session: ServerSession, db: DatabaseConfig,
                            timeouts: Timeouts) -> None:
    """Refuse a pooler that does not keep the session (PgBouncer transaction or statement pooling), before any
    lock or setting: see migrator.pooler."""
    from migrator import pooler  # noqa: PLC0415  (only behind a pooler: off the direct connection's path)

    if conn.session_kept:  # proven once for this client connection, which schema tenants share in turn
        return

    def another_client(connect_timeout: float, quiet: bool) -> Connection:
        return database.connect(db, timeouts, autocommit=True, purpose="pooler check", first_answer=False,
                       connect_timeout=connect_timeout, quiet=quiet)

    pooler.require_session_pooling(conn, session.pid, db, timeouts, another_client)
    conn.session_kept = True


def session_settings(timeouts: Timeouts, server_version: int) -> dict[str, str]:
    """The settings every migration and seed starts from (set again before each one, so none leaks)."""
    settings = {
        "lock_timeout": f"{round(timeouts.ddl_lock * 1000)}ms",
        # A migrator that stalls or dies while it holds locks: the server ends its transaction.
        "idle_in_transaction_session_timeout": f"{round(timeouts.idle * 1000)}ms",
        # The server notices a dead client too (keepalives answered by nobody, unacknowledged data).
        "tcp_keepalives_idle": str(max(int(timeouts.stall / 3), 1)),
        "tcp_keepalives_interval": str(max(int(timeouts.stall / 6), 1)),
        "tcp_keepalives_count": "3",
    }
    if timeouts.statement is not None:  # unset: the role's or database's statement_timeout stays
        settings["statement_timeout"] = f"{round(timeouts.statement * 1000)}ms"
    if server_version >= SERVER_VERSION_TCP_USER_TIMEOUT:
        settings["tcp_user_timeout"] = str(int(timeouts.stall * 1000))
    if server_version >= SERVER_VERSION_CLIENT_CHECK:
        # The statement of a client killed with SIGKILL (OOM, node loss) is cancelled within seconds.
        settings["client_connection_check_interval"] = str(CLIENT_CHECK_INTERVAL_MS)
    return settings


def set_config_sql(settings: dict[str, str]) -> tuple[str, list[str]]:
    """One SELECT that applies `settings` at session level: `(sql, params)`."""
    calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
    params = [item for pair in settings.items() for item in pair]
    return f"SELECT {calls}", params
