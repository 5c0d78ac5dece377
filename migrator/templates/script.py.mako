"""${message}

Revision ID: ${up_revision}
Revises: ${comma(down_revision) or "base"}
Create Date: ${create_date}
"""
<%
    # Import only what the bodies use, so that a revision left empty passes ruff (F401) as written.
    body = (upgrades or "") + "\n" + (downgrades or "")
    uses_sa = "sa." in body
    uses_op = "op." in body
%>
from collections.abc import Sequence
% if uses_sa or uses_op:

% endif
% if uses_sa:
import sqlalchemy as sa
% endif
% if uses_op:
from alembic import op
% endif
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
% if not uses_op:

# upgrade() and downgrade() take alembic.op operations, e.g. op.add_column("users", sa.Column("age", sa.Integer()));
# import what they use: `from alembic import op`, `import sqlalchemy as sa`.
% endif


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
