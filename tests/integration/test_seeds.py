"""Seeds end to end: the ledger (proven with a seed that is NOT idempotent), atomicity, and seeds that try to
leave the transaction they run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import query, run_migrator

COUNTER = '''import sqlalchemy as sa


def run(session):
    session.execute(sa.text("CREATE TABLE IF NOT EXISTS seed_runs (id serial PRIMARY KEY, note text)"))
    session.execute(sa.text("INSERT INTO seed_runs (note) VALUES ('{note}')"))
'''


def runs(url: str) -> list[object]:
    return [row[0] for row in query(url, "SELECT note FROM seed_runs ORDER BY id")]


@pytest.fixture
def migrated(project: Path, database_url: str) -> str:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    return database_url


def test_the_ledger_runs_a_file_once_per_content(project: Path, migrated: str) -> None:
    """Without the ledger this seed would insert a row on every run: it inserts exactly once per content."""
    seed = project / "seeds" / "02_counter.py"
    seed.write_text(COUNTER.format(note="first"))
    for _ in range(3):
        result = run_migrator(["seed"], cwd=project, database_url=migrated)
        assert result.returncode == 0, result.stderr
    assert runs(migrated) == ["first"]
    assert "== Skipped seed 02_counter.py (unchanged since it ran)" in result.stderr
    seed.write_text(COUNTER.format(note="changed"))
    assert run_migrator(["seed"], cwd=project, database_url=migrated).returncode == 0
    assert run_migrator(["seed"], cwd=project, database_url=migrated).returncode == 0
    assert runs(migrated) == ["first", "changed"]
    assert run_migrator(["seed", "--force"], cwd=project, database_url=migrated).returncode == 0
    assert runs(migrated) == ["first", "changed", "changed"]


def test_a_failing_seed_leaves_no_row_and_no_ledger_entry(project: Path, migrated: str) -> None:
    (project / "seeds" / "02_counter.py").write_text(COUNTER.format(note="x") + "    raise RuntimeError('late')\n")
    result = run_migrator(["seed"], cwd=project, database_url=migrated)
    assert result.returncode == 1
    assert "seed 02_counter.py failed and was rolled back: RuntimeError: late" in result.stderr.splitlines()[-1]
    assert query(migrated, "SELECT to_regclass('seed_runs')") == [(None,)]
    assert query(migrated, "SELECT name FROM migrator_seeds ORDER BY name") == [("01_users.py",)]


@pytest.mark.parametrize("statement", ["COMMIT", "ROLLBACK", "END", "PREPARE TRANSACTION 'x'"])
def test_a_seed_cannot_end_its_transaction(project: Path, migrated: str, statement: str) -> None:
    """A seed that runs COMMIT would commit half of itself without its ledger row: refused before it is sent."""
    (project / "seeds" / "02_commits.py").write_text(
        COUNTER.format(note="half") + f"    session.execute(sa.text({statement!r}))\n"
        "    session.execute(sa.text(\"INSERT INTO seed_runs (note) VALUES ('rest')\"))\n")
    result = run_migrator(["seed"], cwd=project, database_url=migrated)
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert "seed 02_commits.py failed and was rolled back" in last
    assert f"executes {statement.split(maxsplit=1)[0]}" in last and "it was not sent" in last
    assert query(migrated, "SELECT to_regclass('seed_runs')") == [(None,)]


def test_a_seed_calling_sys_exit_is_a_failed_seed(project: Path, migrated: str) -> None:
    (project / "seeds" / "02_exits.py").write_text(COUNTER.format(note="x") + "    import sys\n    sys.exit(3)\n")
    result = run_migrator(["seed"], cwd=project, database_url=migrated)
    assert result.returncode == 1
    assert "seed 02_exits.py failed and was rolled back: it called sys.exit(3)" in result.stderr.splitlines()[-1]
    assert query(migrated, "SELECT to_regclass('seed_runs')") == [(None,)]


def test_session_commit_in_a_seed_only_releases_its_savepoint(project: Path, migrated: str) -> None:
    (project / "seeds" / "02_commits.py").write_text(
        COUNTER.format(note="before") + "    session.commit()\n    raise RuntimeError('after commit')\n")
    result = run_migrator(["seed"], cwd=project, database_url=migrated)
    assert result.returncode == 1
    assert query(migrated, "SELECT to_regclass('seed_runs')") == [(None,)]
