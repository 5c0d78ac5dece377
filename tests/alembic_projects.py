"""Existing Alembic projects for `migrator init --adopt` to take over, written into a test's directory.

Their env.py files follow the shapes real projects use (Alembic's generic and async templates with the app's
models imported at the top, FastAPI's template with sys.path and settings imports, Flask-Migrate's metadata
from the app object); they are kept here as strings, so that neither ruff nor mypy reads them as this
repository's modules.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import run_migrator

ITEMS_REVISION = "1a2b3c4d5e6f"  # Alembic's own ids: adopting keeps them; new ones get timestamps

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/alembic
prepend_sys_path = .
sqlalchemy.url = driver://user:pass@localhost/dbname

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

# Alembic's generic env.py with the app's models wired in, as most projects have it.
STOCK_ENV = '''\
from logging.config import fileConfig

from sqlalchemy import engine_from_config
from sqlalchemy import pool

from alembic import context

from shop import audit  # registers the audit models on Base
from shop.models import Base

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table="shop_version",
        compare_type=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )

    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, version_table="shop_version",
            compare_type=True, include_object=lambda *args: True,
        )

        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

SCRIPT_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''

ITEMS = f'''\
"""create items

Revision ID: {ITEMS_REVISION}
Revises:
Create Date: 2024-03-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "{ITEMS_REVISION}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    op.create_table("audit_events", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("audit_events")
    op.drop_table("items")
'''

MODELS = '''\
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    price: Mapped[int | None] = mapped_column(sa.Integer())
'''

AUDIT = '''\
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shop.models import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True)
'''


def write_stock_project(root: Path) -> Path:
    """A shop app with an Alembic project (alembic.ini, alembic/ with one revision) in ROOT; returns ROOT.

    Its models have a `price` column that no revision creates yet: the test adds it with `migrator new`.
    """
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "shop").mkdir()
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / "alembic" / "env.py").write_text(STOCK_ENV)
    (root / "alembic" / "script.py.mako").write_text(SCRIPT_MAKO)
    (root / "alembic" / "versions" / f"{ITEMS_REVISION}_create_items.py").write_text(ITEMS)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "models.py").write_text(MODELS)
    (root / "shop" / "audit.py").write_text(AUDIT)
    return root


def new_revision(project: Path, message: str, upgrade: str) -> str:
    """`migrator new MESSAGE` in PROJECT, its upgrade() filled in with UPGRADE (and the imports it uses, when the
    template left them out, as its comment says); returns the new revision's id."""
    created = run_migrator(["new", message], cwd=project, database_url=None)
    assert created.returncode == 0, created.stderr
    path = Path(created.stdout.strip())
    text, filled = re.subn(r"(def upgrade\(\)(?: -> None)?:\n    )pass", rf"\g<1>{upgrade}", path.read_text())
    assert filled == 1, text
    if not re.search(r"^from alembic import op$", text, re.MULTILINE):
        imports = "from collections.abc import Sequence\n\nimport sqlalchemy as sa\nfrom alembic import op\n"
        text = text.replace("from collections.abc import Sequence\n", imports)
    path.write_text(text)
    return path.name[:14]
