"""The one SQL tokenizer: how migrator reads the text a migration or seed sends, for every description and every
decision made about it (migrator.statements: what it does, whether it ends the transaction, runs CONCURRENTLY,
names an index).

PostgreSQL's lexical rules, as far as they matter here: string constants (standard, E'' escapes, dollar-quoted
bodies, tagged or not), quoted identifiers (doubled quotes inside), line and block comments, and `;` between
statements only outside all of those. A text cut short (a long statement's head) is read as far as it goes.
"""

from __future__ import annotations

import re

_IDENT = r'(?:"(?:[^"]|"")*"?|[^\W\d][\w$]*)'
_OPCHARS = r"[+\-*/<>=~!@#%^&|`?]"
TOKEN = re.compile(  # findall: (blanks and comments before the token, the token)
    r"((?:\s+|--[^\n]*|/\*.*?(?:\*/|\Z))*+)"
    r"([^\W\d][\w$]*+(?![.'\"])|[(),;]"  # the most common first: a plain word, punctuation
    r"|[Ee]'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?"  # strings, also when the head cuts them off
    r"|\$\$.*?(?:\$\$|\Z)|\$[^\W\d]\w*\$"  # a body; a tagged one is never read past its tag
    rf"|{_IDENT}(?:\.{_IDENT})*(?:\.(?:\*|{_OPCHARS}+))?"  # names: users, public."Users", t.*, public.!=
    rf"|%\(\w+\)s|%s|\$\d+|::|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+|{_OPCHARS}+|\S)",
    re.DOTALL,
)
# Splits a text holding several statements; strings, quoted names, bodies and comments may contain `;`.
_LEXEME = re.compile(r"[Ee]'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?"
                     r"|\$(?P<tag>[^\W\d]\w*|)\$.*?(?:\$(?P=tag)\$|\Z)|--[^\n]*|/\*.*?(?:\*/|\Z)|[^\W\d][\w$]*|;",
                     re.DOTALL)
MORE = re.compile(r";\s*\S")
VERB = re.compile(r"[A-Za-z]+")  # a statement's first word
LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?(?:\*/|\Z))*+", re.DOTALL)  # blanks and comments


def statements(sql: str) -> list[str]:
    """The statements of a text that holds several; strings, quoted names, bodies and comments may hold `;`."""
    parts, start = [], 0
    for m in _LEXEME.finditer(sql):
        if m.end() - m.start() == 1 and sql[m.start()] == ";":
            parts.append(sql[start:m.start()])
            start = m.end()
    parts.append(sql[start:])
    return [part for part in parts if not LEADING.fullmatch(part)]
