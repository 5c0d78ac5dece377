"""Build the sdist and the wheel, check what they carry, and prove the wheel works on its own.

    python3 .ci/check_dist.py            (from .ci/run; exits non-zero on any failure)

In throwaway virtualenvs, never the development one (whose pins, e.g. packaging<24 for checkov, `build` does
not accept): `python -m build` makes the sdist and then the wheel from the sdist, so the wheel's existence
proves the sdist holds what a build needs. Every file of the package must be in both (the templates `migrator
init` writes too), and the wheel, installed alone into a clean virtualenv, must run `migrator --version`,
`--help`, `init` and `new` without the development tools and without this checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
                                 ".mypy_cache", ".ruff_cache", ".pytest_cache")


# The caller's environment (proxies, pip's index and certificates), without what would import this checkout or
# the development virtualenv instead of what was installed.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=900,
                          env={**ENV, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if proc.returncode != 0:
        sys.exit(f"check-dist: {' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def virtualenv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin"


def package_files() -> set[str]:
    """The package's files as a wheel names them: every file under migrator/ but caches."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "migrator").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def version() -> str:
    found = re.search(r'^__version__ = "(.+)"$', (ROOT / "migrator" / "__init__.py").read_text(), re.MULTILINE)
    assert found, "migrator/__init__.py has no __version__"
    return found[1]


def check_contents(wheel: Path, sdist: Path) -> None:
    expected = package_files()
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = next(n for n in in_wheel if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode()
    with tarfile.open(sdist) as archive:
        top = f"migrator-{version()}/"
        in_sdist = {name.removeprefix(top) for name in archive.getnames()}
    if missing := sorted(expected - in_wheel):
        sys.exit(f"check-dist: the wheel lacks {', '.join(missing)}")
    if missing := sorted((expected | {"pyproject.toml", "README.md"}) - in_sdist):
        sys.exit(f"check-dist: the sdist lacks {', '.join(missing)}")
    if f"\nVersion: {version()}\n" not in meta:
        sys.exit(f"check-dist: the wheel's metadata does not say Version: {version()}")
    if stray := sorted(n for n in in_wheel if not n.startswith(("migrator/", "migrator-"))):
        sys.exit(f"check-dist: the wheel carries files outside the package: {', '.join(stray)}")


def check_installed(wheel: Path, work: Path) -> None:
    bin_dir = virtualenv(work / "clean")
    run(bin_dir / "pip", "install", "--quiet", wheel)
    elsewhere = work / "elsewhere"  # not the checkout: the installed package must stand alone
    elsewhere.mkdir()
    said = run(bin_dir / "migrator", "--version", cwd=elsewhere).strip()
    if said != f"migrator {version()}":
        sys.exit(f"check-dist: migrator --version said {said!r}, not 'migrator {version()}'")
    if "exit codes:" not in run(bin_dir / "migrator", "--help", cwd=elsewhere):
        sys.exit("check-dist: migrator --help printed no exit codes")
    project = elsewhere / "app"
    project.mkdir()
    run(bin_dir / "migrator", "init", cwd=project)
    created = Path(run(bin_dir / "migrator", "new", "create items", cwd=project).strip())
    if not created.is_file() or created.parent != project / "migrations" / "versions":
        sys.exit(f"check-dist: migrator new wrote {created}, not a file in {project}/migrations/versions")
    if dev := sorted(tool for tool in ("pytest", "ruff", "mypy", "checkov") if (bin_dir / tool).exists()):
        sys.exit(f"check-dist: installing the wheel installed development tools: {', '.join(dev)}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="migrator-dist-") as tmp:
        work = Path(tmp)
        source = Path(shutil.copytree(ROOT, work / "source", ignore=IGNORED))  # builds leave build/ and egg-info
        build_bin = virtualenv(work / "build")
        run(build_bin / "pip", "install", "--quiet", "build")
        run(build_bin / "python", "-m", "build", "--outdir", work / "dist", source)
        [wheel] = (work / "dist").glob("*.whl")
        [sdist] = (work / "dist").glob("*.tar.gz")
        check_contents(wheel, sdist)
        check_installed(wheel, work)
        print(f"check-dist: {sdist.name} and {wheel.name} built; the wheel holds the {len(package_files())} files "
              f"of the package and runs alone in a clean virtualenv (--version, --help, init, new)")


if __name__ == "__main__":
    main()
