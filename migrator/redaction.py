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
    | \s+E?(?P<sql>'(?:[^'\\\n]|\\.|'')*(?:'|$)                        # SQL PASSWORD '...' (cut short: the line)
                   |\$(?P<tag>\w*)\$.*?(?:\$(?P=tag)\$|$))             # SQL PASSWORD $$...$$
    """, re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
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


def _sql_span(text: str, found: re.Match[str]) -> tuple[int, int]:
    """Inside the quotes of PASSWORD '...' or $tag$...$tag$; to the end when the excerpt cut the literal short."""
    start, end = found.span("sql")
    quote = f"${found['tag']}$" if found["tag"] is not None else "'"
    closed = end - start >= 2 * len(quote) and text.endswith(quote, start, end)
    return start + len(quote), end - (len(quote) if closed else 0)


def _inside_quotes(span: tuple[int, int]) -> tuple[int, int]:
    return span[0] + 1, span[1] - 1
