"""The one SQL tokenizer: how migrator reads the text a migration or seed sends, for every description and every
decision made about it (migrator.statements: what it does, whether it ends the transaction, runs CONCURRENTLY,
names an index).

PostgreSQL's lexical rules, as far as they matter here: string constants (standard, E'' escapes, dollar-quoted
bodies, tagged or not), quoted identifiers (doubled quotes inside), line and block comments, and `;` between
statements only outside all of those. A text cut short (a long statement's head) is read as far as it goes.
"""

from __future__ import annotations

import re
import string

HEADS = (96, 240, 600)  # characters of a statement read to describe it: more only when a description needs more
ACTION_CAP = 60  # one action of an ALTER, rendered
NAME_BYTES = 63  # PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes
_PART = re.compile(r'"((?:[^"]|"")*)"?|([^."]+)')
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # PostgreSQL folds ASCII letters only

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


# --- the words of a statement's head -------------------------------------------------------------------------

class Words:
    """The tokens of a statement's head, comments dropped; `blanks[k]` is what preceded token k (maybe "").

    Reads the statement a part at a time: most descriptions need its first few words only. Every access goes
    through `has(k)`, which reads on when token k lies beyond what was read and the statement goes on.
    """

    __slots__ = ("blanks", "cut", "first", "part", "pos", "sql", "words")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.words: list[str] = []
        self.blanks: list[str] = []  # what precedes each token: blanks, comments or nothing
        leading = LEADING.match(sql)
        self.first = self.pos = leading.end() if leading else 0
        self.part = -1
        self.cut = True  # nothing read yet

    def _read(self) -> None:
        self.part += 1
        end = self.first + HEADS[self.part]
        found = TOKEN.findall(self.sql, self.pos, end)
        self.cut = len(self.sql) > end
        if self.cut and found and self.part < len(HEADS) - 1:
            found.pop()  # the head may have cut it short: read it again with the next part
        if found:
            blanks, words = zip(*found, strict=True)
            self.words += words
            self.blanks += blanks
            if self.cut:
                self.pos += sum(map(len, blanks)) + sum(map(len, words))

    def has(self, k: int) -> bool:
        return k < len(self.words) or self._more(k)

    def _more(self, k: int) -> bool:
        while k >= len(self.words) and self.cut and self.part < len(HEADS) - 1:
            self._read()
        return k < len(self.words)

    def word(self, k: int) -> str:
        return self.words[k] if k < len(self.words) or self._more(k) else ""

    def up(self, k: int) -> str:
        return self.words[k].upper() if k < len(self.words) or self._more(k) else ""

    def name(self, k: int) -> str:
        return folded_name(self.words[k]) if k < len(self.words) or self._more(k) else ""

    def skip(self, k: int, words: set[str]) -> int:
        while self.has(k) and self.words[k].upper() in words:
            k += 1
        return k

    def find(self, k: int, word: str, end: int | None = None) -> int | None:
        """The first `word` at or after k (and before `end`), outside parentheses."""
        depth = 0
        while self.has(k) and (end is None or k < end):
            here = self.words[k]
            if here == "(":
                depth += 1
            elif here == ")":
                depth -= 1
            elif depth == 0 and here.upper() == word:
                return k
            k += 1
        return None

    def close(self, k: int) -> int:
        """Just past the `)` that closes the `(` at k (or the end of the head)."""
        depth = 0
        while self.has(k):
            if self.words[k] == "(":
                depth += 1
            elif self.words[k] == ")":
                depth -= 1
                if depth == 0:
                    return k + 1
            k += 1
        return k

    def render(self, start: int, end: int | None = None, cap: int = ACTION_CAP) -> str:
        """The words as written, names folded as PostgreSQL folds them, at most `cap` characters."""
        out: list[str] = []
        k = start
        while self.has(k) and (end is None or k < end) and len(out) < 2 * cap:
            token = self.words[k]
            if out and self.blanks[k]:
                out.append(" ")
            out.append(token if token[0] in "'$" or token[0].isdigit() or token[1:2] == "'" else folded_name(token))
            k += 1
        return capped("".join(out), cap)


def folded_name(token: str) -> str:
    """The identifier as PostgreSQL sees it: unquoted parts fold to lower case, quoted ones keep theirs."""
    if '"' not in token:
        name = token.translate(_FOLD)
        if len(name) <= NAME_BYTES and name.isascii():
            return name
    return ".".join(name_parts(token))


def name_parts(token: str) -> list[str]:
    """`public."Users"` -> ["public", "Users"]; each part truncated as PostgreSQL truncates it."""
    return [truncate(quoted.replace('""', '"') if quoted else bare.translate(_FOLD))
            for quoted, bare in _PART.findall(token)]


def truncate(part: str) -> str:
    raw = part.encode()
    return part if len(raw) <= NAME_BYTES else raw[:NAME_BYTES].decode(errors="ignore")


def capped(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 3] + "..."


def split_parts(w: Words, start: int) -> list[tuple[int, int]]:
    """The comma-separated parts from `start` to the end of the head, outside parentheses."""
    parts, depth, begin, k = [], 0, start, start
    while w.has(k):
        token = w.words[k]
        if token in ("(", "["):
            depth += 1
        elif token in (")", "]"):
            depth -= 1
        elif depth == 0 and token in (",", ";"):
            parts.append((begin, k))
            begin = k + 1
        k += 1
    parts.append((begin, k))
    return [(a, b) for a, b in parts if a < b]
