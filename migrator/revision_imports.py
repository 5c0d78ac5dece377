"""What an adopted project's revision files import that the migration image does not hold.

The migration image is the migrator image (Python's standard library, migrator and the packages of
image/migrator/requirements.txt) plus the project's script directory; a revision file that imports anything else
(the app's own code, a package of the app's environment such as sqlmodel or sqlalchemy_utils) stops the run there
(exit 2). `init --adopt` says so, per module, with the files that import it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# The import names of image/migrator/requirements.txt's packages (a unit test keeps the two in step).
IMAGE_PACKAGES = frozenset({"alembic", "mako", "markupsafe", "psycopg", "psycopg_binary", "sqlalchemy", "structlog",
                            "typing_extensions", "migrator"})
SHOWN = 3  # files named per module; the others are counted


def missing_in_image(script_dir: Path, project_dir: Path, sys_path: list[str]) -> list[str]:
    """A note per module the revision files import that the migration image does not hold."""
    location = script_dir.relative_to(project_dir)  # adopt refuses a script directory outside the project
    copied = ".".join(location.parts)  # the image holds the script directory, not the package around it
    found: dict[str, list[str]] = {}
    for path in sorted((script_dir / "versions").glob("*.py")):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # migrator reports a broken revision file itself, when it loads the scripts
        for module, line in _imports(tree):
            root = module.split(".")[0]
            held = root in sys.stdlib_module_names or root in IMAGE_PACKAGES or (
                bool(copied) and (module == copied or module.startswith(copied + ".")))
            where = found.setdefault(root, [])
            if not held and not any(w.startswith(f"{path.name} ") for w in where):
                where.append(f"{path.name} line {line}")
    return [_note(root, where, _own(root, [project_dir, *map(Path, sys_path)]), location.as_posix())
            for root, where in sorted(found.items()) if where]


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    """The module of each absolute import (in a function too: it runs when the migration does)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.module, node.lineno))
    return found


def _own(root: str, places: list[Path]) -> bool:
    """Whether `root` is the app's own code (a package or module in the project, or the package the project
    directory is in: fractal-server's alembic.ini is in fractal_server/), not an installed package."""
    return any((place / root).is_dir() or (place / f"{root}.py").is_file() or root in place.parts
               for place in places)


def _note(root: str, where: list[str], own: bool, location: str) -> str:
    files = ", ".join(f"{location}/versions/{w}" for w in where[:SHOWN])
    more = f" and {len(where) - SHOWN} more" if len(where) > SHOWN else ""
    what = "the app's own code" if own else "a package of the app's environment"
    fix = "write what they use into the revisions (e.g. a column type's implementation)" if own else \
        f"write what they use into the revisions, or install {root} into the migration image (migrator.Dockerfile)"
    return (f"{len(where)} revision file(s) import {root}, {what}, which the migration image does not hold "
            f"({files}{more}): migrating with the image alone fails at the first of them; {fix}")
