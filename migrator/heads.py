"""The cheap answer to "is anything pending?", without importing Alembic or SQLAlchemy.

In init-container mode the migrator starts with every pod, and almost always there is nothing to do. This
module reads each revision file's literal `revision` / `down_revision` assignments as text (no import, no
execution) and the version table with psycopg alone. It answers only when it is certain: any file it cannot
read literally (a computed `down_revision`, `depends_on`, a duplicate id, an unknown parent) makes it
return None, and the caller takes Alembic's full path. Correctness first, speed second.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# The same file selection as Alembic's ScriptDirectory (non-recursive, sourceful): any *.py but __init__.
_SCRIPT_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
# Module-level (unindented) assignments of the three names Alembic reads, with or without annotations.
_ASSIGNMENT = re.compile(r"^(?P<name>revision|down_revision|depends_on)[ \t]*(?::[^=\n]*)?=[ \t]*"
                         r"(?P<value>[^\n#]*?)[ \t]*(?:#[^\n]*)?$", re.MULTILINE)
# Any other statement that starts with one of them (`down_revision += ...`) makes the text unreliable.
_MENTION = re.compile(r"^(?:revision|down_revision|depends_on)\b", re.MULTILINE)
_PLAIN_STRING = re.compile(r"""^(['"])([^'"\\]*)\1$""")


@dataclass(frozen=True)
class ScriptGraph:
    """Every revision with its parents, read from the files' text."""

    parents: dict[str, tuple[str, ...]]

    @property
    def heads(self) -> frozenset[str]:
        children = {parent for parents in self.parents.values() for parent in parents}
        return frozenset(self.parents) - children


class Uncertain(Exception):
    """The text alone cannot answer; Alembic's full path must."""


def _literal(values: dict[str, list[str]], path: Path, name: str, required: bool = True) -> Any:
    found = values.get(name, [])
    if len(found) > 1:
        raise Uncertain(f"{path.name}: {name} is assigned more than once")
    if not found:
        if required:
            raise Uncertain(f"{path.name}: no literal {name}")
        return None
    text = found[0]
    plain = _PLAIN_STRING.match(text)  # the common case, without the cost of ast
    if plain:
        return plain[2]
    if text == "None":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise Uncertain(f"{path.name}: {name} is not a literal") from None


def _parents(value: Any, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Uncertain(f"{path.name}: down_revision is neither None, a string nor a list of strings")


def read_script(path: Path) -> tuple[str, tuple[str, ...]]:
    """(revision, parents) of one file, from its literal assignments."""
    text = path.read_text(encoding="utf-8")
    values: dict[str, list[str]] = {}
    for match in _ASSIGNMENT.finditer(text):
        values.setdefault(match["name"], []).append(match["value"])
    if len(_MENTION.findall(text)) != sum(map(len, values.values())):
        raise Uncertain(f"{path.name}: revision variables are changed by other statements")
    revision = _literal(values, path, "revision")
    if not isinstance(revision, str) or not revision:
        raise Uncertain(f"{path.name}: revision is not a non-empty string")
    if _literal(values, path, "depends_on", required=False) is not None:
        raise Uncertain(f"{path.name}: depends_on needs Alembic's dependency resolution")
    return revision, _parents(_literal(values, path, "down_revision"), path)


def scan(versions_dir: Path) -> ScriptGraph:
    """The revision graph of a versions directory; raises Uncertain when the text cannot tell."""
    parents: dict[str, tuple[str, ...]] = {}
    try:
        names = sorted(p.name for p in versions_dir.iterdir() if p.is_file())
    except OSError as exc:
        raise Uncertain(f"{versions_dir}: {exc.strerror}") from None
    for name in names:
        if not _SCRIPT_FILE.match(name):
            continue
        path = versions_dir / name
        revision, down = read_script(path)
        if revision in parents:
            raise Uncertain(f"revision {revision} is defined twice")
        parents[revision] = down
    unknown = {p for down in parents.values() for p in down} - parents.keys()
    if unknown:
        raise Uncertain(f"unknown down_revision {', '.join(sorted(unknown))}")
    return ScriptGraph(parents=parents)


def read_versions(conn: psycopg.Connection[Any], table: str, schema: str | None) -> tuple[str, ...] | None:
    """The revisions in the version table, or None when it does not exist yet. `conn` must be autocommit."""
    name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    try:
        rows = conn.execute(sql.SQL("SELECT version_num FROM {}").format(name)).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None
    return tuple(sorted(row[0] for row in rows))


def at_head(graph: ScriptGraph, versions: tuple[str, ...] | None) -> bool:
    """True when the database holds exactly the scripts' heads."""
    return versions is not None and set(versions) == graph.heads and bool(graph.heads)
