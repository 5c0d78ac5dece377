"""`migrator lint` with the real squawk on a project init wrote (issue 18, item 7): what migrator already sets on
every migration's session is not flagged, the summary counts squawk's problems and the migrations they are in, and
a report that goes to a pipe carries no terminal colour codes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.alembic_projects import new_revision
from tests.conftest import run_migrator


def init_project(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    assert run_migrator(["init"], cwd=project, database_url=None).returncode == 0
    return project


def test_lint_on_a_new_project_counts_problems_and_skips_what_migrator_sets(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    new_revision(project, "create items", "op.create_table('items', sa.Column('id', sa.BigInteger, "
                                          "primary_key=True), sa.Column('name', sa.Text))")
    new_revision(project, "index and require", "op.create_index('items_name', 'items', ['name'])\n"
                                               "    op.add_column('items', sa.Column('n', sa.BigInteger, "
                                               "nullable=False))")
    result = run_migrator(["lint"], cwd=project, database_url=None)
    assert result.returncode == 1, result.stderr
    assert "\x1b[" not in result.stdout
    problems = [line for line in result.stdout.splitlines() if re.match(r"^\S+\.sql:\d+:\d+: ", line)]
    files = {line.split(":")[0] for line in problems}
    assert not [line for line in problems if "require-lock-timeout" in line or "require-statement-timeout" in line]
    assert len(problems) > len(files) == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"squawk found {len(problems)} problem(s) in {len(files)} of 2 migration(s)")


def test_lint_keeps_the_project_exclusions_beside_its_own(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    new_revision(project, "create items", "op.create_table('items', sa.Column('id', sa.Integer, primary_key=True))")
    flagged = run_migrator(["lint"], cwd=project, database_url=None)
    assert "prefer-bigint-over-int" in flagged.stdout
    (project / ".squawk.toml").write_text(
        'excluded_rules = ["prefer-bigint-over-int", "prefer-robust-stmts", "prefer-identity"]\n')
    clean = run_migrator(["lint"], cwd=project, database_url=None)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout == "squawk: 1 migration(s), no problems\n"
