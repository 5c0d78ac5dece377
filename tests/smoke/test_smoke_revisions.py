"""The smoke images' extra revisions (tests/smoke/smoke_scenario.py) with the real migrator against a real
PostgreSQL, no cluster and no image: the hook release's migration steps in the scenario's order, each checked
with the expectation the kind suite asserts. A downgrade that does not undo its upgrade fails here."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAD, query, run_migrator
from tests.smoke.smoke_scenario import Expect, base_revisions, hook_steps, smoke_revisions


def table_exists(url: str, table: str) -> bool:
    return bool(query(url, "SELECT to_regclass(%s) IS NOT NULL", table)[0][0])


def version(url: str) -> str:
    return str(query(url, "SELECT version_num FROM alembic_version")[0][0])


def ship(project: Path, *roles: str) -> None:
    """Make PROJECT's migrations what a smoke image carries: the base ones plus the files of ROLES."""
    versions = project / "migrations" / "versions"
    files = smoke_revisions(HEAD)
    for revision in files.values():
        (versions / revision.filename).unlink(missing_ok=True)
    for role in roles:
        (versions / files[role].filename).write_text(files[role].text())


def step(expect: Expect, project: Path, url: str, args: list[str], exit_code: int = 0) -> None:
    proc = run_migrator(args, cwd=project, database_url=url)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    expect.check([proc.stdout + proc.stderr], version(url), lambda table: table_exists(url, table))


def test_the_base_head_is_the_extra_revisions_parent() -> None:
    assert base_revisions()[-1] == HEAD
    assert smoke_revisions(HEAD)["extra"].down == HEAD


def test_the_hook_releases_migrations_in_order(project: Path, database_url: str) -> None:
    """install, upgrade to extra, NOTES' rollback to the base head, the broken upgrade, the fixed one; then
    back to the base head."""
    steps = hook_steps(base_revisions())
    step(steps["install"], project, database_url, ["migrate"])
    ship(project, "extra")
    step(steps["upgrade-extra"], project, database_url, ["migrate"])
    step(steps["notes-rollback"], project, database_url, ["rollback", HEAD])
    ship(project, "extra", "broken")
    step(steps["upgrade-broken"], project, database_url, ["migrate"], exit_code=1)
    ship(project, "extra", "fixed")
    step(steps["upgrade-fixed"], project, database_url, ["migrate"])
    # Beyond the scenario: every downgrade of the smoke images undoes its upgrade.
    proc = run_migrator(["rollback", HEAD], cwd=project, database_url=database_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert version(database_url) == HEAD
    assert not table_exists(database_url, "smoke_extra") and not table_exists(database_url, "smoke_more")

