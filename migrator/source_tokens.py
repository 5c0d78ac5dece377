"""The checksum's tokenizer: the tokens of a revision file, whitespace and comments dropped, literals by value.

Why not the `tokenize` module: its tokens for f-strings changed in Python 3.12 (PEP 701). This scanner reads
source that compiles the same way on every Python version from 3.11 on, and its output depends on nothing
else. It places NEWLINE, INDENT and DEDENT as Python's tokenizer does, gives strings and numbers in a canonical
form (`'a'`, `"a"` and `u'\\x61'` are one string, `0xff` and `255` one number), and reads f-strings (and
t-strings) token by token: their literal text as written, their replacement fields tokenised.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

SEPARATOR = "\x1f"  # between tokens in the hashed text: no token can contain it outside a string value
CLOSERS = {"(": ")", "[": "]", "{": "}"}
OPENERS = {")": "(", "]": "[", "}": "{"}

_STRING_BODY = (r"'''(?:[^'\\]++|\\[\s\S]|'(?!''))*+'''"
                r'|"""(?:[^"\\]++|\\[\s\S]|"(?!""))*+"""'
                r"|'(?:[^'\\\n]++|\\[\s\S])*+'"
                r'|"(?:[^"\\\n]++|\\[\s\S])*+"')
_NUMBER = (r"0[xX](?:_?[0-9a-fA-F])++|0[bB](?:_?[01])++|0[oO](?:_?[0-7])++"
           r"|(?:(?:\d(?:_?\d)*+)?\.\d(?:_?\d)*+|\d(?:_?\d)*+\.?)(?:[eE][+-]?\d(?:_?\d)*+)?[jJ]?")
_OPERATORS = (r"\*\*=|//=|>>=|<<=|\.\.\.|->|:=|==|!=|<=|>=|\*\*|//|<<|>>|[-+*/%&|^@]="
              r"|[-+*/%&|^~<>()\[\]{},:;.=@!]")
# One token after whatever space, comment or backslash continuation precedes it (nothing at the end).
_TOKEN = re.compile(
    r"(?:[ \t\f]++|\\\n|\#[^\n]*+)*+(?:"
    r"(?P<newline>\n)"
    rf"|(?P<string>(?:[rR][bB]|[bB][rR]|[rRbBuU])?(?:{_STRING_BODY}))"
    r"|(?P<fstring>(?:[fFtT][rR]?|[rR][fFtT])(?='|\"))"
    rf"|(?P<number>{_NUMBER})"
    r"|(?P<name>\w++)"
    rf"|(?P<op>{_OPERATORS}|\S))?")
_PLAIN_STRING = re.compile(rf"(?:[rR][bB]|[bB][rR]|[rRbBuU])?(?:{_STRING_BODY})")


class Token(NamedTuple):
    kind: str  # name, number, string, fstring, op, NEWLINE, INDENT, DEDENT
    text: str  # as hashed: a value's canonical form, an f-string's parts


# --- the scanner ----------------------------------------------------------------------------------------

def scan(text: str) -> Iterator[Token]:
    """Tokens with NEWLINE, INDENT and DEDENT as Python's tokenizer places them; whitespace and comments
    dropped, literals in canonical form."""
    pos, end, depth = 0, len(text), 0
    indents = [0]
    line_start = True
    while pos < end:
        if line_start and depth == 0:
            pos, width, blank = _indentation(text, pos)
            if blank:  # a blank or comment-only line: the next one starts a line too
                continue
            line_start = False
            yield from _indent_tokens(indents, width)
        match = _TOKEN.match(text, pos)
        assert match is not None  # everything is optional
        kind = match.lastgroup
        pos = match.end()
        if kind is None:
            continue  # space or a comment up to the end of the text
        value = match[kind]
        if kind == "newline":
            line_start = depth == 0  # inside brackets a line break is only space
            if depth == 0:
                yield Token("NEWLINE", "NEWLINE")
            continue
        if kind == "fstring":
            pos, parts = _fstring(text, pos, value)
            yield Token("fstring", "".join(parts))
            continue
        if kind == "op":
            if value in CLOSERS:
                depth += 1
            elif value in OPENERS and depth > 0:
                depth -= 1
            yield Token(kind, value)
        else:
            yield Token(kind, _canonical(kind, value))
    yield Token("NEWLINE", "NEWLINE")
    yield from _indent_tokens(indents, 0)


def _indentation(text: str, pos: int) -> tuple[int, int, bool]:
    """(position after the indentation, its width as Python counts it, whether the line is blank)."""
    width = 0
    while pos < len(text):
        char = text[pos]
        if char == " ":
            width += 1
        elif char == "\t":
            width = (width // 8 + 1) * 8
        elif char == "\f":
            width = 0
        else:
            break
        pos += 1
    if pos >= len(text) or text[pos] == "\n":
        return pos + 1, width, True
    if text[pos] == "#":
        newline = text.find("\n", pos)
        return (len(text) if newline < 0 else newline + 1), width, True
    if text.startswith("\\\n", pos):  # a continuation on a line of its own joins the next line
        return pos + 2, width, True
    return pos, width, False


def _indent_tokens(indents: list[int], width: int) -> Iterator[Token]:
    if width > indents[-1]:
        indents.append(width)
        yield Token("INDENT", "INDENT")
    while width < indents[-1]:
        indents.pop()
        yield Token("DEDENT", "DEDENT")


def _canonical(kind: str, value: str) -> str:
    if kind == "name":
        return unicodedata.normalize("NFKC", value) if not value.isascii() else value
    if kind in ("string", "number"):
        return _literal(value)
    return value


def _literal(value: str) -> str:
    """A string or number by its value: `'a'`, `"a"` and `u'\\x61'` are one string, `0xff` and `255` one number."""
    if value.isdigit():
        return repr(int(value))
    if value[0] in "'\"" and "\\" not in value:  # no prefix, no escape: the body is the value (the usual case)
        quote = 3 if value[:3] in ("'''", '"""') else 1
        return repr(value[quote:-quote])
    import ast  # noqa: PLC0415  (escapes, prefixes, floats: rarer)

    try:
        return repr(ast.literal_eval(value))
    except (ValueError, SyntaxError, MemoryError, RecursionError):  # an int too long to print, say
        return value


# --- f-strings (and t-strings): their extent by PEP 701's rules, their fields tokenised ---------------------

def _fstring(text: str, pos: int, prefix: str) -> tuple[int, list[str]]:
    """The end of the f-string whose quote starts at `pos`, and its parts: the prefix's letters (lower case,
    sorted), each literal part as written, each replacement field's normalised tokens."""
    quote = text[pos:pos + 3] if text[pos:pos + 3] in ("'''", '"""') else text[pos]
    raw = "r" in prefix.lower()
    parts = ["f:" + "".join(sorted(prefix.lower())) + ":"]
    pos += len(quote)
    literal_start = pos
    while pos < len(text):
        if text.startswith(quote, pos):
            parts.append(text[literal_start:pos])
            return pos + len(quote), parts
        char = text[pos]
        if char == "\\":
            pos = _escape_end(text, pos, raw)
        elif char in "{}" and text.startswith(char * 2, pos):
            pos += 2
        elif char == "{":
            parts.append(text[literal_start:pos])
            pos = _field(text, pos + 1, parts)
            literal_start = pos
        else:
            pos += 1
    return pos, parts  # unterminated: the file does not compile, and its text is all there is


def _escape_end(text: str, pos: int, raw: bool) -> int:
    if not raw and text.startswith("\\N{", pos):
        close = text.find("}", pos)
        return len(text) if close < 0 else close + 1
    return pos + 2


def _field(text: str, pos: int, parts: list[str]) -> int:
    """One replacement field from after its `{`: its expression (tokenised, or as written when it ends in
    `=`, whose text is printed), conversion and format spec; the position after its `}`."""
    start, depth = pos, 0
    while pos < len(text):
        char = text[pos]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and (char == ":" or (char == "!" and not text.startswith("!=", pos))):
            break
        elif char in "'\"":
            pos = _nested_string_end(text, pos)
            continue
        elif char == "#":
            newline = text.find("\n", pos)
            pos = len(text) if newline < 0 else newline
            continue
        pos += 1
    expression = text[start:pos]
    if re.search(r"(?<![=!<>:])=\s*$", expression):  # f"{x = }" prints its expression's text
        parts.append("{=" + expression)
    else:
        parts.append("{" + SEPARATOR.join(t.text for t in scan(expression) if t.kind not in
                                           ("NEWLINE", "INDENT", "DEDENT")))
    return _field_tail(text, pos, parts)


def _field_tail(text: str, pos: int, parts: list[str]) -> int:
    """After a field's expression: `!r`, `:spec` (which may hold nested fields), then `}`."""
    if pos < len(text) and text[pos] == "!":
        parts.append(text[pos:pos + 2])
        pos += 2
    if pos < len(text) and text[pos] == ":":
        literal_start = pos
        while pos < len(text) and text[pos] != "}":
            if text[pos] == "{":
                parts.append(text[literal_start:pos])
                pos = _field(text, pos + 1, parts)
                literal_start = pos
            else:
                pos += 1
        parts.append(text[literal_start:pos])
    parts.append("}")
    return pos + 1


def _nested_string_end(text: str, pos: int) -> int:
    """The end of a string inside a replacement field: an f-string itself, or a plain one."""
    start = pos
    while start > 0 and text[start - 1].isalpha():
        start -= 1
    prefix = text[start:pos]
    if "f" in prefix.lower() or "t" in prefix.lower():
        return _fstring(text, pos, prefix)[0]
    match = _PLAIN_STRING.match(text, pos)
    return match.end() if match else pos + 1

