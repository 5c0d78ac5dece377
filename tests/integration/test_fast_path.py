"""The no-op fast path against Alembic's full path: the same answer, or a fallback, in every shape of history.

Not timing tests: they check that reading the files' text and the version table with psycopg alone never
says "at head" when Alembic would not (and says it whenever it can).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import psycopg
import pytest

from migrator import revision_scan as heads
from migrator.alembic_internals import alembic_config, load_script
from migrator.errors import Uncertain
from migrator.lock import lock_key
from migrator.repos import load_repos
from tests.conftest import FIRST, HEAD, add_revision, dbname, migrator_env, query, run_migrator

# Runs what `python -m migrator ARGS` runs (cli.main; entrypoint only adds the exit), then prints the exit code
# and which SQLAlchemy and Alembic modules got loaded.
PROBE = ("import sys\nfrom migrator.cli import main\ncode = main(sys.argv[1:])\n"
         "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy')))\n")
A, B, C, M = "20220101000000", "20220101000001", "20220101000002", "20220101000003"


def fast(project: Path, current: tuple[str, ...] | None) -> bool | None:
    """The fast path's verdict: True/False, or None when it steps aside."""
    try:
        graph = heads.scan([project / "migrations" / "versions"])
    except Uncertain:
        return None
    return heads.at_head(graph, current)


def full(project: Path, current: tuple[str, ...] | None) -> bool:
    """Alembic's verdict: the current revisions are exactly the scripts' heads."""
    [repo] = load_repos(project)
    script = load_script(alembic_config(repo))
    return bool(current) and set(current or ()) == set(script.get_heads())


def agree(project: Path, current: tuple[str, ...] | None) -> bool | None:
    verdict = fast(project, current)
    assert verdict is None or verdict == full(project, current)
    return verdict


def test_linear_at_head_and_pending(project: Path) -> None:
    assert agree(project, (HEAD,)) is True
    assert agree(project, ("20211103022310",)) is False
    assert agree(project, None) is False  # no version table yet
    assert agree(project, ()) is False


def test_several_heads(project: Path) -> None:
    add_revision(project, A, HEAD, "pass", name="a")
    add_revision(project, B, HEAD, "pass", name="b")
    assert agree(project, (A, B)) is True
    assert agree(project, (A,)) is False
    assert agree(project, (HEAD,)) is False


def test_merge_revision(project: Path) -> None:
    add_revision(project, A, HEAD, "pass", name="a")
    add_revision(project, B, HEAD, "pass", name="b")
    path = add_revision(project, M, None, "pass", name="merge")
    path.write_text(path.read_text().replace("down_revision = None", f"down_revision = ({A!r}, {B!r})"))
    assert agree(project, (M,)) is True
    assert agree(project, (A, B)) is False


def test_black_and_annotated_merge_is_read_not_deferred(project: Path) -> None:
    """Real histories: one black-formatted merge file must not send the whole history to Alembic."""
    add_revision(project, A, HEAD, "pass", name="a")
    add_revision(project, B, HEAD, "pass", name="b")
    path = add_revision(project, M, None, "pass", name="merge")
    path.write_text(path.read_text().replace(
        "down_revision = None",
        f"down_revision: str | tuple[str, ...] | None = (\n    {A!r},  # the a branch\n    {B!r},\n)"))
    assert agree(project, (M,)) is True
    assert agree(project, (A, B)) is False


def test_branch_label(project: Path) -> None:
    path = add_revision(project, A, HEAD, "pass", name="labelled")
    path.write_text(path.read_text().replace("branch_labels = None", "branch_labels = ('reporting',)"))
    assert agree(project, (A,)) is True
    assert agree(project, (HEAD,)) is False


def test_non_literal_down_revision_falls_back(project: Path) -> None:
    path = add_revision(project, A, HEAD, "pass", name="computed")
    path.write_text(path.read_text().replace(f"down_revision = {HEAD!r}", f"down_revision = str({int(HEAD)})"))
    assert agree(project, (A,)) is None
    assert full(project, (A,)) is True


@pytest.mark.parametrize("change", [
    "depends_on = None\ndepends_on = 'x'",         # assigned twice
    "depends_on = ('20211103022310',)",            # needs Alembic's dependency resolution
    "depends_on = None\ndown_revision += ''",      # changed by another statement
])
def test_other_uncertain_shapes_fall_back(project: Path, change: str) -> None:
    path = add_revision(project, A, HEAD, "pass", name="odd")
    path.write_text(path.read_text().replace("depends_on = None", change))
    assert agree(project, (A,)) is None


def test_unknown_parent_and_duplicate_ids_fall_back(project: Path) -> None:
    add_revision(project, A, "19990101000000", "pass", name="orphan")
    assert fast(project, (A,)) is None
    (project / "migrations" / "versions" / f"{A}_orphan.py").unlink()
    add_revision(project, A, HEAD, "pass", name="one")
    add_revision(project, A, HEAD, "pass", name="two")
    assert fast(project, (A,)) is None


@pytest.mark.parametrize("hostile", [
    f"if True:\n    down_revision = {FIRST!r}",           # Alembic sees two heads, the first line one
    f"try:\n    pass\nfinally:\n    revision = {B!r}",  # Alembic sees B, not A
    f"globals()['down_revision'] = {FIRST!r}",
])
def test_rebinding_shapes_defer(project: Path, hostile: str) -> None:
    path = add_revision(project, A, HEAD, "pass", name="hostile")
    path.write_text(path.read_text().replace("depends_on = None", f"depends_on = None\n{hostile}"))
    assert fast(project, (A,)) is None
    assert full(project, (A,)) is False  # what the text alone would have got wrong


def test_a_file_that_does_not_compile_fails_as_alembic_would(project: Path, database_url: str) -> None:
    """At head, a revision file with a syntax error: exit 2 on every path, never exit 0 from the fast one."""
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    path = project / "migrations" / "versions" / f"{HEAD}_add_users_email_index.py"
    path.write_text(path.read_text() + "\n\ndef broken(:\n    pass\n")
    for args in (["migrate"], ["status", "--check"]):
        result = run_migrator(args, cwd=project, database_url=database_url)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "SyntaxError" in result.stderr + result.stdout


def test_database_ahead_of_the_scripts(project: Path) -> None:
    assert agree(project, ("20990101000000",)) is False


def test_fast_path_does_not_import_alembic_or_sqlalchemy(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    for args in (["migrate"], ["status", "--check"], ["wait", "--timeout", "5"]):
        result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=project, capture_output=True, text=True,
                                env=migrator_env(database_url), check=False)
        assert result.stdout.splitlines()[-1] == "0 []", (args, result.stdout, result.stderr)
    # ... and takes the full path when something is pending.
    add_revision(project, A, HEAD, "pass", name="pending")
    result = subprocess.run([sys.executable, "-c", PROBE, "status", "--check"], cwd=project, capture_output=True,
                            text=True, env=migrator_env(database_url), check=False)
    assert result.stdout.splitlines()[-1].startswith("5 [") and "'alembic'" in result.stdout


def test_fast_and_full_status_agree_end_to_end(project: Path, database_url: str) -> None:
    """A non-literal file forces the full path; its verdicts match the fast path's on the same database."""
    add_revision(project, A, HEAD, "op.create_table('a', sa.Column('id', sa.Integer))", name="a")
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    # The edit changes an applied file, which validation reports (tests/checksums): off here, where only the
    # two paths' verdicts are compared.
    fast_status = run_migrator(["status", "--json"], cwd=project, database_url=database_url, MIGRATOR_VALIDATE="off")
    path = project / "migrations" / "versions" / f"{A}_a.py"
    path.write_text(path.read_text().replace(f"down_revision = {HEAD!r}", f"down_revision = str({int(HEAD)})"))
    full_status = run_migrator(["status", "--json"], cwd=project, database_url=database_url, MIGRATOR_VALIDATE="off")
    assert fast_status.stdout == full_status.stdout
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(A,)]


def test_a_replica_waiting_for_the_lock_loads_neither_alembic_nor_sqlalchemy(project: Path, database_url: str
                                                                             ) -> None:
    """Replicas that start together wait for the one that migrates; those that then find the work done never
    load SQLAlchemy and Alembic (about a second of CPU each, paid at once by every pod on a node)."""
    assert run_migrator(["migrate", "--to", FIRST], cwd=project, database_url=database_url).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as holder, \
            tempfile.TemporaryFile("w+") as stderr:
        key = lock_key(dbname(database_url), "public", "alembic_version")
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        waiter = subprocess.Popen([sys.executable, "-c", PROBE, "migrate"], cwd=project, text=True,
                                  stdout=subprocess.PIPE, stderr=stderr, env=migrator_env(database_url))
        try:
            # Its first failed try logs who holds the lock: from then on it is a waiting replica.
            deadline = time.monotonic() + 30
            while "waiting for the migration lock" not in _read(stderr):
                assert time.monotonic() < deadline and waiter.poll() is None, _read(stderr)
                time.sleep(0.05)
            holder.execute("UPDATE alembic_version SET version_num = %s", (HEAD,))  # the holder "migrated"
            out, _ = waiter.communicate(timeout=60)
        finally:
            waiter.kill()  # a no-op once it exited; never left waiting behind a failed assertion
            waiter.wait()
        err = _read(stderr)
    assert out.splitlines()[-1] == "0 []", (out, err)
    assert "Migrations already up" in err


def _read(file: IO[str]) -> str:
    file.seek(0)
    return file.read()
