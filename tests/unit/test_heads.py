"""The fast path's reading of revision files: each shape is read literally, or deferred with a precise reason.

tests/unit/test_heads_generative.py checks the same module against Alembic on random histories; these pin
the shapes one by one (including those found on real histories) and the reason each deferral gives.
"""

from __future__ import annotations

import _imp
import os
import py_compile
import re
import sys
from pathlib import Path

import pytest

from migrator import revision_file
from migrator.errors import Uncertain
from migrator.revision_file import parse_script
from migrator.revision_scan import scan
from migrator.revision_text import RevisionFile

DOC = '"""add users\n\nRevision ID: b1\nRevises: a1\nthis revision adds a table; revision = "no"\n"""\n'
IMPORTS = "from typing import Sequence, Union\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n"
HEADER = DOC + IMPORTS + "# revision identifiers, used by Alembic.\n"
PLAIN = 'revision = "b1"\ndown_revision = "a1"\nbranch_labels = None\ndepends_on = None\n'
UPGRADE = '\n\ndef upgrade():\n    op.execute("UPDATE t SET revision = 1")  # down_revision = "x"\n'


def read(body: str, header: str = HEADER) -> RevisionFile:
    return parse_script(header + body, "20240101_x.py")


def reason(body: str) -> str:
    with pytest.raises(Uncertain) as caught:
        read(body)
    return str(caught.value)


# --- read literally ---------------------------------------------------------------------------------------

BASE = 'revision = "b1"\ndown_revision = "a1"\n'


@pytest.mark.parametrize(("body", "parents"), [
    (PLAIN, ("a1",)),
    (PLAIN + UPGRADE, ("a1",)),
    ('revision: str = "b1"\ndown_revision: Union[str, Sequence[str], None] = "a1"\n'
     "branch_labels: Union[str, Sequence[str], None] = None\ndepends_on: str | Sequence[str] | None = None\n",
     ("a1",)),
    # black's layout of a merge: one id a line, trailing comma, comments inside
    ('revision = "b1"\ndown_revision = (\n    "a1",  # the users branch\n    "a2",\n)\n', ("a1", "a2")),
    ('revision = "b1"\ndown_revision = [\n    # "quoted" comment\n    "a1",\n    "a2",\n]\n', ("a1", "a2")),
    ('revision = "b1"\ndown_revision: tuple[str, ...] = (\n    "a1",\n    "a2"\n)\n', ("a1", "a2")),
    ('revision = "b1"\ndown_revision = ("a1",)\n', ("a1",)),
    ('revision = "b1"\ndown_revision = ("a1")\n', ("a1",)),
    ('revision = "b1"\ndown_revision = None\n', ()),
    ('revision = "b1"\ndown_revision = ()\n', ()),
    ('revision = "b1"\ndown_revision = ("a1", "a1")\n', ("a1",)),
    ("revision = 'b1'  # the id\ndown_revision = r'a1'  # the parent\n", ("a1",)),
    ('revision = "b1"\ndown_revision = ("a" "1",)\n', ("a1",)),  # implicit concatenation, read by ast
    ('revision = "b1"\ndown_revision = "a1"\nNOTE = """\nrevision = "x"\n"""\n', ("a1",)),
    ('revision = "b1"\ndown_revision = "a1"\nSQL = f"UPDATE {TABLE} SET {{revision}} = 1"\n', ("a1",)),
    ('revision = "b1"\ndown_revision = "a1"\nif"x "in sa.__all__: pass\n', ("a1",)),  # a keyword, then a string
    # an f-string that reads revision (warehouse's downgrade errors): reading binds nothing
    ('revision = "b1"\ndown_revision = "a1"\ndef downgrade():\n'
     '    raise RuntimeError(f"no downgrade past {revision!r}")\n', ("a1",)),
    # reads after the assignments, and names bound in other scopes, decide nothing (redash, open-event-server)
    (BASE + 'def upgrade():\n    op.execute(sa.text("UPDATE v SET r = :revision"), {"revision": revision})\n',
     ("a1",)),
    (BASE + 'def upgrade():\n    print("run: ./manage.py db stamp {}".format(\n        revision\n    ))\n', ("a1",)),
    (BASE + "REVISIONS = (revision, down_revision)\nLABEL = f'{revision}-{down_revision!r}'\n", ("a1",)),
    (BASE + "def upgrade(revision=revision):\n    revision = 'c1'\n    down_revision, x = 'c1', 2\n"
     "    for branch_labels in ():\n        pass\n", ("a1",)),
    (BASE + "class Names:\n    revision = 'c1'\nIDS = [revision for revision in ('c1',)]\n"
     "f = lambda revision='c1': revision\nop.revision = 3\ncontext.configure(revision=revision)\n", ("a1",)),
    (BASE + "from indico.modules.events import models\nimport a.modules.b\n", ("a1",)),  # a package path
])
def test_literal_shapes_are_read(body: str, parents: tuple[str, ...]) -> None:
    assert read(body) == RevisionFile("b1", parents, ())


def test_first_line_and_non_ascii_docstring() -> None:
    assert read('revision = "b1"\ndown_revision = "a1"', header="") == RevisionFile("b1", ("a1",), ())
    assert read(PLAIN, header='"""café, naïve"""\n') == RevisionFile("b1", ("a1",), ())


def test_branch_labels_are_read() -> None:
    assert read('revision = "b1"\ndown_revision = "a1"\nbranch_labels = ("reporting",)\n').branch_labels == (
        "reporting",)
    assert read('revision = "b1"\ndown_revision = "a1"\nbranch_labels = "reporting"\n').branch_labels == (
        "reporting",)


# --- deferred, with the reason ----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    (BASE + 'if True:\n    down_revision = "c1"\n', "line 4: down_revision is assigned inside an if block"),
    (BASE + 'try:\n    pass\nfinally:\n    revision = "c1"\n', "line 6: revision is assigned inside a try statement"),
    (BASE + 'globals()["down_revision"] = "c1"\n', "line 3: uses globals, which can change module variables"),
    (BASE + 'vars()["x"] = 1\n', "line 3: uses vars"),
    (BASE + 'import sys\nsetattr(sys.modules[__name__], "revision", "c")\n', "line 4: uses setattr"),
    (BASE + 'exec("revision = 1")\n', "line 3: uses exec"),
    (BASE + 'op.__dict__["x"] = 1\n', "line 3: uses __dict__"),
    (BASE + "import sys\nsys.modules[__name__].x = 1\n", "line 4: uses modules"),
    (BASE + "def __getattr__(name):\n    return 'x'\n", "line 3: uses __getattr__"),
    (BASE + "from os.path import *\n", "line 3: `from ... import *` can bind any name"),
    (BASE + 'down_revision += "x"\n', "line 3: down_revision is changed by augmented assignment"),
    (BASE + 'revision, down_revision = "b1", "a1"\n', "line 3: revision is assigned by unpacking"),
    (BASE + '(down_revision := "c1")\n', "line 3: down_revision is assigned by :="),
    (BASE + "for revision in ['c1']:\n    pass\n", "line 3: revision is a loop variable"),
    (BASE + "with open('x') as revision:\n    pass\n", "line 3: revision is bound by `with ... as`"),
    (BASE + "try:\n    pass\nexcept Exception as revision:\n    pass\n",
     "line 5: revision is bound by `except ... as`"),
    ('import os as revision\ndown_revision = "a1"\n', "line 1: revision is bound by an import"),
    (BASE + "from x import revision\n", "line 3: revision is bound by an import"),
    (BASE + "del down_revision\n", "line 3: down_revision is deleted"),
    (BASE + "def f():\n    global revision\n", "line 4: revision is declared global"),
    (BASE + "class revision:\n    pass\n", "line 3: revision is defined by class"),
    # reads that could fail at import, or change a list, and bindings of the module's names from a function
    ('def f():\n    return revision\nrevision = "b1"\ndown_revision = "a1"\n',
     "line 2: revision is read before line 3 assigns it"),
    ('X = f"{revision}"\nrevision = "b1"\ndown_revision = "a1"\n', "line 1: revision is read before line 2 assigns it"),
    (BASE + "def f():\n    return branch_labels\n",
     "line 4: branch_labels is read, but never assigned by a module-level `branch_labels = ...`"),
    ('revision = "b1"\ndown_revision = ["a1"]\ndown_revision.append("a2")\n',
     "line 3: down_revision is a list (line 2), which code that reads it can change"),
    (BASE + "def f():\n    global down_revision\n    down_revision = 'c1'\n",
     "line 4: down_revision is declared global"),
    (BASE + "x = [(revision := 'c1') for _ in 'a']\n", "line 3: revision is assigned by :="),
    (BASE + "match 1:\n    case revision:\n        pass\n",
     "line 4: revision is a capture pattern of a match statement"),
    (BASE + "import importlib.util\n", "line 3: uses importlib"),
    (BASE + "from builtins import print as p\n", "line 3: uses builtins"),
    (BASE + "from sys import modules\n", "line 3: uses modules"),
    (BASE + 'x = down_revision = "c1"\n', "line 3: down_revision is assigned in a chained assignment"),
    ('revision = "b1"; x = 1\ndown_revision = "a1"\n', "line 1: revision shares its line with another statement"),
    ('revision = "b1"\ndown_revision = str("a1")\n', "line 2: down_revision is not assigned a literal"),
    ('revision = b"b1"\ndown_revision = "a1"\n', "line 1: revision is not assigned a literal"),
    ('revision = "b1"\ndown_revision: Union[\n    str, None] = "a1"\n', "line 2: down_revision has an annotation"),
    ('revision = "b1"\ndown_revision: "str" = "a1"\n', "line 2: down_revision has an annotation"),
    # a line-start `name = literal` that is not a module-level statement
    (BASE + 'x = dict(\nrevision="c1"\n)\n', "line 4: revision = ... is inside brackets, not an assignment"),
    (BASE + 'if True:\n    x = \\\nrevision = "c1"\n', "line 5: revision follows a backslash continuation"),
    (BASE + 'x = f"{globals().update(revision=1)}"\n', "line 3: an f-string uses globals"),
    (BASE + 'x = fr"{globals()}"\n', "line 3: an f-string uses globals"),
    (BASE + 'x = f"{(revision := \'c1\')}"\n', "line 3: an f-string assigns with :="),
    (BASE + "x = Rf'''{vars()}'''\n", "line 3: an f-string uses vars"),
    (BASE + "\uff52evision = 'c1'\n", "non-ASCII characters outside strings and comments"),
    (BASE + 'revision = "c1"\n', "revision is assigned more than once"),
    ('revision = "b1"\n', "no module-level down_revision assignment"),
    ('down_revision = "a1"\n', "no module-level revision assignment"),
    ('revision = ""\ndown_revision = "a1"\n', "revision is not a non-empty string"),
    ('revision = ("b1",)\ndown_revision = "a1"\n', "revision is not a non-empty string"),
    ('revision = "b-1"\ndown_revision = "a1"\n', "revision 'b-1' has a character Alembic refuses"),
    ('revision = "heads"\ndown_revision = "a1"\n', "revision 'heads' is one of Alembic's symbolic names"),
    ('revision = "b1"\ndown_revision = ("a1", "b1")\n', "revision b1 is its own down_revision"),
    (BASE + 'depends_on = "a0"\n', "depends_on needs Alembic's dependency resolution"),
    (BASE + "branch_labels = [1]\n", "line 3: branch_labels is not assigned a literal the text can read"),
])
def test_uncertain_shapes_are_deferred_with_a_reason(body: str, expected: str) -> None:
    """`line n` in `expected` counts from the body's first line; the reason counts from the file's."""
    expected = re.sub(r"line (\d+)", lambda m: f"line {HEADER.count(chr(10)) + int(m[1])}", expected)
    found = reason(body)
    assert found.startswith("20240101_x.py: ")
    assert expected in found, found


def test_mentions_in_strings_and_comments_do_not_defer() -> None:
    body = (BASE + "# globals() exec vars() setattr( down_revision = 'x'\n"
            "TEXT = 'revision' \"globals()\" '''exec(\"x\")''' r\"\\\"vars()\" b'setattr'\n" + UPGRADE)
    assert read(body) == RevisionFile("b1", ("a1",), ())


def test_only_whole_identifiers_count() -> None:
    body = BASE + "my_revision = 1\nrevision_count = 2\nenv_vars = 3\nop.execute_many = 4\nlocals_ = 5\n"
    assert read(body) == RevisionFile("b1", ("a1",), ())


# --- the graph --------------------------------------------------------------------------------------------

def write(directory: Path, rev: str, down: str | tuple[str, ...] | None, name: str | None = None,
          extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{rev}_change.py")
    path.write_text(f"{DOC}{IMPORTS}revision = {rev!r}\ndown_revision = {down!r}\n{extra}")
    return path


def test_scan_reads_a_history_with_a_merge(tmp_path: Path) -> None:
    for rev, down in (("a1", None), ("b1", "a1"), ("b2", "a1"), ("m1", ("b1", "b2"))):
        write(tmp_path, rev, down)
    graph = scan([tmp_path])
    assert graph.parents == {"a1": (), "b1": ("a1",), "b2": ("a1",), "m1": ("b1", "b2")}
    assert graph.heads == {"m1"}


@pytest.mark.parametrize(("files", "expected"), [
    ([("a1", None, "x.py"), ("a1", None, "y.py")], "revision a1 is defined twice, in "),
    ([("a1", "zz", None)], "a1_change.py: down_revision zz is not a revision in these files"),
    ([("a1", "b1", None), ("b1", "a1", None)], "is part of a cycle of down_revisions"),
])
def test_scan_defers_on_graphs_alembic_refuses(tmp_path: Path, files: list[tuple[str, str | None, str | None]],
                                              expected: str) -> None:
    for rev, down, name in files:
        write(tmp_path, rev, down, name)
    with pytest.raises(Uncertain, match=expected):
        scan([tmp_path])


def test_branch_labels_that_alembic_refuses_defer(tmp_path: Path) -> None:
    write(tmp_path, "a1", None, extra="branch_labels = ('reporting',)\n")
    write(tmp_path, "b1", "a1", extra="branch_labels = 'reporting'\n")
    with pytest.raises(Uncertain, match="branch label 'reporting' is already used by revision"):
        scan([tmp_path])
    write(tmp_path, "b1", "a1", extra="branch_labels = 'a1'\n")
    with pytest.raises(Uncertain, match="branch label 'a1' is already used by revision a1"):
        scan([tmp_path])
    write(tmp_path, "b1", "a1", extra="branch_labels = 'billing'\n")
    assert scan([tmp_path]).heads == {"b1"}


# --- which files: Alembic's selection ---------------------------------------------------------------------

def test_file_selection_matches_alembic(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    write(versions, "a1", None)
    write(versions, "zz", None, name="__init__.py")  # never a revision
    write(versions, "zz", None, name="__init__x.py")  # Alembic's pattern excludes this too
    write(versions, "zz", None, name=".#a1_change.py")  # an editor's lock file
    write(versions, "zz", None, name="notes.txt")
    write(versions, "zz", None, name="old.py~")
    write(versions / "sub", "b1", "a1")  # only with recursive_version_locations
    write(versions / "__pycache__", "zz", None, name="stray.py")  # Alembic skips files in __pycache__
    assert scan([versions]).parents == {"a1": ()}
    assert scan([versions], recursive=True).parents == {"a1": (), "b1": ("a1",)}


def test_several_version_locations_and_links(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write(first, "a1", None)
    target = write(second, "b1", "a1")
    (first / "link_to_b1.py").symlink_to(target)  # the same real file: loaded once
    (first / "link.txt").symlink_to(write(tmp_path / "elsewhere", "c1", "b1"))  # selected by its real name
    graph = scan([first, second, tmp_path / "missing"])  # Alembic skips a location that does not exist
    assert graph.parents == {"a1": (), "b1": ("a1",), "c1": ("b1",)}


def test_linked_directories_are_not_walked(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    write(versions, "a1", None)
    write(tmp_path / "elsewhere", "b1", "a1")
    (versions / "linked").symlink_to(tmp_path / "elsewhere")  # os.walk does not follow it, nor does Alembic
    assert scan([versions], recursive=True).parents == {"a1": ()}
    (tmp_path / "odd.py").mkdir()
    (versions / "odd_link").symlink_to(tmp_path / "odd.py")  # Python 3.12's Path.walk would list it as a file
    with pytest.raises(Uncertain, match="odd_link: a symbolic link to a directory named like a script"):
        scan([versions])


def test_unreadable_and_special_files_defer(tmp_path: Path) -> None:
    write(tmp_path, "a1", None)
    os.mkfifo(tmp_path / "b1_pipe.py")  # reading it must not block the start
    with pytest.raises(Uncertain, match=r"b1_pipe\.py: not a regular file"):
        scan([tmp_path])
    (tmp_path / "b1_pipe.py").unlink()
    (tmp_path / "b1_gone.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(Uncertain, match=r"b1_gone\.py: cannot be read"):
        scan([tmp_path])


def test_scan_wants_a_sequence_of_locations(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        scan(tmp_path)  # type: ignore[arg-type]


# --- does it compile: the .pyc proof, or compile() ---------------------------------------------------------

@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files scan compiles itself (a module global shadows the builtin)."""
    compiled: list[str] = []

    def spy(source: bytes, filename: str, *args: object, **kwargs: object) -> object:
        compiled.append(Path(filename).name)
        return compile(source, filename, "exec", dont_inherit=True)

    monkeypatch.setattr(revision_file, "compile", spy, raising=False)
    return compiled


def test_a_syntax_error_defers_as_alembic_would_fail(tmp_path: Path) -> None:
    write(tmp_path, "a1", None, extra="def broken(:\n    pass\n")
    with pytest.raises(Uncertain, match=r"a1_change.py: does not compile \(SyntaxError"):
        scan([tmp_path])
    write(tmp_path, "a1", None, extra="x = 1\0\n")
    with pytest.raises(Uncertain, match=r"a1_change\.py: does not compile"):
        scan([tmp_path])


@pytest.mark.parametrize("mode", list(py_compile.PycInvalidationMode))
def test_a_fresh_pyc_spares_the_compile(tmp_path: Path, compiles: list[str], mode: py_compile.PycInvalidationMode,
                                        ) -> None:
    path = write(tmp_path, "a1", None)
    py_compile.compile(str(path), doraise=True, invalidation_mode=mode)
    assert scan([tmp_path]).heads == {"a1"}
    assert compiles == []


def test_without_a_pyc_or_with_a_stale_one_scan_compiles(tmp_path: Path, compiles: list[str]) -> None:
    path = write(tmp_path, "a1", None)
    assert scan([tmp_path]).heads == {"a1"}
    py_compile.compile(str(path), doraise=True)  # timestamp-based, as CPython writes in development
    write(tmp_path, "a1", None, extra="# changed\n")
    assert scan([tmp_path]).heads == {"a1"}
    py_compile.compile(str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    write(tmp_path, "a1", None, extra="# changed again\n")
    assert scan([tmp_path]).heads == {"a1"}
    assert compiles == ["a1_change.py"] * 3


def test_a_stale_unchecked_pyc_defers(tmp_path: Path) -> None:
    """The image's pycs are never checked against the source: Alembic would run the old bytecode."""
    path = write(tmp_path, "a1", None)
    py_compile.compile(str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    write(tmp_path, "a1", None, extra="# changed\n")
    with pytest.raises(Uncertain, match=r"its unchecked \.pyc was compiled from another version of the file"):
        scan([tmp_path])


def test_a_stale_unchecked_pyc_is_checked_when_python_is_told_to(tmp_path: Path, compiles: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """python --check-hash-based-pycs always: CPython recompiles the changed file, and so does scan."""
    path = write(tmp_path, "a1", None)
    py_compile.compile(str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    write(tmp_path, "a1", None, extra="# changed\n")
    monkeypatch.setattr(_imp, "check_hash_based_pycs", "always")
    assert scan([tmp_path]).heads == {"a1"}
    assert compiles == ["a1_change.py"]


def test_a_pyc_under_pycache_prefix_is_found(tmp_path: Path, compiles: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHONPYCACHEPREFIX moves the .pyc files out of __pycache__; scan looks where import looks."""
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(revision_file, "_PLAIN_CACHE", False)
    path = write(tmp_path / "versions", "a1", None)
    assert str(py_compile.compile(str(path), doraise=True)).startswith(str(tmp_path / "prefix"))
    assert scan([tmp_path / "versions"]).heads == {"a1"}
    assert compiles == []


def test_a_pyc_from_another_python_is_no_proof(tmp_path: Path, compiles: list[str]) -> None:
    path = write(tmp_path, "a1", None)
    pyc = Path(py_compile.compile(str(path), doraise=True) or "")
    pyc.write_bytes(b"\0\0\r\n" + pyc.read_bytes()[4:])
    assert scan([tmp_path]).heads == {"a1"}
    assert compiles == ["a1_change.py"]


def test_encodings(tmp_path: Path) -> None:
    path = write(tmp_path, "a1", None)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))  # BOM, CRLF
    assert scan([tmp_path]).heads == {"a1"}
    path.write_bytes(b"# -*- coding: latin-1 -*-\n" + path.read_bytes()[3:])
    with pytest.raises(Uncertain, match="declares the encoding latin-1"):
        scan([tmp_path])
