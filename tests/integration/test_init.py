"""`migrator init` and `init --adopt` end to end: scaffold or adopt, add a migration with `new`, migrate a real
PostgreSQL, and the refusals (nothing is ever overwritten, and a refused or failed init writes nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alembic_projects import ITEMS_REVISION, STOCK_ENV, new_revision, write_stock_project
from tests.conftest import ROOT, migrator_env, query, run_migrator

INIT_FILES = ["deploy/migrator-values.yaml", "migrations/env.py", "migrations/script.py.mako",
              "migrations/versions/.gitkeep", "migrator.Dockerfile", "migrator.Dockerfile.dockerignore",
              "migrator.toml", "seeds/README.md"]


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def lint(project: Path, *paths: str) -> str:
    """ruff and mypy, with this repository's settings, on PATHS of PROJECT; what they report, or ''."""
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    bin_dir = Path(sys.executable).parent
    found = []
    for argv in ([str(bin_dir / "ruff"), "check", "--no-cache", *paths],
                 [str(bin_dir / "mypy"), "--config-file", "pyproject.toml", "--no-incremental", *paths]):
        proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            found.append(proc.stdout + proc.stderr)
    (project / "pyproject.toml").unlink()
    return "\n".join(found)


# --- init -----------------------------------------------------------------------------------------------

def test_init_scaffolds_a_project_that_migrates(tmp_path: Path, database_url: str) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "app.py").write_text("print('the app')\n")
    result = run_migrator(["init"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    assert files(project) == sorted([*INIT_FILES, "app.py"])
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [f"created {f}" for f in [
        "migrations/env.py", "migrations/script.py.mako", "migrations/versions/.gitkeep", "seeds/README.md",
        "migrator.toml", "migrator.Dockerfile", "migrator.Dockerfile.dockerignore", "deploy/migrator-values.yaml"]]
    template = (project / "migrations" / "script.py.mako").read_bytes()
    assert template == (ROOT / "migrations" / "script.py.mako").read_bytes()
    assert 'script_location = "migrations"' in (project / "migrator.toml").read_text()
    assert lint(project, "migrations/env.py") == ""

    revision = new_revision(project, "create items",
                                "op.create_table('items', sa.Column('id', sa.BigInteger, primary_key=True))")
    assert lint(project, "migrations/env.py", *(f"migrations/versions/{p.name}" for p in
                                                (project / "migrations" / "versions").glob("*.py"))) == ""
    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"== Running {revision} create_items.upgrade forward" in migrated.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(revision,)]
    assert run_migrator(["seed"], cwd=project, database_url=database_url).returncode == 0  # the README is no seed
    assert run_migrator(["status", "--check"], cwd=project, database_url=database_url).returncode == 0


@pytest.mark.parametrize("existing", ["migrations", "seeds", "migrator.toml", "migrator.Dockerfile",
                                      "migrator.Dockerfile.dockerignore", "deploy/migrator-values.yaml", "deploy"])
def test_init_never_overwrites_and_writes_nothing_when_refused(tmp_path: Path, existing: str) -> None:
    path = tmp_path / existing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mine\n")
    before = files(tmp_path)
    result = run_migrator(["init"], cwd=tmp_path, database_url=None)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"init: {path} exists" in line and "nothing was written" in line
    assert files(tmp_path) == before
    assert path.read_text() == "mine\n"


def test_init_points_an_alembic_project_to_adopt(tmp_path: Path) -> None:
    write_stock_project(tmp_path)
    before = files(tmp_path)
    result = run_migrator(["-C", str(tmp_path), "init"], cwd=ROOT, database_url=None)
    assert result.returncode == 2
    assert "alembic.ini exists: an Alembic project? `migrator init --adopt` takes it over" in result.stderr
    assert files(tmp_path) == before


def test_init_that_cannot_write_leaves_nothing(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "deploy").mkdir()  # init writes into it last, after everything else
    (project / "deploy").chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is missing: as root, nothing else makes a directory read-only to us")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "migrator", "init"], cwd=project, capture_output=True,
                              text=True, timeout=120, check=False, env=migrator_env(None))
    finally:
        (project / "deploy").chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.endswith(f"init: cannot write {project}/deploy/migrator-values.yaml: Permission denied; "
                         "nothing was written")
    assert files(project) == []
    assert sorted(p.name for p in project.iterdir()) == ["deploy"]


def test_init_needs_an_existing_directory(tmp_path: Path) -> None:
    result = run_migrator(["-C", str(tmp_path / "nowhere"), "init"], cwd=tmp_path, database_url=None)
    assert result.returncode == 2 and f"project directory {tmp_path / 'nowhere'} not found" in result.stderr


# --- init --adopt ---------------------------------------------------------------------------------------

def test_adopt_keeps_the_project_and_its_metadata(tmp_path: Path, database_url: str) -> None:
    project = write_stock_project(tmp_path / "shop")
    result = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "created alembic/env.py.orig" in out
    assert "rewrote alembic/env.py: it delegates to migrator, with target_metadata = Base.metadata with its naming " \
           "convention and the options compare_type, version_table" in out
    assert "kept alembic/versions/ (1 revision file(s)) and its script.py.mako" in out
    assert "note: context.configure(include_object=lambda *args: True) is not carried over" in out
    assert "sqlalchemy.url is no longer read" in out
    assert (project / "alembic" / "env.py.orig").read_text() == STOCK_ENV
    toml = (project / "migrator.toml").read_text()
    assert 'script_location = "alembic"' in toml and 'version_table = "shop_version"' in toml
    assert "COPY alembic/ /app/alembic/" in (project / "migrator.Dockerfile").read_text()
    assert lint(project, "alembic/env.py") == ""

    revision = new_revision(project, "add items price", "op.add_column('items', sa.Column('price', sa.Integer))")
    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert [line.split("[info] ")[1] for line in migrated.stderr.splitlines() if "== Running" in line] == [
        f"== Running {ITEMS_REVISION} create_items.upgrade forward",
        f"== Running {revision} add_items_price.upgrade forward"]
    assert query(database_url, "SELECT version_num FROM shop_version") == [(revision,)]
    assert query(database_url, "SELECT to_regclass('alembic_version')") == [(None,)]

    # The plain alembic command still works on the adopted project, with the models' metadata carried over:
    # autogenerate compares them with the database (it refuses to without target_metadata).
    check = subprocess.run([str(Path(sys.executable).parent / "alembic"), "check"], cwd=project, capture_output=True,
                           text=True, timeout=120, check=False, env=migrator_env(database_url))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_adopt_carries_a_version_table_schema_read_from_the_environment(tmp_path: Path, database_url: str) -> None:
    project = write_stock_project(tmp_path / "shop")
    env_py = project / "alembic" / "env.py"
    env_py.write_text("import os\n" + STOCK_ENV.replace(
        'version_table="shop_version",', 'version_table_schema=os.environ.get("SHOP_SCHEMA", "public"),'))
    result = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    toml = (project / "migrator.toml").read_text()
    assert 'version_table_schema_env = "SHOP_SCHEMA"\nversion_table_schema = "public"\n' in toml
    query(database_url, "CREATE SCHEMA tenant1")
    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url, SHOP_SCHEMA="tenant1")
    assert migrated.returncode == 0, migrated.stderr
    assert query(database_url, "SELECT version_num FROM tenant1.alembic_version") == [(ITEMS_REVISION,)]


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: (p / "alembic" / "env.py.orig").write_text("old\n"), "alembic/env.py.orig exists"),
    (lambda p: (p / "seeds").mkdir(), "seeds exists"),
    (lambda p: (p / "alembic" / "env.py").write_text(
        "from migrator.alembic_env import run_migrations\nrun_migrations()\n"), "already delegates to migrator"),
    (lambda p: (p / "alembic.ini").unlink(), "no alembic.ini (nor [tool.alembic] in pyproject.toml"),
    (lambda p: (p / "alembic.ini").write_text("[alembic]\nscript_location = elsewhere\n"), "which has no env.py"),
    (lambda p: (p / "alembic.ini").write_text("[alembic]\nscript_location = shop:migrations\n"),
     "names a package resource"),
    (lambda p: (p / "alembic" / "env.py").write_text(STOCK_ENV.replace('"shop_version"', "TABLE", 1)),
     "sets version_table to 'shop_version' or TABLE: migrator must read the same table"),
    (lambda p: (p / "alembic" / "env.py").write_text("def broken(:\n"), "is not valid Python (line 1)"),
    # indico's shape: its own CLI sets script_location in code
    (lambda p: (p / "alembic.ini").write_text("[alembic]\nfile_template = %%(rev)s_%%(slug)s\n"),
     "alembic.ini sets no script_location (its tool may set it in code): add `script_location = %(here)s/alembic` "
     "to its [alembic] section, then run init --adopt again (nothing was written)"),
    (lambda p: (p / "alembic" / "env.py").write_text(STOCK_ENV.replace(
        "target_metadata = Base.metadata", "target_metadata = config.attributes['metadata']")),
     "env.py line 16: `target_metadata = config.attributes['metadata']` prepares target_metadata with Alembic's "
     "context"),
    (lambda p: shutil.rmtree(p / "shop"), "init --adopt: cannot import env.py.orig's target_metadata = "
     "Base.metadata to capture the naming convention its migrations are written with: env.py line 9: "
     "ModuleNotFoundError: No module named 'shop'"),
])
def test_adopt_refusals_write_nothing(tmp_path: Path, change, message: str) -> None:
    project = write_stock_project(tmp_path / "shop")
    change(project)
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    result = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert message in line
    assert {path: path.read_bytes() for path in project.rglob("*") if path.is_file()} == before


def test_adopt_takes_the_alembic_ini_alembic_is_run_with(tmp_path: Path, database_url: str) -> None:
    """hypothesis/lms's and h's layout: conf/alembic.ini, run as `alembic -c conf/alembic.ini` from the project."""
    project = write_stock_project(tmp_path / "shop")
    (project / "conf").mkdir()
    (project / "alembic.ini").rename(project / "conf" / "alembic.ini")
    ini = (project / "conf" / "alembic.ini").read_text().replace(
        "script_location = %(here)s/alembic", "script_location = alembic\nfile_template = %%(rev)s_conf_%%(slug)s")
    (project / "conf" / "alembic.ini").write_text(ini)
    refused = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.endswith("; conf/alembic.ini exists: pass it as `init --adopt --config conf/alembic.ini` (as "
                         "`alembic -c`)")

    adopted = run_migrator(["init", "--adopt", "--config", "conf/alembic.ini"], cwd=project, database_url=None)
    assert adopted.returncode == 0, adopted.stderr
    toml = (project / "migrator.toml").read_text()
    assert 'script_location = "alembic"' in toml and 'alembic_ini = "conf/alembic.ini"' in toml
    revision = new_revision(project, "add items price", "op.add_column('items', sa.Column('price', sa.Integer))")
    assert (project / "alembic" / "versions" / f"{revision}_conf_add_items_price.py").is_file()  # its file_template
    migrated = run_migrator(["migrate"], cwd=project, database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr
    current = subprocess.run([str(Path(sys.executable).parent / "alembic"), "-c", "conf/alembic.ini", "current"],
                             cwd=project, capture_output=True, text=True, timeout=120, check=False,
                             env=migrator_env(database_url))
    assert current.returncode == 0, current.stderr
    assert current.stdout.split() == [revision, "(head)"]


def test_adopt_reads_pyproject(tmp_path: Path) -> None:
    project = write_stock_project(tmp_path / "shop")
    (project / "alembic.ini").unlink()
    (project / "pyproject.toml").write_text('[tool.alembic]\nscript_location = "%(here)s/alembic"\n')
    assert run_migrator(["init", "--adopt"], cwd=project, database_url=None).returncode == 0
    assert 'script_location = "alembic"' in (project / "migrator.toml").read_text()


def test_adopt_reads_the_project_alembics_pyproject_template_writes(tmp_path: Path) -> None:
    """`alembic init -t pyproject` (Alembic 1.16+) writes both files: script_location in pyproject's [tool.alembic],
    and an alembic.ini with only sqlalchemy.url and logging. Alembic reads the ini first, then the toml."""
    project = tmp_path / "shop"
    project.mkdir()
    made = subprocess.run([str(Path(sys.executable).parent / "alembic"), "init", "-t", "pyproject", "alembic"],
                          cwd=project, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    assert (project / "alembic.ini").is_file() and (project / "pyproject.toml").is_file()
    adopted = run_migrator(["init", "--adopt"], cwd=project, database_url=None)
    assert adopted.returncode == 0, adopted.stderr
    assert 'script_location = "alembic"' in (project / "migrator.toml").read_text()
