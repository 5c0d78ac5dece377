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
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

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


# --- a history written against a metadata with a naming convention ---------------------------------------
# The shape of a real project (manytask's): autogenerated revisions that leave constraints unnamed, so that the
# convention names them (pk_courses, uq_courses_name, fk_...), and a later revision that drops one by that name.
# Migrated without the convention, the first revisions create PostgreSQL's default names and the drop fails.

CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAMED_MODELS = f'''\
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

convention = {CONVENTION!r}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=convention)


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
'''

NAMED_REVISIONS = {
    "a7c68744b7a5": ("init_migration", None, '''\
    op.create_table(
        "courses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("host", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username", "host", name="_username_host_uc"),
    )
    op.create_table(
        "user_on_course",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_user_on_course_user_id"), "user_on_course", ["user_id"], unique=False)''',
                     '''    op.drop_table("user_on_course")
    op.drop_table("users")
    op.drop_table("courses")'''),
    "bcca2f4efa74": ("add_token", "a7c68744b7a5", '''\
    op.add_column("courses", sa.Column("token", sa.String(32), nullable=True))
    op.create_unique_constraint(op.f("uq_courses_token"), "courses", ["token"])
    op.create_foreign_key(None, "user_on_course", "users", ["user_id"], ["id"])
    op.create_check_constraint("positive_id", "courses", "id > 0")''',
                     '''    op.drop_constraint("positive_id", "courses", type_="check")
    op.drop_constraint("fk_user_on_course_user_id_users", "user_on_course", type_="foreignkey")
    op.drop_constraint(op.f("uq_courses_token"), "courses", type_="unique")
    op.drop_column("courses", "token")'''),
    "d8b7ebab0173": ("names_are_not_unique", "bcca2f4efa74", '''\
    op.drop_constraint("uq_courses_name", "courses", type_="unique")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint("_username_host_uc", type_="unique")
        batch_op.create_unique_constraint(None, ["username"])''',
                     '''    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint("uq_users_username", type_="unique")
        batch_op.create_unique_constraint("_username_host_uc", ["username", "host"])
    op.create_unique_constraint(None, "courses", ["name"])'''),
}

NAMED_ENV = STOCK_ENV.replace("from shop import audit  # registers the audit models on Base\n"
                              "from shop.models import Base\n",
                              "from dotenv_settings import settings  # the app's settings, no models\n"
                              "from courses.models import Base\n").replace('version_table="shop_version",', "")


def write_named_project(root: Path) -> Path:
    """An Alembic project whose models' metadata has a naming convention, with the history above; returns ROOT."""
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "courses").mkdir()
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / "alembic" / "env.py").write_text(NAMED_ENV)
    (root / "alembic" / "script.py.mako").write_text(SCRIPT_MAKO)
    for revision, (name, down, upgrade, downgrade) in NAMED_REVISIONS.items():
        (root / "alembic" / "versions" / f"{revision}_{name}.py").write_text(
            f'"""{name}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\nrevision = {revision!r}\n'
            f"down_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{upgrade}\n\n\ndef downgrade():\n{downgrade}\n")
    (root / "courses" / "__init__.py").write_text("")
    (root / "courses" / "models.py").write_text(NAMED_MODELS)
    (root / "dotenv_settings.py").write_text("settings = {'debug': False}\n")
    return root


# fractal-server's shape: the models' metadata has no convention; env.py sets one on it, imported from a module of
# the app, and imports the models after that (so that autogenerate sees their constraints named by it).
CONVENTION_SET_IN_ENV = NAMED_ENV.replace(
    "from dotenv_settings import settings  # the app's settings, no models\nfrom courses.models import Base\n",
    "from courses.db import Base\nfrom courses.naming import NAMING_CONVENTION\n").replace(
    "target_metadata = Base.metadata\n",
    "target_metadata = Base.metadata\ntarget_metadata.naming_convention = NAMING_CONVENTION\n"
    "from courses import models  # noqa: E402,F401  (after the convention, which names their constraints)\n")
MODELS_ON_A_PLAIN_BASE = {
    "db.py": "from sqlalchemy.orm import DeclarativeBase\n\n\nclass Base(DeclarativeBase):\n    pass\n",
    "naming.py": f"NAMING_CONVENTION = {CONVENTION!r}\n",
    "models.py": NAMED_MODELS[NAMED_MODELS.index("\n\nclass Course"):].replace(
        "\n\nclass Course", "import sqlalchemy as sa\nfrom sqlalchemy.orm import Mapped, mapped_column\n\n"
        "from courses.db import Base\n\n\nclass Course", 1),
}


def write_convention_in_env_project(root: Path) -> Path:
    """The naming-convention history above, in a project whose env.py sets the convention itself; returns ROOT."""
    write_named_project(root)
    (root / "alembic" / "env.py").write_text(CONVENTION_SET_IN_ENV)
    for name, text in MODELS_ON_A_PLAIN_BASE.items():
        (root / "courses" / name).write_text(text)
    return root


SCHEMA_QUERY = """
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
   AND conrelid::regclass::text NOT LIKE '%version%' AND conrelid::regclass::text NOT LIKE 'migrator%'
UNION ALL
SELECT 'index', tablename, indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename NOT LIKE '%version%' AND tablename NOT LIKE 'migrator%'
UNION ALL
SELECT 'column', table_name, column_name, data_type || ' ' || is_nullable FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name NOT LIKE '%version%' AND table_name NOT LIKE 'migrator_%'
ORDER BY 1, 2, 3
"""
