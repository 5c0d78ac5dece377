"""The cheap answer to "is anything pending?", without importing Alembic or SQLAlchemy.

In init-container mode the migrator starts with every pod, and almost always there is nothing to do. This
module reads each revision file's `revision`, `down_revision`, `branch_labels` and `depends_on` as text (no
import, no execution); the version table is read with psycopg alone (migrator.tables). It may defer to Alembic
but must never disagree with it: whenever the text cannot be certain it raises Uncertain(reason) and the caller takes
Alembic's full path. Certain means:

- the files are the ones Alembic's ScriptDirectory loads (same selection, same de-duplication): script_files();
- each file compiles: a fresh byte-compiled file proves it, else compile() (migrator.revision_file);
- each of the four names is bound at module level only by one assignment of a literal, and nothing in the file
  can rebind names behind the text's back (migrator.revision_text; the files whose text alone cannot clear
  them, by Python's own parser: migrator.revision_ast);
- the graph is one Alembic accepts: unique ids, known parents, no cycle, no clashing branch label.

What the text cannot see is code elsewhere (an imported module that rewrites this module's globals through
frames) or a failure at import time (an ImportError): only executing the files can tell those.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import Uncertain
from migrator.revision_file import read_script
from migrator.revision_text import RevisionFile

# Alembic's file selection without `sourceless` (script/base.py `_only_source_rev_file`, used with .match).
_SCRIPT_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")


@dataclass(frozen=True)
class ScriptGraph:
    """Every revision with its parents, read from the files' text."""

    parents: dict[str, tuple[str, ...]]

    @property
    def heads(self) -> frozenset[str]:
        children = {parent for parents in self.parents.values() for parent in parents}
        return frozenset(self.parents) - children


# --- the graph ----------------------------------------------------------------------------------------

def scan(versions_dirs: Sequence[Path], *, recursive: bool = False,
         hashes: dict[str, tuple[str, str]] | None = None) -> ScriptGraph:
    """The revision graph of these version locations, as Alembic builds it; raises Uncertain when unsure.

    The directories are Alembic's version locations in order (script_location/versions by default);
    `recursive` is recursive_version_locations. `sourceless` configurations are the caller's to refuse.
    `hashes`, when given, receives each revision's file and the sha256 of its bytes (migrator.validation).
    """
    files = [(shown, read_script(path, shown, hashes))
             for path, shown in script_files(versions_dirs, recursive=recursive)]
    return _graph(files)


def graph(files: list[tuple[str, RevisionFile]]) -> ScriptGraph:
    """The graph of these (name shown, revision file) pairs, checked as scan() checks it."""
    return _graph(files)


def _graph(files: list[tuple[str, RevisionFile]]) -> ScriptGraph:
    parents: dict[str, tuple[str, ...]] = {}
    where: dict[str, str] = {}
    for shown, script in files:
        if script.revision in parents:
            raise Uncertain(f"revision {script.revision} is defined twice, in {where[script.revision]} and {shown}")
        parents[script.revision] = script.parents
        where[script.revision] = shown
    for rev, ups in parents.items():
        for parent in ups:
            if parent not in parents:
                raise Uncertain(f"{where[rev]}: down_revision {parent} is not a revision in these files")
    labels: dict[str, str] = {}
    for _, script in files:
        for label in script.branch_labels:
            if label in parents or label in labels:
                owner = label if label in parents else labels[label]
                raise Uncertain(f"{where[script.revision]}: branch label {label!r} is already used by revision "
                                f"{owner} (Alembic refuses it)")
            labels[label] = script.revision
    _refuse_cycles(parents, where)
    return ScriptGraph(parents=parents)


def _refuse_cycles(parents: dict[str, tuple[str, ...]], where: dict[str, str]) -> None:
    """Alembic refuses most cycles and loops forever on none; the fast path defers on every one."""
    waiting = {rev: len(ups) for rev, ups in parents.items()}
    children: dict[str, list[str]] = {}
    for rev, ups in parents.items():
        for parent in ups:
            children.setdefault(parent, []).append(rev)
    ready = [rev for rev, count in waiting.items() if not count]
    for rev in ready:  # grows while it is walked
        for child in children.get(rev, ()):
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    if len(ready) != len(parents):
        stuck = sorted(rev for rev, count in waiting.items() if count)
        raise Uncertain(f"{where[stuck[0]]}: revision {stuck[0]} is part of a cycle of down_revisions")


# --- which files: Alembic's ScriptDirectory._load_revisions / Script._list_py_dir / Script._from_path ----

def script_files(versions_dirs: Sequence[Path], *, recursive: bool = False) -> list[tuple[str, str]]:
    """(real path, name to show) of each file Alembic loads, in no particular order."""
    if isinstance(versions_dirs, str | os.PathLike):
        raise TypeError("scan() takes a sequence of version locations")
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for top in versions_dirs:
        location = os.path.abspath(top)
        if not os.path.exists(location):
            continue  # Alembic skips a version location that does not exist
        if os.path.basename(location).endswith("__pycache__"):
            raise Uncertain(f"{location}: a version location named __pycache__ is walked oddly by Alembic")
        for real_dir, prefix, entries in _walk(location, recursive):
            for entry in entries:
                real = os.path.realpath(entry.path) if entry.is_symlink() else f"{real_dir}/{entry.name}"
                if real in seen:
                    continue  # Alembic loads a file once, by its real path, however many ways lead to it
                seen.add(real)
                name = os.path.basename(real)
                if _SCRIPT_FILE.match(name):
                    if "\n" in name:
                        raise Uncertain(f"{prefix}{entry.name!r}: a file name with a newline")
                    found.append((real, prefix + entry.name))
    return found


def _walk(top: str, recursive: bool) -> Iterator[tuple[str, str, list[os.DirEntry[str]]]]:
    """(real directory, shown prefix, its non-directory entries): os.walk's and Path.walk's shared answer."""
    pending = [(top, os.path.realpath(top), "")]
    while pending:
        path, real, prefix = pending.pop()
        try:
            with os.scandir(path) as listing:
                entries = list(listing)
        except OSError as exc:
            raise Uncertain(f"{path}: cannot be listed ({exc.strerror})") from None
        files: list[os.DirEntry[str]] = []
        for entry in entries:
            if not _is_dir(entry):
                files.append(entry)
            elif not entry.is_symlink():
                if recursive:
                    pending.append((entry.path, f"{real}/{entry.name}", f"{prefix}{entry.name}/"))
            elif _SCRIPT_FILE.match(os.path.basename(os.path.realpath(entry.path))):
                # os.walk (3.11) lists a linked directory as a directory; Path.walk (3.12) as a file, which
                # Alembic then selects by its real name and fails to load
                raise Uncertain(f"{prefix}{entry.name}: a symbolic link to a directory named like a script")
        if not os.path.basename(path).endswith("__pycache__"):  # Alembic skips these files, not their subdirs
            yield real, prefix, files


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False

# --- the verdict ----------------------------------------------------------------------------------------

def at_head(graph: ScriptGraph, versions: tuple[str, ...] | None) -> bool:
    """True when the database holds exactly the scripts' heads."""
    return versions is not None and set(versions) == graph.heads and bool(graph.heads)
