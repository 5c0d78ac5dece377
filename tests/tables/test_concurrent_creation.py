"""migrator creates its own tables safely when several migrators do it at once: two repos with different version
tables (so different migration locks) in one database, both creating the history table at the same moment."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from tests.conftest import ROOT, add_revision, query
from tests.faults.helpers import Migrator
from tests.faults.proxy import wait_until

BARRIER = 4242  # an advisory lock the test holds: every CREATE TABLE of migrator_history waits for it first


def repo(project: Path, name: str) -> str:
    (project / name / "versions").mkdir(parents=True)
    shutil.copy(ROOT / "migrations" / "env.py", project / name / "env.py")
    return f'[[repos]]\nname = "{name}"\nscript_location = "{name}"\nversion_table = "{name}_version"\n'


def test_two_repos_create_the_history_table_at_once(tmp_path: Path, url: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "migrator.toml").write_text(repo(project, "alpha") + "\n" + repo(project, "beta"))
    for name, revision in (("alpha", "20240101000001"), ("beta", "20240101000002")):
        (project / "migrations" / "versions").mkdir(parents=True, exist_ok=True)
        path = add_revision(project, revision, None, f'op.create_table("{name}_things")', name=name)
        path.rename(project / name / "versions" / path.name)
    # A barrier at the start of every CREATE TABLE of migrator_history (an event trigger fires before the
    # command checks IF NOT EXISTS), so that both migrators reach it at once.
    query(url, f"""
        CREATE FUNCTION barrier() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF current_query() LIKE '%migrator_history%' THEN
                PERFORM pg_advisory_lock_shared({BARRIER});
                PERFORM pg_advisory_unlock_shared({BARRIER});
            END IF;
        END $$""")
    query(url, "CREATE EVENT TRIGGER barrier ON ddl_command_start WHEN TAG IN ('CREATE TABLE') "
               "EXECUTE FUNCTION barrier()")
    # And a pause once the table is made, before the creation commits: a creator that checked IF NOT EXISTS at
    # the same moment is then sure to find the table neither there nor committed.
    query(url, """
        CREATE FUNCTION pause() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF current_query() LIKE '%migrator_history%' THEN
                PERFORM pg_sleep(0.5);
            END IF;
        END $$""")
    query(url, "CREATE EVENT TRIGGER pause ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION pause()")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BARRIER,))
        runs = [Migrator(["migrate", "--repo", name], cwd=project, url=url) for name in ("alpha", "beta")]
        wait_until(lambda: query(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                      "'migrator@%%' AND wait_event_type = 'Lock'") == [(2,)],
                   60, "both migrators to wait at the creation of migrator_history")
        holder.execute("SELECT pg_advisory_unlock(%s)", (BARRIER,))
    results = [run.finish(60) for run in runs]
    assert [r.code for r in results] == [0, 0], "\n---\n".join(r.err for r in results)
    assert sorted(query(url, "SELECT version_table, outcome FROM migrator_history")) == [
        ("alpha_version", "applied"), ("beta_version", "applied")]
