"""Validation of applied migrations against real PostgreSQL: a changed or deleted applied file is refused by
`migrate` (exit 2, one line) and shown by `status`; reformatting is not; warn and off; resolve
--accept-checksum; checksums recorded on first sight for databases migrated by plain Alembic or by a migrator
that predates checksums, also with 8 replicas starting at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from migrator.config import database_config
from tests.conftest import FIRST, HEAD, add_revision, migrator_env, query, run_migrator, start_migrator

FIRST_FILE = f"versions/{FIRST}_create_users.py"
REFUSAL = ("{db}: {what}: the database no longer matches these files. Restore them as they were, or accept a "
           "deliberate change with `migrator resolve REV --accept-checksum` (MIGRATOR_VALIDATE=warn lets migrate "
           "go on)")
CHANGED = f"applied migration {FIRST} ({FIRST_FILE}) changed since it ran"


def description(url: str) -> str:
    return database_config({"DATABASE_URL": url}).description


def first_file(project: Path) -> Path:
    return project / "migrations" / FIRST_FILE


def edit_sql(project: Path) -> None:
    """A change to what the migration does: a column's name in its CREATE TABLE."""
    path = first_file(project)
    path.write_text(path.read_text().replace('sa.Column("bio", sa.Text)', 'sa.Column("biography", sa.Text)'))


def error_lines(stderr: str) -> list[str]:
    return [line.split("[error] ", 1)[1] for line in stderr.splitlines() if "[error] " in line]


def history(url: str) -> list[tuple[object, ...]]:
    return query(url, "SELECT revision, outcome, detail, checksum IS NOT NULL, file_hash IS NOT NULL "
                      "FROM migrator_history ORDER BY id")


def migrated(project: Path, url: str) -> None:
    proc = run_migrator(["migrate"], cwd=project, database_url=url)
    assert proc.returncode == 0, proc.stderr


def test_an_edited_applied_file_is_refused_and_shown_by_status(project: Path, database_url: str) -> None:
    migrated(project, database_url)
    rows = history(database_url)
    assert [r[3:] for r in rows] == [(True, True), (True, True)]  # recorded with each step's COMMIT
    edit_sql(project)

    refused = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [REFUSAL.format(db=description(database_url), what=CHANGED)]
    assert history(database_url) == rows  # nothing written

    status = run_migrator(["status"], cwd=project, database_url=database_url)
    assert status.returncode == 0
    assert f"  changed since applied: {FIRST} ({FIRST_FILE})" in status.stdout.splitlines()


def test_a_changed_file_is_refused_before_any_pending_migration_runs(project: Path, database_url: str) -> None:
    migrated(project, database_url)
    add_revision(project, "20220101000000", HEAD, "op.add_column('users', sa.Column('age', sa.Integer))")
    edit_sql(project)
    refused = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [REFUSAL.format(db=description(database_url), what=CHANGED)]
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_reformatting_and_comments_are_not_a_change(project: Path, database_url: str) -> None:
    migrated(project, database_url)
    path = first_file(project)
    text = path.read_text().replace("    op.drop_table", "    # gone\n    op.drop_table")
    path.write_text("# reviewed 2024-05-01\n" + text)
    ruff = Path(sys.executable).with_name("ruff")
    subprocess.run([str(ruff), "format", "-q", "--no-cache", "--line-length=40", str(path)], check=True, timeout=60)

    again = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert "[error]" not in again.stderr and "[warning]" not in again.stderr
    # the new file hash is recorded once, so that the next start answers from the digest again
    assert history(database_url)[-1][:3] == (FIRST, "recorded", "file reformatted since it ran (same checksum): "
                                                                 "its new file hash recorded")
    status = run_migrator(["status", "--json"], cwd=project, database_url=database_url)
    assert '"changed": [], "missing": [], "unrecorded": 0' in status.stdout


def test_an_applied_revision_whose_file_was_deleted_is_reported(project: Path, database_url: str) -> None:
    """Reverted by plain Alembic (which writes no history), then deleted: the history still says applied."""
    migrated(project, database_url)
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "downgrade", "-1"], cwd=project, env=migrator_env(database_url), check=True,
                   capture_output=True, timeout=120)
    (project / "migrations" / "versions" / f"{HEAD}_add_users_email_index.py").unlink()

    status = run_migrator(["status"], cwd=project, database_url=database_url)
    assert f"  applied, file missing: {HEAD}" in status.stdout.splitlines()
    refused = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert refused.returncode == 2
    missing = f"applied migration {HEAD} is missing from the files"
    assert error_lines(refused.stderr) == [REFUSAL.format(db=description(database_url), what=missing)]

    accepted = run_migrator(["resolve", HEAD, "--accept-checksum"], cwd=project, database_url=database_url)
    assert accepted.returncode == 0, accepted.stderr
    assert history(database_url)[-1][:3] == (
        HEAD, "accepted", "file removed; accepted by an operator (migrator resolve --accept-checksum)")
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0


WARN_AND_OFF = [  # (MIGRATOR_VALIDATE, migrator.toml's validate, exit code, warned)
    ({"MIGRATOR_VALIDATE": "warn"}, None, 0, True),
    ({"MIGRATOR_VALIDATE": "off"}, None, 0, False),
    ({}, "warn", 0, True),
    ({"MIGRATOR_VALIDATE": "error"}, "off", 2, False),  # the variable overrides the file
]


def test_warn_and_off(project: Path, database_url: str) -> None:
    """Each setting on the same changed file (warn and off write nothing, so the cases share one database)."""
    migrated(project, database_url)
    edit_sql(project)
    warning = f"[warning] {REFUSAL.format(db=description(database_url), what=CHANGED)}"
    for env, toml, code, warned in WARN_AND_OFF:
        (project / "migrator.toml").write_text(f'validate = "{toml}"\n' if toml else "")
        proc = run_migrator(["migrate"], cwd=project, database_url=database_url, env=env)
        assert (proc.returncode, warning in proc.stderr) == (code, warned), (env, toml, proc.stderr)


def test_a_bad_validate_setting_is_one_line(project: Path, database_url: str) -> None:
    proc = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_VALIDATE="maybe")
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["MIGRATOR_VALIDATE='maybe' is not supported: use error (refuse to "
                                        "migrate), warn or off"]
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def test_accepting_a_change_is_recorded_and_then_compared_with(project: Path, database_url: str) -> None:
    migrated(project, database_url)
    edit_sql(project)
    accepted = run_migrator(["resolve", FIRST[:8], "--accept-checksum"], cwd=project, database_url=database_url)
    assert accepted.returncode == 0, accepted.stderr
    assert history(database_url)[-1] == (
        FIRST, "accepted", "checksum accepted by an operator (migrator resolve --accept-checksum)", True, True)
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    again = run_migrator(["resolve", FIRST, "--accept-checksum"], cwd=project, database_url=database_url)
    assert again.returncode == 2
    assert error_lines(again.stderr) == [f"nothing to accept: {FIRST} is not an applied migration whose file "
                                         f"changed or is missing on {description(database_url)} (see migrator status)"]


def plain_alembic_upgrade(project: Path, url: str) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "upgrade", "head"], cwd=project, env=migrator_env(url), check=True,
                   capture_output=True, timeout=120)


def test_a_database_migrated_by_plain_alembic_gets_checksums_on_first_sight(project: Path, database_url: str) -> None:
    plain_alembic_upgrade(project, database_url)
    proc = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert proc.returncode == 0, proc.stderr
    assert "[warning]" not in proc.stderr and "[error]" not in proc.stderr
    first_sight = ("checksum recorded on first sight (applied before checksums were recorded, or by plain "
                   "Alembic)")
    assert sorted(history(database_url)) == [(FIRST, "recorded", first_sight, True, True),
                                             (HEAD, "recorded", first_sight, True, True)]
    edit_sql(project)  # what was recorded is compared from now on
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 2


def test_a_history_older_than_checksums_gets_them_without_an_alarm(project: Path, database_url: str) -> None:
    """The history table an earlier migrator made: no checksum columns, `applied` rows without checksums."""
    migrated(project, database_url)
    query(database_url, "DROP INDEX migrator_history_state")
    query(database_url, "ALTER TABLE migrator_history DROP COLUMN checksum, DROP COLUMN file_hash")
    status = run_migrator(["status"], cwd=project, database_url=database_url)
    assert "  checksums not recorded yet: 2 (the next migrate records them)" in status.stdout.splitlines()

    proc = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert proc.returncode == 0, proc.stderr
    assert "[warning]" not in proc.stderr
    assert [row[1] for row in history(database_url)] == ["applied", "applied", "recorded", "recorded"]
    assert query(database_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'migrator_history_state'") == [(1,)]


def test_eight_replicas_starting_at_once_record_first_sight_once(project: Path, database_url: str) -> None:
    plain_alembic_upgrade(project, database_url)
    replicas = [start_migrator(["migrate"], cwd=project, database_url=database_url) for _ in range(8)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in replicas]
    for p in replicas:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in results] == [0] * 8, results
    assert not [err for _, err in results if "[warning]" in err or "[error]" in err]
    assert query(database_url, "SELECT revision, count(*) FROM migrator_history GROUP BY revision ORDER BY 1") == [
        (FIRST, 1), (HEAD, 1)]
