"""Two setup errors end with exit 2, as the README's table says, which the chart's Job does not retry.

- A bad libpq setting in the URL (`sslmode=bogus`) is a bad URL, not an unreachable database (3, which the Job
  retries).
- A role that may not create migrator_history (PostgreSQL 15+ revokes CREATE on public; the version table
  exists and the role may write it, as plain Alembic needs) is refused before any migration runs, with one line
  naming the table and the grant it needs, not as a failed migration ("database error: permission denied", 1).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import BASE, Migrator, at_base
from tests.urls import as_role


def test_a_bad_sslmode_is_a_usage_error(fault_project: Path, url: str) -> None:
    result = Migrator(["status"], cwd=fault_project, url=url + ("&" if "?" in url else "?") + "sslmode=bogus"
                      ).finish(30)
    assert result.code == 2, result.err


def test_no_create_privilege_for_the_history_table(fault_project: Path, url: str) -> None:
    add_revision(fault_project, "20240101000001", BASE, 'op.execute("UPDATE items SET note = upper(note)")',
                 name="data_only")
    at_base(url)
    role = "lim_" + uuid.uuid4().hex[:8]
    query(url, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    query(url, f"GRANT SELECT, INSERT, UPDATE, DELETE ON items, alembic_version TO {role}")
    query(url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    mine = as_role(url, role, f"pw-{role}")
    try:
        result = Migrator(["migrate"], cwd=fault_project, url=mine).finish(60)
        assert result.code == 2, result.err  # refused as a setup error, naming the table and the grant
        assert "cannot create the migration history table public.migrator_history" in result.one_clean_error()
        assert "grant the migrator's role CREATE on schema public" in result.errors[-1]
    finally:
        query(url, f"DROP OWNED BY {role}")
        query(url, f"DROP ROLE {role}")
