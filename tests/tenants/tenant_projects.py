"""Projects and databases for the tenant tests: a project whose migrations make one table each (one of them by
raw SQL, so that search_path is what places it), tenants listed by a query or in migrator.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT, query

REVISIONS = [f"2024010100{i:04d}" for i in range(1, 5)]
HEAD = REVISIONS[-1]


def write_project(root: Path, config: str, revisions: int = len(REVISIONS)) -> Path:
    """A project in `root` with `revisions` migrations (r1 creates table t1 with op.create_table, r2 makes t2 by
    raw SQL, the rest op.create_table again) and `config` as its migrator.toml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "migrations" / "versions").mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", root / "migrations" / "env.py")
    shutil.copy(ROOT / "migrations" / "script.py.mako", root / "migrations" / "script.py.mako")
    for number, revision in enumerate(REVISIONS[:revisions], start=1):
        down = repr(REVISIONS[number - 2]) if number > 1 else "None"
        if number == 2:
            upgrade = 'op.execute("CREATE TABLE t2 (id bigint PRIMARY KEY)")'
        else:
            upgrade = f'op.create_table("t{number}", sa.Column("id", sa.BigInteger, primary_key=True))'
        (root / "migrations" / "versions" / f"{revision}_t{number}.py").write_text(
            f'"""t{number}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = {revision!r}\n'
            f"down_revision = {down}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {upgrade}\n\n\ndef downgrade():\n    op.drop_table('t{number}')\n")
    (root / "migrator.toml").write_text(config)
    return root


QUERY_CONFIG = 'tenants_query = "SELECT schema_name FROM public.tenants"\n'


def make_tenants_table(url: str, names: list[str]) -> None:
    query(url, "CREATE TABLE public.tenants (schema_name text PRIMARY KEY)")
    for name in names:
        query(url, "INSERT INTO public.tenants VALUES (%s)", name)


def tenant_versions(url: str, tenant: str) -> list[object]:
    return [row[0] for row in query(url, f'SELECT version_num FROM "{tenant}".alembic_version')]


def applied(url: str, tenant: str) -> list[object]:
    """The revisions the tenant's history says were applied, in order, once per application."""
    return [row[0] for row in query(url, f'SELECT revision FROM "{tenant}".migrator_history WHERE outcome = '
                                         "'applied' ORDER BY id")]
