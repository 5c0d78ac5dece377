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

The passes, in order: the tokens (migrator.source_tokens), logical lines with one-liners split and docstrings
dropped (migrator.source_lines), then within each line trailing commas and redundant parentheses
(migrator.source_brackets).
"""

from __future__ import annotations

import hashlib

ALGORITHM = "t1"


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
    from migrator.source_tokens import SEPARATOR  # noqa: PLC0415  (see normalized)

    tokens = normalized(text)
    digest = hashlib.sha256(SEPARATOR.join(tokens).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{ALGORITHM}:{digest}"


def normalized(text: str) -> list[str]:
    """The tokens that count, as hashed (for tests and for saying what differs)."""
    # The passes are imported here, when a checksum is computed (a file new to the manifest, or changed):
    # every migrate reads ALGORITHM (migrator.validation), and the scanners cost a start more than that.
    from migrator.source_brackets import tidy  # noqa: PLC0415
    from migrator.source_lines import drop_docstrings, logical_lines, split_one_liners  # noqa: PLC0415
    from migrator.source_tokens import scan  # noqa: PLC0415

    lines = logical_lines(scan(text))
    lines = split_one_liners(lines)
    drop_docstrings(lines)
    out: list[str] = []
    for line in lines:
        out.extend(token.text for token in tidy(line))
    return out

