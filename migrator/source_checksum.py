"""What counts as a change to a revision file: a checksum of what Python executes, not of how it is written.

Validation (migrator.validation) compares each applied revision's file with the checksum recorded when it
ran. An alarm stops deployments, so it must mean that the code or its SQL text changed, and nothing else:

- ignored: comments, blank lines, indentation width, spaces, line breaks inside brackets, backslash
  continuations, docstrings (documentation, like comments: Alembic's revision message lives there), the
  spelling of a literal whose value is the same (quotes, string prefixes, escapes, implicit concatenation,
  `0XFF` / `0xff` / `255`), a trailing comma where it changes nothing (calls, definitions, lists, sets,
  dicts, tuples of two or more), parentheses that only wrap a whole statement's value (`x = (...)`,
  `return (...)`, `if (...):`, `for (...) in (...):`, `del (...)`, `-> (...)`, `x: (...) = ...`), the empty
  parentheses of
  `class A():`, and a compound statement's body written on its header's line (`if x: y`, `a; b`).
  That is what black and `ruff format` change, and what editing a comment changes;
- counted: every other token: names, operators, keywords, the value of every string (SQL text included)
  and number, the indentation structure, and f-strings token by token (their literal text as written).

Why not `ast.dump`: its output changes between Python versions (node types and fields come and go), so an
image's Python upgrade would raise an alarm on every applied file. Why not the `tokenize` module: its tokens
for f-strings changed in Python 3.12 (PEP 701). The checksum's own scanner (migrator.source_tokens) reads
source that compiles the same way on every Python version from 3.11 on, and its output depends on nothing
else; the algorithm is named in the checksum (`t1:`), so a later one can be told apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from migrator.source_tokens import CLOSERS, OPENERS, SEPARATOR, Token, scan

ALGORITHM = "t1"

# Hard keywords of Python 3.11 to 3.14 (the list has not changed since 3.7); fixed here so that it cannot
# change under the checksum with the interpreter.
KEYWORDS = frozenset({
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"})
_COMPOUND = frozenset({"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class",
                       "async"})
_AUGMENTED = frozenset({"+=", "-=", "*=", "/=", "//=", "%=", "**=", ">>=", "<<=", "&=", "^=", "|=", "@="})
_WHOLE_VALUE = frozenset({"=", "return", "yield", "del"})  # what the rest of the statement follows, whole


# --- decoding --------------------------------------------------------------------------------------------

def decode(data: bytes) -> str:
    """The source as CPython reads it: its declared encoding (BOM or coding cookie), universal newlines."""
    import io  # noqa: PLC0415  (off the no-op path: checksums are computed when a file is new or changed)
    import tokenize  # noqa: PLC0415

    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):  # Python cannot import it either: hash what is there
        text = data.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def checksum(data: bytes) -> str:
    """`t1:` and the sha256 of the file's normalised token stream (see the module's docstring)."""
    return checksum_of_text(decode(data))


def checksum_of_text(text: str) -> str:
    tokens = normalized(text)
    digest = hashlib.sha256(SEPARATOR.join(tokens).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{ALGORITHM}:{digest}"


def normalized(text: str) -> list[str]:
    """The tokens that count, as hashed (for tests and for saying what differs)."""
    lines = _logical_lines(scan(text))
    lines = _split_one_liners(lines)
    _drop_docstrings(lines)
    out: list[str] = []
    for line in lines:
        out.extend(token.text for token in _tidy(line))
    return out


# --- logical lines and what reformatting changes ---------------------------------------------------------

@dataclass
class _Line:
    """One logical line: the INDENT/DEDENT tokens before it, its tokens, and its NEWLINE."""

    before: list[Token] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)


def _logical_lines(tokens: Iterator[Token]) -> list[_Line]:
    lines: list[_Line] = []
    current = _Line()
    for token in tokens:
        if token.kind in ("INDENT", "DEDENT"):
            current.before.append(token)
        elif token.kind == "NEWLINE":
            if current.tokens:
                lines.append(current)
                current = _Line()
        else:
            current.tokens.append(token)
    if current.before:
        lines.append(current)
    return _merge_strings(lines)


def _merge_strings(lines: list[_Line]) -> list[_Line]:
    """Implicit concatenation of plain strings (`"a" "b"`) is the one string `"ab"`."""
    import ast  # noqa: PLC0415

    for line in lines:
        merged: list[Token] = []
        for token in line.tokens:
            if token.kind == "string" and merged and merged[-1].kind == "string":
                try:
                    first, second = ast.literal_eval(merged[-1].text), ast.literal_eval(token.text)
                    merged[-1] = Token("string", repr(first + second))
                    continue
                except (ValueError, SyntaxError, TypeError):  # bytes next to str: a SyntaxError in Python anyway
                    pass
            merged.append(token)
        line.tokens = merged
    return lines


def _split_one_liners(lines: list[_Line]) -> list[_Line]:
    """`if x: y` as `if x:` and an indented `y`; `case` counts as a keyword only in a match block."""
    out: list[_Line] = []
    blocks: list[str] = []  # the kind of each open indented block, to tell `case` the keyword from a name
    opening = ""
    closing: list[Token] = []  # the DEDENT of a one-liner's body, placed as the block form places it
    for line in lines:
        line.before[:0], closing = closing, []
        for token in line.before:
            if token.kind == "INDENT":
                blocks.append(opening)
            elif blocks:
                blocks.pop()
        opening = _header(line.tokens, in_match=bool(blocks) and blocks[-1] == "match")
        colon = _header_colon(line.tokens) if opening else -1
        if colon < 0 or colon == len(line.tokens) - 1:
            out.extend(_statements(line.before, line.tokens))
            continue
        out.append(_Line(line.before, line.tokens[:colon + 1]))
        out.extend(_statements([Token("INDENT", "INDENT")], line.tokens[colon + 1:]))
        closing = [Token("DEDENT", "DEDENT")]
        opening = ""
    if closing:
        out.append(_Line(closing, []))
    return out


def _statements(before: list[Token], tokens: list[Token]) -> Iterator[_Line]:
    """`a; b` is `a` and `b` on lines of their own."""
    start = 0
    for index, token in enumerate([*tokens, Token("op", ";")]):
        if token.kind == "op" and token.text == ";":
            if index > start:
                yield _Line(before, tokens[start:index])
                before = []
            start = index + 1
    if before:
        yield _Line(before, [])


def _header(tokens: list[Token], *, in_match: bool) -> str:
    """The compound statement this line opens ('' when none): its keyword, or `match`."""
    if not tokens or tokens[0].kind != "name":
        return ""
    first = tokens[0].text
    if first in _COMPOUND:
        return first
    follows = tokens[1].text if len(tokens) > 1 else ""
    ends_block = tokens[-1].kind == "op" and tokens[-1].text == ":"
    if first == "match" and ends_block and follows not in (":", "=", ".") and follows not in _AUGMENTED:
        return "match"
    if first == "case" and in_match and follows not in (":", "="):
        return "case"
    return ""


def _header_colon(tokens: list[Token]) -> int:
    """The index of the colon that ends a compound statement's header: the first one outside brackets that
    no `lambda` takes."""
    depth, lambdas = 0, 0
    for index, token in enumerate(tokens):
        if token.kind != "op" and not (token.kind == "name" and token.text == "lambda"):
            continue
        if token.text == "lambda":
            lambdas += depth == 0
        elif token.text in CLOSERS:
            depth += 1
        elif token.text in (")", "]", "}"):
            depth -= 1
        elif token.text == ":" and depth == 0:
            if not lambdas:
                return index
            lambdas -= 1
    return -1


def _drop_docstrings(lines: list[_Line]) -> None:
    """A module's, class's or function's docstring is documentation: its text does not count."""
    previous_opens_body = True  # the module's first statement
    for line in lines:
        indented = any(t.kind == "INDENT" for t in line.before)
        if (previous_opens_body and (indented or line is lines[0]) and len(line.tokens) == 1
                and line.tokens[0].kind == "string"):
            line.tokens = [Token("string", "DOCSTRING")]
        first = line.tokens[0].text if line.tokens else ""
        previous_opens_body = first in ("def", "class", "async") and line.tokens[-1].text == ":"


# --- trailing commas and redundant parentheses, within one logical line ----------------------------------

@dataclass
class _Group:
    opener: int
    closer: int
    commas: list[int]  # the group's own commas (not those of nested groups, nor a lambda's parameters')
    generator: bool  # a `for` at the group's own level: a comprehension or generator expression
    lambdas: int = 0  # lambdas at the group's own level whose `:` is still to come


def _tidy(line: _Line) -> list[Token]:
    tokens = line.tokens
    dropped: set[int] = set()
    groups = _groups(tokens)
    for group in groups:
        if group.commas and group.commas[-1] == group.closer - 1 and _trailing_comma_neutral(tokens, group):
            dropped.add(group.closer - 1)
    changed = True
    while changed:  # `x = ((a))`: the outer pair goes first, then the inner one is redundant too
        changed = False
        for group in groups:
            if group.opener not in dropped and _redundant(tokens, group, dropped):
                dropped.update((group.opener, group.closer))
                changed = True
    _class_parentheses(tokens, dropped)
    end = [Token("NEWLINE", "NEWLINE")] if tokens else []
    return [*line.before, *(t for i, t in enumerate(tokens) if i not in dropped), *end]


def _groups(tokens: list[Token]) -> list[_Group]:
    stack: list[_Group] = []
    groups: list[_Group] = []
    for index, token in enumerate(tokens):
        group = stack[-1] if stack else None
        if token.kind == "op" and token.text in CLOSERS:
            stack.append(_Group(index, -1, [], False))
        elif token.kind == "op" and token.text in OPENERS and group is not None:
            stack.pop()
            group.closer = index
            groups.append(group)
        elif group is None:
            continue
        elif token.kind == "op" and token.text == "," and not group.lambdas:
            group.commas.append(index)
        elif token.kind == "op" and token.text == ":" and group.lambdas:
            group.lambdas -= 1
        elif token.kind == "name" and token.text in ("for", "lambda"):
            group.generator |= token.text == "for"
            group.lambdas += token.text == "lambda"
    return sorted(groups, key=lambda g: g.opener)


def _ends_value(tokens: list[Token], index: int) -> bool:
    """Whether the token at `index` ends an operand, so that a bracket after it calls or subscripts."""
    if index < 0:
        return False
    token = tokens[index]
    if token.kind in ("number", "string", "fstring"):
        return True
    if token.kind == "name":
        return token.text not in KEYWORDS
    return token.text in (")", "]", "}")


def _trailing_comma_neutral(tokens: list[Token], group: _Group) -> bool:
    """A trailing comma changes nothing in a call, a definition, a list, a set or a dict, nor after a
    second element; `(a,)` and `x[a,]` are tuples, `(a)` and `x[a]` are not."""
    opener = tokens[group.opener].text
    if opener == "{" or len(group.commas) > 1:
        return True
    after_value = _ends_value(tokens, group.opener - 1)
    return (opener == "(" and after_value) or (opener == "[" and not after_value)


def _redundant(tokens: list[Token], group: _Group, dropped: set[int]) -> bool:
    """Parentheses around a statement's whole value, which black adds and removes."""
    if tokens[group.opener].text != "(" or group.closer == group.opener + 1 or group.generator:
        return False
    before = _neighbour(tokens, group.opener, -1, dropped)
    after = _neighbour(tokens, group.closer, 1, dropped)
    if before < 0:  # `(a)` alone as an expression statement
        return after >= len(tokens) and not group.commas
    return not _ends_value(tokens, before) and _whole(tokens, group, before, after)  # not a call


def _whole(tokens: list[Token], group: _Group, before: int, after: int) -> bool:
    """Whether the parentheses between `before` and `after` hold all of what the statement's word before
    them takes."""
    previous = tokens[before].text
    following = tokens[after].text if after < len(tokens) else "NEWLINE"
    header_end = following == ":" and _header_colon(tokens) == after
    if previous in _WHOLE_VALUE or previous in _AUGMENTED:  # x = (...), return (...), x += (...)
        return following == "NEWLINE"
    if (previous in ("if", "elif", "while") and before == 0) or previous == "->":
        return header_end and not group.commas
    if previous == "assert":
        return before == 0 and following in ("NEWLINE", ",") and not group.commas
    if previous == ":" and tokens[0].text not in _COMPOUND and before == _header_colon(tokens):  # x: (...) = v
        return following in ("=", "NEWLINE") and not group.commas
    return _loop_part(tokens, before, previous, following, header_end)


def _loop_part(tokens: list[Token], before: int, previous: str, following: str, header_end: bool) -> bool:
    """`for (a, b) in (c):` is `for a, b in c:`."""
    loop = tokens[0].text == "for" or (tokens[0].text == "async" and len(tokens) > 1 and tokens[1].text == "for")
    if not loop:
        return False
    if previous == "for":
        return before <= 1 and following == "in"
    return previous == "in" and before == _first(tokens, "in") and header_end  # the loop's `in`, not a test


def _first(tokens: list[Token], word: str) -> int:
    """The index of the first `word` outside brackets."""
    depth = 0
    for index, token in enumerate(tokens):
        if token.kind == "op" and token.text in CLOSERS:
            depth += 1
        elif token.kind == "op" and token.text in OPENERS:
            depth -= 1
        elif depth == 0 and token.kind == "name" and token.text == word:
            return index
    return -1


def _neighbour(tokens: list[Token], index: int, step: int, dropped: set[int]) -> int:
    index += step
    while 0 <= index < len(tokens) and index in dropped:
        index += step
    return index


def _class_parentheses(tokens: list[Token], dropped: set[int]) -> None:
    """`class A():` is `class A:`."""
    if len(tokens) >= 4 and tokens[0].text == "class" and tokens[2].text == "(" and tokens[3].text == ")":
        dropped.update((2, 3))
