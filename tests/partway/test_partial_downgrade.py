"""A rollback (downgrade) left part-way stops the next `migrate`, as the rollback's own line says.

README: "The next `migrate` decides explicitly: [...] any other stops with exit 6 until an operator runs
`migrator resolve`", and the rollback's exit-6 line says "The next migrate stops here (exit 6)". So `migrate`
after a part-way downgrade exits 6, not 0 with "Migrations already up" (a hook Job would then succeed with a
table the downgrade dropped gone). After `resolve --rerun`, the downgrade runs again on the next rollback, and
the line does not promise that the next migrate runs it.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import add_revision
from tests.faults.helpers import BASE, Migrator, table_exists

REV = "20240101000001"
UPGRADE = """
op.execute("CREATE TABLE ta (id int)")
op.execute("CREATE TABLE tb (id int)")
"""
DOWNGRADE = """
with op.get_context().autocommit_block():
    op.execute("DROP TABLE ta")
    op.execute("SELECT 1/0")
    op.execute("DROP TABLE tb")
"""


def test_migrate_after_a_part_way_downgrade_is_not_exit_0(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, UPGRADE, downgrade=DOWNGRADE, name="two_tables")
    assert Migrator(["migrate"], cwd=fault_project, url=url).finish(60).code == 0
    back = Migrator(["rollback", BASE], cwd=fault_project, url=url).finish(60)
    assert back.code == 6, back.err
    assert "The next migrate stops here (exit 6)" in back.err
    assert not table_exists(url, "ta")  # the committed part of the downgrade

    again = Migrator(["migrate"], cwd=fault_project, url=url).finish(60)
    # What the rollback's message promised, and what the README says: stop until an operator decides.
    assert again.code == 6, f"migrate exited {again.code} with ta missing:\n{again.err}"


def test_resolve_rerun_of_a_downgrade_does_not_promise_a_migrate(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, UPGRADE, downgrade=DOWNGRADE, name="two_tables")
    assert Migrator(["migrate"], cwd=fault_project, url=url).finish(60).code == 0
    assert Migrator(["rollback", BASE], cwd=fault_project, url=url).finish(60).code == 6
    resolved = Migrator(["resolve", REV, "--rerun"], cwd=fault_project, url=url).finish(60)
    assert resolved.code == 0, resolved.err
    # The downgrade runs again on the next *rollback*; `migrate` has nothing to run (the version is stamped).
    assert "will run again on the next migrate" not in resolved.err, resolved.err
