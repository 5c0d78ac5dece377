"""Keep passwords out of everything the migrator prints: logs, errors and the termination message.

Masking is structural: a password is masked where the text says it is one, and nowhere else, so that a
password that is also a user name, a revision id, a common word or a single letter cannot garble the rest of
the line (replacing every occurrence of the password did: `e` turned `[error]` into `[***rror]`). The places:

- a URL's userinfo: `scheme://user:PASSWORD@host`, to the token's last `@` (a raw `@` in a password);
- a URL query parameter: `?password=PASSWORD&...`;
- a libpq keyword/value pair or an environment dump: `password=PASSWORD`, `password = 'PASS WORD'`,
  `PGPASSWORD=...` (quoted values to their closing quote, unquoted ones to the next white space);
- a Python or JSON mapping: `'password': 'PASSWORD'`, `"db_password": "PASSWORD"` (SQLAlchemy's
  `[parameters: {...}]`);
- SQL: `CREATE|ALTER ROLE|USER ... [ENCRYPTED] PASSWORD 'PASSWORD'` (also as PostgreSQL quotes a statement
  in `LINE 1: ...`, possibly cut off before the closing quote), and dollar-quoted `PASSWORD $$...$$`.

libpq and psycopg quote no password in their own messages once the URL is parsed by migrator.database_url
(libpq's URL parser quoted the offending token). `redact` runs on every log line: a line with neither `://`
nor the word "password" is returned after two substring tests.
"""

from __future__ import annotations

import re

MASK = "***"
_URL_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^\s]+(?=@)", re.IGNORECASE)
_WORD = re.compile("password", re.IGNORECASE)
_SINGLE = r"'(?:[^'\\]|\\.|'')*"  # SQL doubles a quote; conninfo and E'' escape it with a backslash
_DOUBLE = r'"(?:[^"\\]|\\.)*'
# What may follow the word "password" when a password follows it; matched at each occurrence of the word.
_AFTER_WORD = re.compile(rf"""
      \s*=\s*(?P<value>{_SINGLE}'?|{_DOUBLE}"?|[^\s'"]\S*)            # password=..., = '...' (unterminated: all)
    | (?P<q>["'])\s*:\s*(?P<quoted>{_SINGLE}'|{_DOUBLE}")             # 'password': '...' (the key's quote: q)
    | \s+(?P<prefix>E|U&|N)?(?P<sql>['$])                             # SQL PASSWORD '...', E'', U&'', $$...$$
    """, re.IGNORECASE | re.VERBOSE)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")
_QUERY_VALUE = re.compile(r"[^&#\s]+")


def redact(text: str) -> str:
    """`text` with every password in a password position masked; everything else unchanged."""
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(r"\g<head>" + MASK, text)
    if "password" in text.lower():
        text = _mask_after_word(text)
    return text


def _mask_after_word(text: str) -> str:
    parts: list[str] = []
    done = 0
    for word in _WORD.finditer(text):
        if word.start() < done:
            continue  # inside a value masked already
        span = _value_span(text, word.start(), word.end())
        if span is not None:
            parts += [text[done:span[0]], MASK]
            done = span[1]
    return "".join(parts) + text[done:] if parts else text


def _value_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span to mask after the word "password" at text[start:end], or None when no password follows it."""
    found = _AFTER_WORD.match(text, end)
    if found is None:
        return None
    key_start = start
    while key_start > 0 and (text[key_start - 1].isalnum() or text[key_start - 1] == "_"):
        key_start -= 1  # PGPASSWORD, db_password
    before = text[key_start - 1] if key_start else ""
    if found["value"] is not None:
        if before in ("?", "&") and key_start == start:  # a URL's ?password=...&sslmode=...
            value = _QUERY_VALUE.match(text, found.start("value"))
            return (value.start(), value.end()) if value else None
        return found.span("value")
    if found["quoted"] is not None:  # the key must be quoted as a whole: "db_password": "..."
        return _inside_quotes(found.span("quoted")) if before == found["q"] else None
    return _sql_span(text, found) if key_start == start else None  # SQL's keyword is the whole word PASSWORD


def _sql_span(text: str, found: re.Match[str]) -> tuple[int, int] | None:
    """Inside the literal that follows SQL's PASSWORD: quoted, dollar-quoted, or quoted within quotes."""
    at = found.start("sql")
    if text[at] == "$":
        tag = _DOLLAR_TAG.match(text, at)
        if tag is None:
            return None  # `PASSWORD $1`: a parameter, no password in the text
        close = text.find(tag.group(), tag.end())
        return tag.end(), close if close >= 0 else _line_end(text, tag.end())
    return _quoted_span(text, at, escapes=(found["prefix"] or "").upper() == "E")


def _quoted_span(text: str, at: int, escapes: bool) -> tuple[int, int]:
    """The contents of the quoted literal that starts at `at`, at any depth of quoting.

    SQL doubles a quote inside a literal, so a literal written inside a literal (a DO block's EXECUTE of
    `ALTER ROLE x PASSWORD ''secret''`) opens with two quotes, and one more level down with four: the depth is
    the lowest set bit of the opening run's length (an odd run is a literal of depth 1 whose text starts with a
    quote). Inside, a run of quotes that is a multiple of twice the depth is text; any other run ends the
    literal. A literal cut short (an error's excerpt of a statement) is masked to the end of its line."""
    depth = _quote_run(text, at) & -_quote_run(text, at)
    start = i = at + depth
    while i < len(text):
        char = text[i]
        if char == "\n":
            return start, i
        if char == "\\" and escapes and depth == 1 and text[i + 1:i + 2] != "\n":  # E'...': escapes the next one
            i += 2
            continue
        if char != "'":
            i += 1
            continue
        run = _quote_run(text, i)
        rest = run % (2 * depth)
        if rest:
            return start, i + run - rest
        i += run
    return start, len(text)


def _quote_run(text: str, at: int) -> int:
    end = at
    while end < len(text) and text[end] == "'":
        end += 1
    return end - at


def _line_end(text: str, at: int) -> int:
    newline = text.find("\n", at)
    return newline if newline >= 0 else len(text)


def _inside_quotes(span: tuple[int, int]) -> tuple[int, int]:
    return span[0] + 1, span[1] - 1


def reason(exc: BaseException) -> str:
    """libpq's multi-line message as one redacted line (the driver's own words, without SQLAlchemy's
    statement and parameters)."""
    exc = getattr(exc, "orig", None) or exc
    text = " ".join(str(exc).split()).removeprefix("connection failed: ")
    return redact(text) or type(exc).__name__
