"""The seed ledger belongs to its repo: two repos in one database (different version tables) whose seed files
share a name each run their own file once."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.conftest import ROOT, query, run_migrator

SEED = ('import sqlalchemy as sa\n\ndef run(session):\n'
        '    session.execute(sa.text("INSERT INTO seed_log VALUES ({repo!r})"))\n')


def repo(project: Path, name: str) -> str:
    (project / name / "versions").mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", project / name / "env.py")
    (project / f"{name}_seeds").mkdir()
    (project / f"{name}_seeds" / "01_seed.py").write_text(SEED.format(repo=name))
    return (f'[[repos]]\nname = "{name}"\nscript_location = "{name}"\nseeds = "{name}_seeds"\n'
            f'version_table = "{name}_version"\n')


def test_two_repos_seed_files_of_the_same_name_run_once_each(tmp_path: Path, database_url: str) -> None:
    project = tmp_path / "project"
    (project / "migrator.toml").parent.mkdir()
    (project / "migrator.toml").write_text(repo(project, "alpha") + "\n" + repo(project, "beta"))
    query(database_url, "CREATE TABLE seed_log (repo text)")
    first = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert first.returncode == 0, first.stderr
    again = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert [line.split("] ", 1)[1] for line in again.stderr.splitlines() if "Seeds done" in line] == [
        "Seeds done: 0 ran, 1 unchanged", "Seeds done: 0 ran, 1 unchanged"], again.stderr
    assert sorted(query(database_url, "SELECT repo FROM seed_log")) == [("alpha",), ("beta",)]


def test_a_ledger_of_an_older_migrator_is_kept_and_keyed_by_repo(project: Path, database_url: str) -> None:
    """A ledger keyed by file name alone (written before the repo was part of the key) is upgraded in place: its
    rows become the repo's that upgrades it, so its unchanged seeds do not run again."""
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    seed = project / "seeds" / "01_users.py"
    query(database_url, "CREATE TABLE migrator_seeds (name text PRIMARY KEY, checksum text NOT NULL, "
                        "applied_at timestamptz NOT NULL DEFAULT now())")
    query(database_url, "INSERT INTO migrator_seeds (name, checksum) VALUES (%s, %s)", seed.name,
          hashlib.sha256(seed.read_bytes()).hexdigest())
    result = run_migrator(["seed"], cwd=project, database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "Seeds done: 0 ran, 1 unchanged" in result.stderr.splitlines()[-1]
    assert query(database_url, "SELECT version_table, name FROM migrator_seeds") == [("alembic_version", seed.name)]
