"""The checksum's logical lines, and what reformatting changes from one line to another.

The tokens (migrator.source_tokens) are grouped into logical lines, each with the INDENT and DEDENT tokens
before it. Then what black, `ruff format` or a hand edit of the layout changes is undone: implicit
concatenation of strings is the one string, a compound statement's body written on its header's line
(`if x: y`, `a; b`) is the body on lines of its own, and a module's, class's or function's docstring is
documentation, like a comment: its text does not count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from migrator.source_tokens import CLOSERS, Token

# What opens a compound statement, and the augmented assignments (`match += 1` is no match statement).
COMPOUND = frozenset({"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class",
                      "async"})
AUGMENTED = frozenset({"+=", "-=", "*=", "/=", "//=", "%=", "**=", ">>=", "<<=", "&=", "^=", "|=", "@="})


@dataclass
class Line:
    """One logical line: the INDENT/DEDENT tokens before it, its tokens, and its NEWLINE."""

    before: list[Token] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)


def logical_lines(tokens: Iterator[Token]) -> list[Line]:
    lines: list[Line] = []
    current = Line()
    for token in tokens:
        if token.kind in ("INDENT", "DEDENT"):
            current.before.append(token)
        elif token.kind == "NEWLINE":
            if current.tokens:
                lines.append(current)
                current = Line()
        else:
            current.tokens.append(token)
    if current.before:
        lines.append(current)
    return _merge_strings(lines)


def _merge_strings(lines: list[Line]) -> list[Line]:
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


def split_one_liners(lines: list[Line]) -> list[Line]:
    """`if x: y` as `if x:` and an indented `y`; `case` counts as a keyword only in a match block."""
    out: list[Line] = []
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
        colon = header_colon(line.tokens) if opening else -1
        if colon < 0 or colon == len(line.tokens) - 1:
            out.extend(_statements(line.before, line.tokens))
            continue
        out.append(Line(line.before, line.tokens[:colon + 1]))
        out.extend(_statements([Token("INDENT", "INDENT")], line.tokens[colon + 1:]))
        closing = [Token("DEDENT", "DEDENT")]
        opening = ""
    if closing:
        out.append(Line(closing, []))
    return out


def _statements(before: list[Token], tokens: list[Token]) -> Iterator[Line]:
    """`a; b` is `a` and `b` on lines of their own."""
    start = 0
    for index, token in enumerate([*tokens, Token("op", ";")]):
        if token.kind == "op" and token.text == ";":
            if index > start:
                yield Line(before, tokens[start:index])
                before = []
            start = index + 1
    if before:
        yield Line(before, [])


def _header(tokens: list[Token], *, in_match: bool) -> str:
    """The compound statement this line opens ('' when none): its keyword, or `match`."""
    if not tokens or tokens[0].kind != "name":
        return ""
    first = tokens[0].text
    if first in COMPOUND:
        return first
    follows = tokens[1].text if len(tokens) > 1 else ""
    ends_block = tokens[-1].kind == "op" and tokens[-1].text == ":"
    if first == "match" and ends_block and follows not in (":", "=", ".") and follows not in AUGMENTED:
        return "match"
    if first == "case" and in_match and follows not in (":", "="):
        return "case"
    return ""


def header_colon(tokens: list[Token]) -> int:
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


def drop_docstrings(lines: list[Line]) -> None:
    """A module's, class's or function's docstring is documentation: its text does not count."""
    previous_opens_body = True  # the module's first statement
    for line in lines:
        indented = any(t.kind == "INDENT" for t in line.before)
        if (previous_opens_body and (indented or line is lines[0]) and len(line.tokens) == 1
                and line.tokens[0].kind == "string"):
            line.tokens = [Token("string", "DOCSTRING")]
        first = line.tokens[0].text if line.tokens else ""
        previous_opens_body = first in ("def", "class", "async") and line.tokens[-1].text == ":"
