"""Two migrators whose search_path differs take the one lock of the one version table they both find.

Alembic (and migrator's own reads) find an unqualified version table through search_path, and the migration
lock is keyed by the schema where that table resolves, not by current_schema(). Two migrators whose search_path
differs (a URL's `options=-csearch_path=...`, a role's or database's search_path, a "$user" schema that exists
for one role) wait for each other: the first runs the migration, the second finds it done (a non-transactional
part must never run twice, and Alembic's row count check on the version stamp is no lock).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision, query
from tests.faults.helpers import BASE, Migrator, at_base, wait_for_backend

REV = "20240101000001"
SLOW = """
op.execute("INSERT INTO public.ran_log (what) VALUES ('slow')")
op.execute("SELECT pg_sleep(4)")
"""


def test_two_search_paths_one_version_table_one_lock(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, SLOW, name="slow")
    at_base(url)
    query(url, "CREATE SCHEMA extra")  # e.g. an extensions schema first in one client's search_path
    first = Migrator(["migrate"], cwd=fault_project, url=url)
    wait_for_backend(url, "%pg_sleep%")
    other = url + ("&" if "?" in url else "?") + "options=-csearch_path%3Dextra,public"
    second = Migrator(["migrate"], cwd=fault_project, url=other)
    one, two = first.finish(60), second.finish(60)
    assert (one.code, two.code) == (0, 0), f"{one.err}\n---\n{two.err}"
    # The first holds the lock through its pg_sleep: it runs the migration, the second waits and finds it done.
    assert f"== Running {REV}" in one.err, one.err
    assert f"== Running {REV}" not in two.err, f"both migrators ran {REV}:\n{one.err}\n---\n{two.err}"
