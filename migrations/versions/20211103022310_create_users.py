"""create users

The seed article's `mix phx.gen.html Accounts User users name:string email:string bio:string
number_of_pets:integer`, as an Alembic revision.

Revision ID: 20211103022310
Revises:
Create Date: 2021-11-03 02:23:10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20211103022310"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("bio", sa.Text),
        sa.Column("number_of_pets", sa.Integer),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("users")
