"""The checksum's brackets, within one logical line: trailing commas and parentheses that change nothing.

A trailing comma is dropped where it changes nothing (calls, definitions, lists, sets, dicts, tuples of two or
more); so are parentheses that only wrap a whole statement's value (`x = (...)`, `return (...)`, `if (...):`,
`for (...) in (...):`, `del (...)`, `-> (...)`, `x: (...) = ...`) and the empty parentheses of `class A():`.
black and `ruff format` add and remove all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.source_lines import AUGMENTED, COMPOUND, Line, header_colon
from migrator.source_tokens import CLOSERS, OPENERS, Token

# Hard keywords of Python 3.11 to 3.14 (the list has not changed since 3.7); fixed here so that it cannot
# change under the checksum with the interpreter.
KEYWORDS = frozenset({
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"})
_WHOLE_VALUE = frozenset({"=", "return", "yield", "del"})  # what the rest of the statement follows, whole


@dataclass
class _Group:
    opener: int
    closer: int
    commas: list[int]  # the group's own commas (not those of nested groups, nor a lambda's parameters')
    generator: bool  # a `for` at the group's own level: a comprehension or generator expression
    lambdas: int = 0  # lambdas at the group's own level whose `:` is still to come


def tidy(line: Line) -> list[Token]:
    """The line as hashed: the INDENT and DEDENT tokens before it, its tokens less the commas and parentheses
    that change nothing, and its NEWLINE."""
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
    header_end = following == ":" and header_colon(tokens) == after
    if previous in _WHOLE_VALUE or previous in AUGMENTED:  # x = (...), return (...), x += (...)
        return following == "NEWLINE"
    if (previous in ("if", "elif", "while") and before == 0) or previous == "->":
        return header_end and not group.commas
    if previous == "assert":
        return before == 0 and following in ("NEWLINE", ",") and not group.commas
    if previous == ":" and tokens[0].text not in COMPOUND and before == header_colon(tokens):  # x: (...) = v
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
