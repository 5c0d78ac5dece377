"""The cheap answer to "is anything pending?", without importing Alembic or SQLAlchemy.

In init-container mode the migrator starts with every pod, and almost always there is nothing to do. This
module reads each revision file's `revision`, `down_revision`, `branch_labels` and `depends_on` as text (no
import, no execution); the version table is read with psycopg alone (migrator.tables). It may defer to Alembic
but must never disagree with it: whenever the text cannot be certain it raises Uncertain(reason) and the caller takes
Alembic's full path. Certain means:

- the files are the ones Alembic's ScriptDirectory loads (same selection, same de-duplication);
- each file compiles: a fresh byte-compiled file proves it (the image's unchecked-hash .pyc, or the
  timestamp .pyc CPython writes in development, validated as CPython's import validates it); else compile();
- each of the four names is bound at module level only by one assignment of a literal (a string, None, or a
  tuple/list of strings, also written over several lines as black does), and nothing in the file can rebind
  names behind the text's back (globals(), setattr, exec, ...). Elsewhere a name may be read (a string, None
  or a tuple cannot be changed by code that reads it; a list can, so a name holding one must not be read)
  or bound locally in a function, a lambda, a class body or a comprehension: that decides nothing about the
  graph. A read must come after the assignment, in a later statement, or importing the file would fail;
- the graph is one Alembic accepts: unique ids, known parents, no cycle, no clashing branch label.

Most files are certain from the text alone: outside strings and comments, the four names occur only in their
assignments, and no dynamic word occurs at all. The few where one does (a `{'revision': revision}` in upgrade())
are parsed with Python's own parser (ast), which tells a read from a binding and a function's scope from the
module's.

What the text cannot see is code elsewhere (an imported module that rewrites this module's globals through
frames) or a failure at import time (an ImportError): only executing the files can tell those.
"""

from __future__ import annotations

import _imp
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import ast

# Alembic's file selection without `sourceless` (script/base.py `_only_source_rev_file`, used with .match).
_SCRIPT_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
# Revision ids Alembic refuses (revision.py `_revision_illegal_chars`) and names it resolves symbolically.
_ILLEGAL_ID = re.compile(r"[@\-+:]")
_SYMBOLIC = frozenset({"head", "heads", "base", "current"})
_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
# Identifiers that reach a module's namespace by a computed name, run code, or hide attributes: any of them
# outside strings and comments means the text cannot be sure what the four names hold after import.
_DYNAMIC = ("globals", "locals", "vars", "setattr", "delattr", "__setattr__", "__delattr__", "exec", "eval",
            "__dict__", "__globals__", "f_globals", "f_locals", "_getframe", "currentframe", "get_referrers",
            "get_objects", "modules", "__import__", "importlib", "__getattr__", "__getattribute__", "__class__",
            "__builtins__", "builtins")

# --- the text scanner ------------------------------------------------------------------------------------
# One regex pass whose every alternative starts with a literal character (so that the regex engine skips
# ahead with a character-set search instead of trying each position): string literals from their quote,
# comments, and line starts with one of the four names. What lies between the matches is the code.

_STRINGS = (r"'''(?:[^'\\]++|\\[\s\S]|'(?!''))*+'''"
            r'|"""(?:[^"\\]++|\\[\s\S]|"(?!""))*+"""'
            r"|'(?:[^'\\\n]++|\\[\s\S])*+'"
            r'|"(?:[^"\\\n]++|\\[\s\S])*+"')
_SEP = r"(?:\s++|\#[^\n]*+)*+"  # inside brackets: whitespace, newlines and comments
_LITERAL = r"""[rRuU]?(?:'(?:[^'\\\n]++|\\.)*+'|"(?:[^"\\\n]++|\\.)*+")"""  # an id: one line, not triple-quoted
# a tuple or list of strings: the closing bracket is the opening one's (the file compiles)
_VALUE = rf"None|{_LITERAL}|[(\[]{_SEP}(?:(?:{_LITERAL}|,){_SEP})*+[)\]]"
_TOKEN = re.compile(
    # a module-level literal assignment, optionally annotated (no strings in the annotation), alone on its line
    rf"\n(?P<name>{'|'.join(_NAMES)})[ \t]*(?::[ \t]*\w[\w.\[\], |]*?[ \t]*)?=[ \t]*(?P<value>{_VALUE})"
    r"[ \t]*(?:\#[^\n]*)?(?=\n|\Z)"
    rf"|{_STRINGS}"
    r"|\#[^\n]*")
# Compiled when first needed (re caches it): patterns that only deferrals, f-strings, encoding cookies and
# tuples need, so that the start-up of a process that finds nothing to do does not pay for them.
# Substrings that find every identifier of _NAMES and _DYNAMIC (then checked as whole identifiers).
_NEEDLES = ("revision", "branch_labels", "depends_on", "globals", "locals", "vars", "setattr", "delattr", "exec",
            "eval", "__dict__", "_getframe", "currentframe", "get_referrers", "get_objects", "modules",
            "__import__", "importlib", "__getattr", "__class__", "builtins")
_WATCHED = frozenset(_NAMES + _DYNAMIC)
_CONTINUED = re.compile(r"[()\[\]{}\\]")  # brackets, or a backslash
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_STAR = r"(?:[ \t]|\\\n)*\*"
_DYNAMIC_WORD = rf"\b(?:{'|'.join(_DYNAMIC)})\b|\bimport\b"
_NAME_WORD = rf"\b(?:{'|'.join(_NAMES)})\b"
_PLAIN_STRING = re.compile(r"""(['"])([^'"\\\n]*)\1""")
_SEQUENCE_ITEM = r"""\s+|\#[^\n]*|(,)|(['"])([^'"\\\n]*)\2"""
_COOKIE = rb"(?m)^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)"
# The parser's statements whose bodies run as module-level code, and what a reason calls them.
_BLOCKS = {"If": "an if block", "For": "a loop", "AsyncFor": "a loop", "While": "a loop", "Try": "a try statement",
           "TryStar": "a try statement", "With": "a with block", "AsyncWith": "a with block",
           "Match": "a match statement"}
# Module-level statements that bind a name other than by `name = value`: the fields that hold the names bound
# (Name nodes with a Store or Del context), and what a reason says of them.
_BINDS = {"AugAssign": ("target", "is changed by augmented assignment"), "For": ("target", "is a loop variable"),
          "AsyncFor": ("target", "is a loop variable"), "With": ("items", "is bound by `with ... as`"),
          "AsyncWith": ("items", "is bound by `with ... as`"), "Delete": ("targets", "is deleted"),
          "TypeAlias": ("name", "is defined by a type statement")}


@dataclass(frozen=True)
class ScriptGraph:
    """Every revision with its parents, read from the files' text."""

    parents: dict[str, tuple[str, ...]]

    @property
    def heads(self) -> frozenset[str]:
        children = {parent for parents in self.parents.values() for parent in parents}
        return frozenset(self.parents) - children


class RevisionFile(NamedTuple):
    """What Alembic would read from one revision file."""

    revision: str
    parents: tuple[str, ...]
    branch_labels: tuple[str, ...]


class Uncertain(Exception):
    """The text alone cannot answer; Alembic's full path must. The message names the file and the reason."""


# --- the graph ----------------------------------------------------------------------------------------

def scan(versions_dirs: Sequence[Path], *, recursive: bool = False) -> ScriptGraph:
    """The revision graph of these version locations, as Alembic builds it; raises Uncertain when unsure.

    The directories are Alembic's version locations in order (script_location/versions by default);
    `recursive` is recursive_version_locations. `sourceless` configurations are the caller's to refuse.
    """
    files = [(shown, read_script(path, shown)) for path, shown in script_files(versions_dirs, recursive=recursive)]
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


# --- one file: proof that it compiles, then its text ------------------------------------------------------

def read_script(path: str | os.PathLike[str], shown: str | None = None) -> RevisionFile:
    """What Alembic would read from the revision file at `path` (a real path); Uncertain when unsure."""
    path = os.fspath(path)
    shown = shown or os.path.basename(path)
    data, status = _read(path, shown)
    _prove_compiles(path, data, status, shown)
    return parse_script(_decode(data, shown), shown)


def _read(path: str, shown: str) -> tuple[bytes, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang the start
    except OSError as exc:
        raise Uncertain(f"{shown}: cannot be read ({exc.strerror})") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise Uncertain(f"{shown}: not a regular file")
        chunks = [os.read(fd, status.st_size + 1)]
        while chunks[-1] and sum(map(len, chunks)) != status.st_size:  # a short read, or a file that grew
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks), status
    except OSError as exc:
        raise Uncertain(f"{shown}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def _prove_compiles(path: str, data: bytes, status: os.stat_result, shown: str) -> None:
    """Alembic imports the file (SourceFileLoader): it fails where this source does not compile."""
    header = _pyc_header(path)
    if header is not None and _pyc_is_fresh(header, data, status, shown):
        return  # a byte-compiled file of exactly this source exists: it compiled
    try:
        compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise Uncertain(f"{shown}: does not compile ({type(exc).__name__}: {exc})") from None


def _pyc_header(path: str) -> bytes | None:
    """The first 16 bytes of the .pyc CPython's import would use for `path`, or None."""
    try:
        fd = os.open(_pyc_path(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def _pyc_path(path: str) -> str:
    """Where CPython's import looks for the byte-compiled `path` (importlib.util.cache_from_source)."""
    if _PLAIN_CACHE:  # cache_from_source's answer in the common case, without its cost
        head, sep, name = path.rpartition(os.sep)
        return f"{head}{sep}__pycache__{os.sep}{name[:-3]}.{_CACHE_TAG}.pyc"
    return cache_from_source(path)


_CACHE_TAG = sys.implementation.cache_tag
_PLAIN_CACHE = _CACHE_TAG is not None and sys.pycache_prefix is None and not sys.flags.optimize


def _pyc_is_fresh(header: bytes, data: bytes, status: os.stat_result, shown: str) -> bool:
    """CPython's own validation (importlib._bootstrap_external: _classify_pyc, _validate_*_pyc)."""
    if len(header) < 16 or header[:4] != MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & ~0b11:
        return False
    if not flags & 0b1:  # timestamp-based: source mtime and size, as CPython compares them
        return (header[8:12] == (int(status.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                and header[12:16] == (status.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    if header[8:16] == source_hash(data):
        return True
    checked = _imp.check_hash_based_pycs != "never" and (flags & 0b10 or _imp.check_hash_based_pycs == "always")
    if not checked:
        # CPython would run the stale bytecode, not this text: what the text says is not what Alembic sees
        raise Uncertain(f"{shown}: its unchecked .pyc was compiled from another version of the file (Alembic "
                        f"would run that .pyc: byte-compile the file again)")
    return False


def _decode(data: bytes, shown: str) -> str:
    """The source text as CPython decodes it (UTF-8, an optional BOM, universal newlines)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif b"coding" in data[:400]:
        head = b"\n".join(data.split(b"\n", 2)[:2])
        cookie = re.search(_COOKIE, head)
        if cookie and cookie[1].lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise Uncertain(f"{shown}: declares the encoding {cookie[1].decode('ascii', 'replace')}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Uncertain(f"{shown}: is not UTF-8") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


# --- the text -------------------------------------------------------------------------------------------

def parse_script(text: str, shown: str) -> RevisionFile:
    """The four names' values from source that compiles; Uncertain unless every use of them is certain."""
    text = "\n" + text  # every line, the first included, starts after a newline (line n is after the n-th)
    # split() does the whole pass in C: [code, name, value, code, name, value, ..., code], where name and
    # value are None for a string or a comment. Code segments are joined with NUL, which Python source
    # cannot hold outside strings: it marks where a string or comment was, and is no identifier character.
    parts = _TOKEN.split(text)
    segments = parts[0::3]
    code = "\0".join(segments)
    found = [(index, name) for index, name in enumerate(parts[1::3]) if name is not None]
    # A line-start `name = literal` is a module-level statement unless a bracket or a backslash before it
    # continues the line; most files have neither before their last assignment, and need no closer look.
    if found and _CONTINUED.search("\0".join(segments[:found[-1][0] + 1])):
        _check_module_level(text, segments, found, shown)
    values: dict[str, list[str]] = {}
    for index, name in found:
        values.setdefault(name, []).append(parts[3 * index + 2])
    maybe_fstring = "f\0" in code or "F\0" in code or "r\0" in code or "R\0" in code  # also fr"..."
    fstring_reads = maybe_fstring and _check_fstrings(text, shown)
    if _needs_parser(code, text, shown) or fstring_reads:
        _check_tree(text, shown)
    return _revision_file(values, shown)


def _check_module_level(text: str, segments: list[str], found: list[tuple[int, str]], shown: str) -> None:
    """No assignment read follows a backslash continuation or sits inside brackets (a keyword argument)."""
    balance, done = 0, 0
    for index, name in found:
        if segments[index].endswith("\\"):
            raise Uncertain(f"{shown}: line {_token_line(text, index)}: {name} follows a backslash continuation")
        balance += _balance("".join(segments[done:index + 1]))
        done = index + 1
        if balance:
            raise Uncertain(f"{shown}: line {_token_line(text, index)}: {name} = ... is inside brackets, not an "
                            f"assignment")


def _balance(code: str) -> int:
    return (code.count("(") + code.count("[") + code.count("{")
            - code.count(")") - code.count("]") - code.count("}"))


def _token_line(text: str, index: int) -> int:
    """The line of the index-th match of _TOKEN, for a reason (the fast pass keeps no positions)."""
    for number, match in enumerate(_TOKEN.finditer(text)):
        if number == index:
            return _line(text, match.start() + 1)
    return 0


def _check_fstrings(text: str, shown: str) -> bool:
    """An f-string's replacement fields are code: True when one reads one of the four names (the parser decides)."""
    reads = False
    for match in _TOKEN.finditer(text):  # the same tokens as parse_script's, now with their positions
        quote = match.start()
        if text[quote - 1] not in "fFrR" or "f" not in _prefix(text, quote).lower():
            continue
        fields = match[0].replace("{{", "").replace("}}", "")
        if "{" not in fields and "}" not in fields:
            continue
        line = _line(text, quote)
        if fields.count("{") != fields.count("}"):  # 3.12 quotes inside a field: this scan cannot delimit it
            raise Uncertain(f"{shown}: line {line}: an f-string the text scan cannot delimit")
        fields = fields[fields.index("{"):fields.rindex("}") + 1]
        # A field may read `revision` (an error message naming it), which changes nothing when it runs after the
        # assignment: the parser checks that. An assignment expression, or a dynamic way of changing a module's
        # names, could bind one.
        if ":=" in fields:
            raise Uncertain(f"{shown}: line {line}: an f-string assigns with :=")
        found = re.search(_DYNAMIC_WORD, fields)  # strings nested in the fields included: rare enough to defer
        if found:
            raise Uncertain(f"{shown}: line {line}: an f-string uses {found[0]}")
        if not fields.isascii():
            raise Uncertain(f"{shown}: line {line}: non-ASCII characters in an f-string")
        reads = reads or re.search(_NAME_WORD, fields) is not None
    return reads


def _prefix(text: str, quote: int) -> str:
    """The string prefix before the quote at `quote`: the letters before it, if they are nothing else."""
    if text[quote - 2] not in _IDENTIFIER_CHARS:
        return text[quote - 1]
    if text[quote - 2] in "rRbBuUfF" and text[quote - 3] not in _IDENTIFIER_CHARS:
        return text[quote - 2:quote]
    return ""  # an identifier or keyword followed by a string (`elif"x"`)


def _needs_parser(code: str, text: str, shown: str) -> bool:
    """Whether one of the four names, a dynamic word or `import *` occurs outside strings and comments (beyond
    the assignments read): then only the parser can tell what it does."""
    if not text.isascii() and not code.isascii():
        # Python folds identifiers (NFKC): a non-ASCII name may be one of the four, or globals
        raise Uncertain(f"{shown}: non-ASCII characters outside strings and comments")
    for needle in _NEEDLES:  # `in` and find() are far cheaper than a regex with word boundaries
        if needle not in code:
            continue
        at = code.find(needle)
        while at >= 0:
            if _identifier_at(code, at, len(needle)) in _WATCHED:
                return True
            at = code.find(needle, at + len(needle))
    if "*" in code:
        at = code.find("import")
        while at >= 0:
            if _identifier_at(code, at, 6) == "import" and re.compile(_STAR).match(code, at + 6):
                return True
            at = code.find("import", at + 6)
    return False


def _identifier_at(code: str, at: int, length: int) -> str:
    """The whole identifier around code[at:at + length]."""
    start, end = at, at + length
    while start and code[start - 1] in _IDENTIFIER_CHARS:
        start -= 1
    while end < len(code) and code[end] in _IDENTIFIER_CHARS:
        end += 1
    return code[start:end]


def _revision_file(values: dict[str, list[str]], shown: str) -> RevisionFile:
    """The literals' values, checked as Alembic's Script and Revision check them."""
    revision = _literal(values, "revision", shown, required=True)
    if not isinstance(revision, str) or not revision:
        raise Uncertain(f"{shown}: revision is not a non-empty string")
    if _ILLEGAL_ID.search(revision):
        raise Uncertain(f"{shown}: revision {revision!r} has a character Alembic refuses (@ - + :)")
    if revision in _SYMBOLIC:
        raise Uncertain(f"{shown}: revision {revision!r} is one of Alembic's symbolic names")
    parents = _strings(_literal(values, "down_revision", shown, required=True), "down_revision", shown)
    if revision in parents:
        raise Uncertain(f"{shown}: revision {revision} is its own down_revision")
    if _literal(values, "depends_on", shown) is not None:
        raise Uncertain(f"{shown}: depends_on needs Alembic's dependency resolution")
    labels = _strings(_literal(values, "branch_labels", shown), "branch_labels", shown)
    return RevisionFile(revision, parents if len(parents) < 2 else tuple(dict.fromkeys(parents)), labels)


def _literal(values: dict[str, list[str]], name: str, shown: str, required: bool = False) -> Any:
    """The value of the one assignment of `name`, from its literal text."""
    found = values.get(name)
    if found is None:
        if required:
            raise Uncertain(f"{shown}: no module-level {name} assignment")
        return None  # Alembic reads branch_labels and depends_on with getattr(module, name, None)
    if len(found) > 1:
        raise Uncertain(f"{shown}: {name} is assigned more than once")
    text = found[0]
    if text == "None":
        return None
    plain = _PLAIN_STRING.fullmatch(text)  # the common cases, without the cost of importing ast
    if plain:
        return plain[2]
    if text[0] in "([":
        items = _plain_sequence(text)
        if items is not None:
            return items
    import ast  # noqa: PLC0415  (escapes, prefixes, implicit concatenation: rare)

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise Uncertain(f"{shown}: {name} is not a literal") from None


def _plain_sequence(text: str) -> tuple[str, ...] | list[str] | str | None:
    """A tuple or list of plain strings (black's multi-line layout included), or None to let ast decide."""
    item = re.compile(_SEQUENCE_ITEM)
    items: list[str] = []
    commas = 0
    pos, end = 1, len(text) - 1
    while pos < end:
        match = item.match(text, pos, end)
        if not match:
            return None
        if match[1]:
            commas += 1
            if commas != len(items):
                return None
        elif match[2]:
            if len(items) != commas:
                return None  # implicit concatenation
            items.append(match[3])
        pos = match.end()
    if text[0] == "(":
        return items[0] if len(items) == 1 and not commas else tuple(items)
    return items


def _strings(value: Any, name: str, shown: str) -> tuple[str, ...]:
    """Alembic's util.to_tuple for ids: None is (), a string is itself, a sequence of strings is kept."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Uncertain(f"{shown}: {name} is neither None, a string nor a tuple or list of strings")


# --- reasons --------------------------------------------------------------------------------------------

def _line(text: str, pos: int) -> int:
    """The line number of `pos` in parse_script's text (which starts with a newline of its own)."""
    return text.count("\n", 0, pos)


# --- the parser's answer, for the files the text alone cannot clear -------------------------------------
# `ast` is imported where it is used: the few files a history that need it pay for it, not every start-up.

Finding = tuple[int, int, str]  # (line, column, reason): the first in the file is the one reported


def _check_tree(text: str, shown: str) -> None:
    """Raise Uncertain with the first thing in the file (the parser's view) that could give the four names other
    values than their literal assignments: another module-level binding, a read that could fail or change a
    list, a global declaration, an assignment expression, a dynamic word, `import *`."""
    import ast  # noqa: PLC0415

    try:
        tree = ast.parse(text[1:], shown)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise Uncertain(f"{shown}: does not parse ({type(exc).__name__})") from None
    assigned, found = _module_bindings(tree, text)
    # names are most of a tree's nodes: only the watched ones, and the rarer kinds of node, are looked at
    kinds = {ast.Attribute, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
             ast.Global, ast.Nonlocal, ast.NamedExpr}
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if not (node.id in _WATCHED if type(node) is ast.Name else type(node) in kinds):
                continue
            reason = _dynamic(node) or _unsafe_read(node, stmt, assigned)
            if reason:
                found.append((getattr(node, "lineno", stmt.lineno), getattr(node, "col_offset", 0), reason))
    if found:
        line, _, reason = min(found)
        raise Uncertain(f"{shown}: line {line}: {reason}")


def _module_bindings(tree: ast.Module, text: str) -> tuple[dict[str, ast.Assign | ast.AnnAssign], list[Finding]]:
    """Each name's first top-level `name = value`, and every other binding of the four in the module's scope."""
    import ast  # noqa: PLC0415

    read = {(_line(text, match.start() + 1), match["name"]) for match in _TOKEN.finditer(text) if match["name"]}
    assigned: dict[str, ast.Assign | ast.AnnAssign] = {}
    found: list[Finding] = []
    for stmt in tree.body:
        for node, name, how in _bindings(stmt, None):
            reason = how
            if how is None and isinstance(stmt, ast.Assign | ast.AnnAssign):  # the text read it, or says why not
                assigned.setdefault(name, stmt)
                if (node.lineno, name) in read:
                    read.discard((node.lineno, name))
                    continue
                reason = _unread(stmt, tree.body)
            found.append((node.lineno, node.col_offset, f"{name} {reason}"))
    found += [(line, 0, f"{name} = ... is not a module-level statement") for line, name in read]
    return assigned, found


def _bindings(stmt: ast.stmt, block: str | None) -> Iterator[tuple[Any, str, str | None]]:
    """(node, name, how) for each of the four names this module-level statement binds in the module's scope;
    how is None for `name = value` at the top level. Function and class bodies are other scopes: not entered."""
    import ast  # noqa: PLC0415

    kind = type(stmt).__name__
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        yield from _assignments(stmt, block)
    elif kind in _BINDS:
        field, how = _BINDS[kind]
        yield from ((node, node.id, how) for node in _stored(getattr(stmt, field)))
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        for alias in stmt.names:
            name = alias.asname or alias.name.partition(".")[0]
            if name in _NAMES:
                yield alias, name, "is bound by an import"
    elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and stmt.name in _NAMES:
        yield stmt, stmt.name, f"is defined by {'class' if kind == 'ClassDef' else 'def'}"
    yield from ((handler, handler.name, "is bound by `except ... as`")
                for handler in getattr(stmt, "handlers", ()) if handler.name in _NAMES)
    for case in getattr(stmt, "cases", ()):
        for node in ast.walk(case.pattern):
            captured = getattr(node, "name", None) or getattr(node, "rest", None)
            if captured in _NAMES:
                yield node, captured, "is a capture pattern of a match statement"
    if kind in _BLOCKS:
        inner = [*getattr(stmt, "body", ()), *getattr(stmt, "orelse", ()), *getattr(stmt, "finalbody", ())]
        inner += [s for part in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())) for s in part.body]
        for nested in inner:
            yield from _bindings(nested, _BLOCKS[kind])


def _assignments(stmt: ast.Assign | ast.AnnAssign, block: str | None) -> Iterator[tuple[Any, str, str | None]]:
    import ast  # noqa: PLC0415

    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if stmt.value is not None else []
    for target in targets:
        if not isinstance(target, ast.Name):
            yield from ((node, node.id, "is assigned by unpacking") for node in _stored(target))
        elif target.id in _NAMES:
            yield target, target.id, (f"is assigned inside {block}" if block else
                                      "is assigned in a chained assignment" if len(targets) > 1 else None)


def _stored(field: ast.AST | list[ast.AST]) -> list[ast.Name]:
    """The Name nodes of the four names that a target (or a list of them) binds or deletes."""
    import ast  # noqa: PLC0415

    nodes = [node for part in (field if isinstance(field, list) else [field]) for node in ast.walk(part)]
    return [node for node in nodes if isinstance(node, ast.Name) and node.id in _NAMES
            and isinstance(node.ctx, ast.Store | ast.Del)]


def _unread(stmt: ast.Assign | ast.AnnAssign, body: list[ast.stmt]) -> str:
    """Why the text did not read this top-level `name = value`."""
    import ast  # noqa: PLC0415

    if any(other is not stmt and stmt.lineno in (other.lineno, other.end_lineno) for other in body):
        return "shares its line with another statement (;)"
    try:
        ast.literal_eval(stmt.value or "")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "is not assigned a literal the text can read"
    if isinstance(stmt, ast.AnnAssign):
        return "has an annotation the text cannot read (strings, or several lines)"
    return "is not assigned a literal the text can read"


def _dynamic(node: ast.AST) -> str | None:
    """Why this node, anywhere in the file, could bind the four names or reach them by a computed name."""
    import ast  # noqa: PLC0415

    if isinstance(node, ast.Global | ast.Nonlocal):
        declared = [name for name in node.names if name in _NAMES]
        return f"{declared[0]} is declared {type(node).__name__.lower()}" if declared else None
    if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name) and node.target.id in _NAMES:
        return f"{node.target.id} is assigned by :="
    if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
        return "`from ... import *` can bind any name"
    word = next((word for word in _words(node) if word in _DYNAMIC), None)
    return f"uses {word}, which can change module variables where the text cannot see it" if word else None


def _words(node: ast.AST) -> list[str]:
    """The identifiers a node uses or binds, as far as the dynamic words go."""
    import ast  # noqa: PLC0415

    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        # what the statement binds, and the package it starts from: `from indico.modules.x import y` does not
        # touch sys.modules, while `import importlib.util` or `from builtins import ...` reach dynamic tools
        words = [word for alias in node.names for word in (alias.name.partition(".")[0], alias.asname or "")]
        if isinstance(node, ast.ImportFrom):
            words += [alias.name for alias in node.names] + [(node.module or "").partition(".")[0]]
        return words
    return []


def _unsafe_read(node: ast.AST, stmt: ast.stmt, assigned: dict[str, ast.Assign | ast.AnnAssign]) -> str | None:
    """Why a read of one of the four names (in the top-level statement `stmt`) is not harmless, or None."""
    import ast  # noqa: PLC0415

    if not (isinstance(node, ast.Name) and node.id in _NAMES and isinstance(node.ctx, ast.Load)):
        return None
    name, assignment = node.id, assigned.get(node.id)
    if assignment is None:
        return f"{name} is read, but never assigned by a module-level `{name} = ...`"
    if stmt.lineno <= assignment.lineno:  # it may run before the name exists: a NameError in Alembic's import
        return f"{name} is read before line {assignment.lineno} assigns it"
    if isinstance(assignment.value, ast.List):
        return f"{name} is a list (line {assignment.lineno}), which code that reads it can change"
    return None


# --- the verdict ----------------------------------------------------------------------------------------

def at_head(graph: ScriptGraph, versions: tuple[str, ...] | None) -> bool:
    """True when the database holds exactly the scripts' heads."""
    return versions is not None and set(versions) == graph.heads and bool(graph.heads)
