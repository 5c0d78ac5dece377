"""The fast path may defer to Alembic, never disagree with it: generated histories against Alembic's own graph.

Each example writes a history into a temporary directory (linear chains, branches, merges written as black
writes them, annotated assignments, docstrings and strings that mention the names, byte-compiled files, and
reads of the names where they decide nothing (in functions, dict literals, format calls, f-strings, tuples),
names bound in other scopes (a function's, a class body's, a comprehension's), and hostile shapes:
re-assignments in if/try blocks, globals(), duplicates, syntax errors, unknown parents, reads that run before
the assignment, lists changed by code that reads them, a `global` or `:=` or match capture that rebinds a name,
... spread over several version locations and subdirectories) and asserts that `heads.scan` either raises
Uncertain or returns exactly the revisions, parents and heads that Alembic's ScriptDirectory builds from the
same files. Alembic runs second: its imports write .pyc files that must not help the scan.
"""

from __future__ import annotations

import os
import py_compile
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from migrator import revision_scan as heads
from migrator.errors import Uncertain

IDS = ["1a2b3c4d5e6f", "20240101000000", "ae1027a6acf", "3f9e0c1b", "c0ffee", "deadbeef01", "bead5", "00f1"]
# What a file may do to the plain template: shapes the text can read, and shapes it must defer on (at most
# one file a history, so that no other file's deferral hides a wrong answer; a third of the histories have
# none, so that many histories are read and compared).
READABLE = ["plain", "annotated", "black", "list", "noisy_text", "noisy_fstring", "labels", "non_ascii_doc",
            "reads_in_functions", "reads_at_module_level", "local_bindings"]
HOSTILE_SHAPES = [
    "labels_clash", "depends_on", "if_true", "if_false", "if_same", "try_finally", "globals", "fstring_globals",
    "assigned_twice", "syntax_error", "unknown_parent", "computed", "unpacking", "semicolon",
    "keyword_in_brackets", "keyword_only", "backslash_hidden", "backslash_only", "walrus", "for_loop", "delete",
    "missing_down_revision", "illegal_id", "self_parent", "import_star", "non_ascii_name",
    # reads and bindings the parser must judge: a read before the assignment fails the import; a list read by
    # code can be changed; a function, a comprehension or a match can bind the module's name
    "read_before", "fstring_read_before", "called_before", "list_appended", "list_changed_in_function",
    "global_in_function", "walrus_in_comprehension", "match_capture", "except_as", "import_as", "def_named",
]
PYC_MODES = ["none", "none", "timestamp", "unchecked-hash", "checked-hash"]


@dataclass
class Revision:
    rev: str
    parents: list[str]
    shape: str
    other: str  # another id, for the shapes that re-bind a name
    location: int
    subdir: str
    stale: bool  # changed after byte-compiling (a different size, and a later mtime)


@dataclass
class History:
    revisions: list[Revision]
    locations: int
    recursive: bool
    pyc: str
    extras: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        """Nothing here needs Alembic: the scan must answer, not defer."""
        ids = [r.rev for r in self.revisions]
        return (len(set(ids)) == len(ids) and all(r.shape in READABLE for r in self.revisions)
                and (self.recursive or not any(r.subdir for r in self.revisions))
                and not (self.pyc == "unchecked-hash" and any(r.stale for r in self.revisions)))


@st.composite
def histories(draw: st.DrawFn) -> History:
    count = draw(st.integers(1, 6))
    locations = draw(st.integers(1, 3))
    hostile = draw(st.integers(0, count - 1)) if draw(st.integers(0, 2)) else -1  # in two histories of three
    recursive = draw(st.booleans())
    revisions: list[Revision] = []
    for index in range(count):
        earlier = sorted({r.rev for r in revisions})
        rev = draw(st.sampled_from(IDS)) if draw(st.integers(0, 9)) == 0 else f"{IDS[index]}"
        parent_count = draw(st.integers(0, min(2, len(earlier)))) if earlier else 0
        if earlier and parent_count == 0 and draw(st.booleans()):
            parent_count = 1  # mostly chains and merges; sometimes a second root
        parents = draw(st.permutations(earlier))[:parent_count]
        shape = draw(st.sampled_from(HOSTILE_SHAPES if index == hostile else READABLE))
        revisions.append(Revision(
            rev=rev, parents=parents, shape=shape, other=draw(st.sampled_from(earlier or IDS)),
            location=draw(st.integers(0, locations - 1)),
            subdir=draw(st.sampled_from(["", "", "", "sub", "a/b"] if recursive else ["", "", "", "", "", "", "sub"])),
            stale=draw(st.integers(0, 5)) == 0))
    extras = draw(st.lists(st.sampled_from(["__init__.py", ".#lock.py", "notes.txt", "copy_link", "old.py~"]),
                           max_size=3, unique=True))
    return History(revisions, locations, recursive, draw(st.sampled_from(PYC_MODES)), extras)


def down_literal(parents: list[str], style: str) -> str:
    listed = style == "list" or style.startswith("list_")  # the list_ shapes change the list after assigning it
    if not parents:
        return "[]" if style.startswith("list_") else "None"
    if len(parents) == 1 and style != "black" and not listed:
        return repr(parents[0])
    if style == "black":
        return "(\n" + "".join(f"    {p!r},  # from {p}'s branch\n" for p in parents) + ")"
    if listed:
        return "[\n    # \"merge\" parents\n" + "".join(f"    {p!r},\n" for p in parents) + "]"
    return repr(tuple(parents))


def render(r: Revision) -> str:
    """A revision file as `alembic revision` writes it, then changed as the shape says."""
    parents = [*r.parents, "f00dface"] if r.shape == "unknown_parent" else r.parents
    rev = f"{r.rev}-x" if r.shape == "illegal_id" else r.rev
    parents = [*parents, rev] if r.shape == "self_parent" else parents
    annotated = r.shape == "annotated"
    doc = "café" if r.shape == "non_ascii_doc" else "add a table"
    lines = [f'"""{doc}\n\nRevision ID: {rev}\nRevises: {", ".join(parents)}\nthis revision adds\n'
             f'revision = "not-this-one"\n"""\n',
             "from collections.abc import Sequence\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n",
             PRELUDE.get(r.shape, ""), "# revision identifiers, used by Alembic.\n"]
    ann = ": str | Sequence[str] | None" if annotated else ""
    down = down_literal(parents, r.shape)
    if r.shape == "unpacking":
        lines.append(f"revision, down_revision = {rev!r}, {down}\n")
    elif r.shape == "semicolon":
        lines.append(f"revision = {rev!r}; down_revision = {down}\n")
    else:
        if r.shape not in ("keyword_only", "backslash_only"):  # these hide the only `revision = ...`
            lines.append(f"revision{': str' if annotated else ''} = {rev!r}\n")
        if r.shape == "computed":
            lines.append(f"down_revision = str({down})\n" if parents else "down_revision = None or None\n")
        elif r.shape != "missing_down_revision":
            lines.append(f"down_revision{ann} = {down}\n")
    labels = {"labels": repr(f"branch_{rev}"), "labels_clash": repr((r.other,))}.get(r.shape, "None")
    lines.append(f"branch_labels{ann} = {labels}\n")
    lines.append(f"depends_on{ann} = {r.other!r}\n" if r.shape == "depends_on" else f"depends_on{ann} = None\n")
    lines.append(HOSTILE.get(r.shape, "").format(other=r.other, rev=rev, down=down))
    lines.append('\n\ndef upgrade() -> None:\n    op.execute("UPDATE t SET revision = 1 -- globals() exec")\n'
                 '    # down_revision = "nope"\n')
    if r.shape == "noisy_fstring":
        lines.append('    op.execute(f"UPDATE {TABLE} SET {{revision}} = 1")\n')
    if r.shape == "reads_in_functions":  # as real histories do (redash, warehouse)
        lines.append('    op.execute(sa.text("UPDATE v SET n = :revision"), {"revision": revision})\n'
                     '    print("run ./manage.py db stamp {}".format(\n        revision\n    ),\n'
                     '          (revision, down_revision))\n'
                     '    raise RuntimeError(f"cannot go past {revision!r} ({down_revision}, {branch_labels})")\n')
    lines.append("\n\ndef downgrade() -> None:\n    pass\n")
    return "".join(lines)


PRELUDE = {  # before the identifiers
    "read_before": "_EARLY = (revision,)\n",
    "fstring_read_before": '_EARLY = f"{down_revision}"\n',
    "called_before": "def _early():\n    return revision\n\n\n_early()\n",
}
HOSTILE = {
    "reads_at_module_level": ('REVISIONS = (revision, down_revision)\n_STAMP = "stamp {{}}".format(revision)\n'
                              '_LABEL = f"{{revision}}:{{depends_on}}"\n_BIND = {{"revision": revision}}\n'),
    "local_bindings": ("class _Names:\n    revision = {other!r}\n\n\n_IDS = [revision for revision in ({other!r},)]\n"
                       "_pick = lambda revision={other!r}: revision\n\n\n"
                       "def _helper(revision, down_revision={other!r}):\n    branch_labels = (revision,)\n"
                       "    for depends_on in branch_labels:\n        pass\n    return op.f(revision=revision)\n"),
    "list_appended": "down_revision.append({other!r})\n",
    "list_changed_in_function": "def _add(ids):\n    ids.append({other!r})\n\n\n_add(down_revision)\n",
    "global_in_function": "def _set():\n    global down_revision\n    down_revision = {other!r}\n\n\n_set()\n",
    "walrus_in_comprehension": "_unused = [(down_revision := {other!r}) for _ in 'a']\n",
    "match_capture": "match {other!r}:\n    case down_revision:\n        pass\n",
    "except_as": "try:\n    raise ValueError\nexcept ValueError as revision:\n    pass\n",
    "import_as": "import os as down_revision\n",
    "def_named": "def down_revision():\n    pass\n",
    "noisy_text": 'NOTE = """\nrevision = "inside a string"\n"""  # down_revision = "x"\nTABLE = \'it\\\'s\'\n',
    "noisy_fstring": 'TABLE = "t"\n',
    "if_true": "if True:\n    down_revision = {other!r}\n",
    "if_false": "if False:\n    down_revision = {other!r}\n",
    "if_same": "if True:\n    down_revision = {down}\n",
    "try_finally": "try:\n    pass\nfinally:\n    revision = {other!r}\n",
    "globals": 'globals()["down_revision"] = {other!r}\n',
    "fstring_globals": "_unused = f\"{{globals().update(down_revision={other!r}) or ''}}\"\n",
    "assigned_twice": "down_revision = {other!r}\n",
    "syntax_error": "def broken(:\n    pass\n",
    "keyword_in_brackets": "_unused = dict(\nrevision={other!r}\n)\n",
    "keyword_only": "_unused = dict(\nrevision={rev!r}\n)\n",
    "backslash_only": "if False:\n    _unused = \\\nrevision = {rev!r}\n",
    "backslash_hidden": "if True:\n    _unused = \\\nrevision = {other!r}\n",
    "walrus": "(down_revision := {other!r})\n",
    "for_loop": "for revision in [{other!r}]:\n    pass\n",
    "delete": "del down_revision\n",
    "import_star": "from os.path import *\n",
    "non_ascii_name": "\uff52evision = {other!r}\n",  # FULLWIDTH r: Python folds the name to `revision`
}


def write(base: Path, history: History) -> tuple[Path, list[Path]]:
    """The files, the script location (an env.py that never runs) and the version locations."""
    script_location = base / "migrations"
    script_location.mkdir()
    (script_location / "env.py").write_text("raise RuntimeError('env.py must not run')\n")
    locations = [base / f"versions{n}" for n in range(history.locations)]
    written: list[tuple[Path, Revision]] = []
    for location in locations:
        location.mkdir()
    for n, r in enumerate(history.revisions):
        directory = locations[r.location] / r.subdir
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{r.rev}_{n}.py"
        path.write_text(render(r), encoding="utf-8")
        written.append((path, r))
    first = locations[0]
    for extra in history.extras:
        if extra == "copy_link" and written:
            (first / "linked.py").symlink_to(written[0][0])  # the same real file: loaded once
        elif extra != "copy_link":
            (first / extra).write_text(f"revision = {extra!r}\ndown_revision = None\n")
    if history.pyc != "none":
        mode = py_compile.PycInvalidationMode[history.pyc.upper().replace("-", "_")]
        for path, r in written:
            try:
                py_compile.compile(str(path), doraise=True, invalidation_mode=mode)
            except py_compile.PyCompileError:
                continue
            if r.stale:  # changed after compiling (now a root): another size, a later mtime
                path.write_text(render(replace(r, parents=[])) + "# changed\n", encoding="utf-8")
                later = path.stat().st_mtime + 10
                os.utime(path, (later, later))
    return script_location, locations


def alembic_graph(script_location: Path, locations: list[Path], recursive: bool) -> tuple[dict[str, frozenset[str]],
                                                                                            frozenset[str]]:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(map(str, locations)))
    if recursive:
        config.set_main_option("recursive_version_locations", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicates and unknown parents are warnings before they are errors
        script = ScriptDirectory.from_config(config)
        revision_map = script.revision_map
        found_heads = frozenset(revision_map.heads)
    revisions = {r.revision: frozenset(r._versioned_down_revisions)
                 for r in revision_map._revision_map.values() if r is not None}
    return revisions, found_heads


def check(history: History) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        script_location, locations = write(Path(tmp), history)
        try:
            graph: heads.ScriptGraph | None = heads.scan(locations, recursive=history.recursive)
        except Uncertain:
            graph = None
        try:
            expected = alembic_graph(script_location, locations, history.recursive)
        except Exception as exc:  # any failure of Alembic's: the scan must have deferred
            failure = f"{type(exc).__name__}: {exc}"
        else:
            failure = ""
        if failure:
            assert graph is None, f"Alembic fails ({failure}), the scan answered {graph}"
            return f"alembic failed ({failure.split(':')[0]})"
        if graph is None:
            assert not history.readable, "the scan deferred on a history it can read"
            return "deferred"
        revisions, found_heads = expected
        assert {rev: frozenset(ups) for rev, ups in graph.parents.items()} == revisions
        assert graph.heads == found_heads
        return "read"


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_scan_defers_or_agrees_with_alembic(history: History) -> None:
    event(check(history))  # pytest --hypothesis-show-statistics shows how often each outcome came up


@pytest.mark.parametrize("shape", HOSTILE_SHAPES + READABLE)
@pytest.mark.parametrize("pyc", ["none", "unchecked-hash"])
def test_every_shape_alone_defers_or_agrees(shape: str, pyc: str) -> None:
    """Each shape at least once a run, in a history where no other file could hide a wrong answer."""
    history = History([Revision("a1", [], "plain", "b1", 0, "", False), Revision("b1", ["a1"], "plain", "a1", 0, "",
                                                                                 False),
                       Revision("c1", ["b1"], shape, "a1", 0, "", False)], 1, False, pyc)
    outcome = check(history)
    assert outcome == "read" if shape in READABLE else outcome != "read"


def test_the_generator_reaches_every_outcome() -> None:
    """Not vacuous: plain histories are read, hostile ones deferred, broken ones refused by Alembic."""
    plain = History([Revision("aa", [], "black", "bb", 0, "", False), Revision("bb", ["aa"], "annotated", "aa", 0,
                                                                                 "", False)], 1, False, "none")
    hostile = History([Revision("aa", [], "plain", "bb", 0, "", False), Revision("bb", ["aa"], "plain", "aa", 0,
                                                                                 "", False),
                       Revision("cc", ["bb"], "if_true", "aa", 0, "", False)], 1, False, "none")
    broken = History([Revision("aa", [], "syntax_error", "bb", 0, "", False)], 1, False, "timestamp")
    assert (check(plain), check(hostile), check(broken)) == ("read", "deferred", "alembic failed (SyntaxError)")
