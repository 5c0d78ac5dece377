"""add a unique index on users.email

Built CONCURRENTLY so that writes to users go on while it builds. That cannot run inside a transaction, so
it runs in Alembic's autocommit block (migrator's lock is a session lock on its own idle connection, which
such a build does not wait for).

Revision ID: 20211104101500
Revises: 20211103022310
Create Date: 2021-11-04 10:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20211104101500"
down_revision: str | Sequence[str] | None = "20211103022310"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "users_email_index"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A concurrent build that failed or was interrupted (lock timeout, SIGTERM) leaves an INVALID index
        # under this name; drop it, so that the retry builds a valid one instead of tripping over it.
        # (Offline, in `migrator sql`, there is no database to ask.)
        if not op.get_context().as_sql and _invalid_index_exists():
            op.drop_index(INDEX, table_name="users", postgresql_concurrently=True)
        # IF NOT EXISTS: a build that completed before the process died (version not yet stamped) is kept.
        op.create_index(INDEX, "users", ["email"], unique=True, postgresql_concurrently=True, if_not_exists=True)


def _invalid_index_exists() -> bool:
    found = op.get_bind().execute(sa.text(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :name AND NOT i.indisvalid"), {"name": INDEX}).first()
    return found is not None


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="users", postgresql_concurrently=True, if_exists=True)
