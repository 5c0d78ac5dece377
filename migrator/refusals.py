"""Why a server or a pooler refused a connection for lack of room, and the setting that decides it.

Each of these refusals may heal (another client disconnects, a slot frees up), so migrator retries them within
MIGRATOR_CONNECT_TIMEOUT, like a server that is not up yet; but the lines say what really happened and what
to change, rather than "unreachable, check the host". libpq passes the server's words on (SQLSTATE 53300 does
not reach the client before authentication completes), so they are recognised by their text.
"""

from __future__ import annotations

# (what the server or pooler says, lowercased; which setting decides it and what to do)
_CAUSES = (
    ("too many connections for role",
     "the role's CONNECTION LIMIT is reached: raise it (ALTER ROLE ... CONNECTION LIMIT n) or run fewer "
     "replicas at once"),
    ("too many connections for database",
     "the database's CONNECTION LIMIT is reached: raise it (ALTER DATABASE ... CONNECTION LIMIT n) or run "
     "fewer replicas at once"),
    ("sorry, too many clients already",
     "the server's max_connections is reached: raise max_connections, put a pooler in session mode in front "
     "of it, or run fewer replicas at once"),
    ("remaining connection slots are reserved",
     "the server's max_connections is reached except for the slots reserved by superuser_reserved_connections "
     "and reserved_connections: raise max_connections, or run fewer replicas at once"),
    ("max_client_conn",
     "the pooler's max_client_conn is reached (PgBouncer): raise it, or run fewer replicas at once"),
    ("max_db_client_connections",
     "the pooler's max_db_client_connections is reached (PgBouncer): raise it, or run fewer replicas at once"),
    ("max_user_client_connections",
     "the pooler's max_user_client_connections is reached (PgBouncer): raise it, or run fewer replicas at once"),
    ("query_wait_timeout",
     "the pooler had no free server connection within its query_wait_timeout (PgBouncer: a full pool; raise "
     "default_pool_size, max_db_connections or max_user_connections, or run fewer replicas at once)"),
)

# A pooler that waits for a free server connection says nothing until one frees up: the first query of a new
# connection is what waits. What the line says when that wait outlasts MIGRATOR_CONNECT_TIMEOUT.
FULL_POOL = ("a connection pooler with no free server connection for this client (PgBouncer in session mode: "
             "every server connection of the pool is taken by another client; raise default_pool_size, "
             "max_db_connections or max_user_connections, or run fewer replicas at once)")
# The server's answer tells a pooler apart only once it comes (Connection.pooled); a server that stopped answering
# after the login looks the same until then, so the line names both, the pool first.


def cause(text: str) -> str | None:
    """The setting behind a refusal for lack of room, or None when `text` is not one."""
    low = text.lower()
    for marker, explanation in _CAUSES:
        if marker in low:
            return explanation
    return None
