"""--allow-newer accepts a database a newer release migrated only when the migration history proves that its
revision descends from this image's head: a revision on another branch is refused, a descendant accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT, add_revision, query, run_migrator

P, A, B, X, Y = "20240101000000", "20240101000001", "20240101000002", "20240101000003", "20240101000004"


def project(base: Path, name: str, revisions: list[tuple[str, str | None]]) -> Path:
    path = base / name
    (path / "migrations" / "versions").mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", path / "migrations" / "env.py")
    for revision, down in revisions:
        add_revision(path, revision, down, f'op.execute("CREATE TABLE t_{revision} (id int)")', name=f"r{revision}")
    return path


def test_a_database_on_another_branch_is_refused(tmp_path: Path, database_url: str) -> None:
    """This image: P -> A. The database was migrated by an image with P -> B -> X: X is newer than anything
    here, but it descends from B, not from A."""
    mine = project(tmp_path, "mine", [(P, None), (A, P)])
    other = project(tmp_path, "other", [(P, None), (B, P), (X, B)])
    assert run_migrator(["migrate"], cwd=other, database_url=database_url).returncode == 0
    result = run_migrator(["migrate", "--allow-newer"], cwd=mine, database_url=database_url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"is at revision {X}, which these migrations do not have, and --allow-newer cannot accept it: it does not "
        f"descend from {A} (a different branch, or rolled back); deploy the newer release's migrator image")
    status = run_migrator(["status", "--check", "--allow-newer"], cwd=mine, database_url=database_url)
    assert status.returncode == 5, status.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(X,)]


def test_a_descendant_of_this_images_head_is_accepted(tmp_path: Path, database_url: str) -> None:
    mine = project(tmp_path, "mine", [(P, None), (A, P)])
    newer = project(tmp_path, "newer", [(P, None), (A, P), (Y, A)])
    assert run_migrator(["migrate"], cwd=newer, database_url=database_url).returncode == 0
    result = run_migrator(["migrate", "--allow-newer"], cwd=mine, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert f"it descends from {A} (proven by the migration history)" in result.stderr
    assert run_migrator(["status", "--check", "--allow-newer"], cwd=mine, database_url=database_url).returncode == 0
