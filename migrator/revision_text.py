"""One revision file's text: what its four names hold, read as text (no import, no execution), when that is certain.

The four names are `revision`, `down_revision`, `branch_labels` and `depends_on`. Certain means: each of them
is bound at module level only by one assignment of a literal (a string, None, or a tuple/list of strings, also
written over several lines as black does), and nothing in the file can rebind names behind the text's back
(globals(), setattr, exec, ...). Elsewhere a name may be read (a string, None or a tuple cannot be changed by
code that reads it; a list can, so a name holding one must not be read) or bound locally in a function, a
lambda, a class body or a comprehension: that decides nothing about the graph. A read must come after the
assignment, in a later statement, or importing the file would fail. Whenever the text cannot be certain it
raises Uncertain(reason), and the caller takes Alembic's full path.

Most files are certain from the text alone: outside strings and comments, the four names occur only in their
assignments, and no dynamic word occurs at all. The few where one does (a `{'revision': revision}` in upgrade())
are for Python's own parser to judge (migrator.revision_ast).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from migrator.errors import Uncertain  # defined there: callers catch it without loading the scanner

# Revision ids Alembic refuses (revision.py `_revision_illegal_chars`) and names it resolves symbolically.
_ILLEGAL_ID = re.compile(r"[@\-+:]")
_SYMBOLIC = frozenset({"head", "heads", "base", "current"})
NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
# Identifiers that reach a module's namespace by a computed name, run code, or hide attributes: any of them
# outside strings and comments means the text cannot be sure what the four names hold after import.
DYNAMIC = ("globals", "locals", "vars", "setattr", "delattr", "__setattr__", "__delattr__", "exec", "eval",
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
TOKEN = re.compile(
    # a module-level literal assignment, optionally annotated (no strings in the annotation), alone on its line
    rf"\n(?P<name>{'|'.join(NAMES)})[ \t]*(?::[ \t]*\w[\w.\[\], |]*?[ \t]*)?=[ \t]*(?P<value>{_VALUE})"
    r"[ \t]*(?:\#[^\n]*)?(?=\n|\Z)"
    rf"|{_STRINGS}"
    r"|\#[^\n]*")
# Compiled when first needed (re caches it): patterns that only deferrals, f-strings and tuples need,
# so that the start-up of a process that finds nothing to do does not pay for them.
# Substrings that find every identifier of NAMES and DYNAMIC (then checked as whole identifiers).
_NEEDLES = ("revision", "branch_labels", "depends_on", "globals", "locals", "vars", "setattr", "delattr", "exec",
            "eval", "__dict__", "_getframe", "currentframe", "get_referrers", "get_objects", "modules",
            "__import__", "importlib", "__getattr", "__class__", "builtins")
WATCHED = frozenset(NAMES + DYNAMIC)
_CONTINUED = re.compile(r"[()\[\]{}\\]")  # brackets, or a backslash
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_STAR = r"(?:[ \t]|\\\n)*\*"
_DYNAMIC_WORD = rf"\b(?:{'|'.join(DYNAMIC)})\b|\bimport\b"
_NAME_WORD = rf"\b(?:{'|'.join(NAMES)})\b"
_PLAIN_STRING = re.compile(r"""(['"])([^'"\\\n]*)\1""")
_SEQUENCE_ITEM = r"""\s+|\#[^\n]*|(,)|(['"])([^'"\\\n]*)\2"""


class RevisionFile(NamedTuple):
    """What Alembic would read from one revision file."""

    revision: str
    parents: tuple[str, ...]
    branch_labels: tuple[str, ...]


# --- the text -------------------------------------------------------------------------------------------

def read_assignments(text: str, shown: str) -> tuple[dict[str, list[str]], bool]:
    """The literal texts assigned to each of the four names, and whether only the parser can tell what the rest
    of the file does with them; Uncertain when the text shows it cannot be certain. `text` starts with a newline
    of its own (every line, the first included, starts after a newline: line n is after the n-th)."""
    # split() does the whole pass in C: [code, name, value, code, name, value, ..., code], where name and
    # value are None for a string or a comment. Code segments are joined with NUL, which Python source
    # cannot hold outside strings: it marks where a string or comment was, and is no identifier character.
    parts = TOKEN.split(text)
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
    return values, _needs_parser(code, text, shown) or fstring_reads


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
    """The line of the index-th match of TOKEN, for a reason (the fast pass keeps no positions)."""
    for number, match in enumerate(TOKEN.finditer(text)):
        if number == index:
            return line_of(text, match.start() + 1)
    return 0


def _check_fstrings(text: str, shown: str) -> bool:
    """An f-string's replacement fields are code: True when one reads one of the four names (the parser decides)."""
    reads = False
    for match in TOKEN.finditer(text):  # the same tokens as read_assignments', now with their positions
        quote = match.start()
        if text[quote - 1] not in "fFrR" or "f" not in _prefix(text, quote).lower():
            continue
        fields = match[0].replace("{{", "").replace("}}", "")
        if "{" not in fields and "}" not in fields:
            continue
        line = line_of(text, quote)
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
            if _identifier_at(code, at, len(needle)) in WATCHED:
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


def checked_revision(values: dict[str, list[str]], shown: str) -> RevisionFile:
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

def line_of(text: str, pos: int) -> int:
    """The line number of `pos` in read_assignments' text (which starts with a newline of its own)."""
    return text.count("\n", 0, pos)

