"""What one SQL statement does, in Ecto's words: `create table users`, `create index users_email_index`.

Pure text work on the statement a migration sent, so that raw `op.execute()` SQL is described as well as
Alembic's own operations. Reads only the statement's head; never fails (unknown shapes fall back to
Ecto's `execute "..."`).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from migrator.logs import get_logger

_TOKEN = re.compile(r'"(?:[^"]|"")*"(?:\.(?:"(?:[^"]|"")*"|[A-Za-z_][\w$]*))*'
                    r'|[A-Za-z_][\w$]*(?:\.(?:"(?:[^"]|"")*"|[A-Za-z_][\w$]*))*|\S')
_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
_BEFORE_KIND = {"UNIQUE", "OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL"}
_AFTER_KIND = {"CONCURRENTLY", "IF", "NOT", "EXISTS", "ONLY"}
_TWO_WORD_KINDS = {"MATERIALIZED", "FOREIGN", "EVENT"}
# Reads and transaction control change nothing by themselves: logged at debug only.
_QUIET = {"SELECT", "WITH", "SHOW", "SET", "RESET", "VALUES", "EXPLAIN", "BEGIN", "COMMIT", "ROLLBACK",
          "SAVEPOINT", "RELEASE", "START", "END"}
_DML = {"INSERT": "INTO", "DELETE": "FROM", "UPDATE": None, "TRUNCATE": None, "COPY": None}
_ALTER_ACTIONS = {"ADD", "DROP", "ALTER", "RENAME", "VALIDATE", "ATTACH", "DETACH", "ENABLE", "DISABLE",
                  "OWNER", "SET"}
_SUBJECTS = {"COLUMN", "CONSTRAINT", "TO", "PARTITION", "TRIGGER"}
EXECUTE_PREVIEW = 60


class Operation(NamedTuple):
    """`text` in Ecto's words; `table` the object it names; `quiet` when it changes nothing (debug only)."""

    text: str
    table: str | None
    quiet: bool = False

    def touches(self, table: str) -> bool:
        """True when it names `table`, schema-qualified or not."""
        return self.table is not None and self.table.rsplit(".", 1)[-1] == table


def log_statement(statement: str, bookkeeping_table: str, **context: Any) -> None:
    """One log line for a statement a migration or seed executes; upkeep of `bookkeeping_table` is not one."""
    op = describe(statement)
    if op.touches(bookkeeping_table):
        return
    log = get_logger()
    (log.debug if op.quiet else log.info)(op.text, **context)


def _tokens(sql: str) -> list[str]:
    head = _COMMENTS.sub("", sql, count=1)[:400]
    return _TOKEN.findall(head)


def _name(token: str) -> str:
    """The identifier as PostgreSQL sees it: unquoted parts fold to lower case, quoted ones keep theirs."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', token)
    return ".".join(quoted.replace('""', '"') if quoted else bare.lower() for quoted, bare in parts)


def _skip(tokens: list[str], i: int, words: set[str]) -> int:
    while i < len(tokens) and tokens[i].upper() in words:
        i += 1
    return i


def describe(sql: str) -> Operation:
    """Describe one statement; anything unrecognised becomes `execute "<first words>"`."""
    tokens = _tokens(sql)
    if not tokens:
        return Operation('execute ""', None, quiet=True)
    verb = tokens[0].upper()
    described = None
    if verb in ("CREATE", "DROP", "ALTER"):
        described = _ddl(verb, tokens)
    elif verb in _DML:
        described = _dml(verb, tokens)
    elif verb == "COMMENT" and len(tokens) >= 4:
        described = Operation(f"comment on {tokens[2].lower()} {_name(tokens[3])}", _name(tokens[3]))
    if described is not None:
        return described
    preview = " ".join(sql.split())
    if len(preview) > EXECUTE_PREVIEW:
        preview = preview[: EXECUTE_PREVIEW - 3] + "..."
    return Operation(f'execute "{preview}"', None, quiet=verb in _QUIET)


def _ddl(verb: str, tokens: list[str]) -> Operation | None:
    i = _skip(tokens, 1, _BEFORE_KIND)
    if i >= len(tokens):
        return None
    kind = tokens[i].upper()
    if kind in _TWO_WORD_KINDS and i + 1 < len(tokens):
        i += 1
        kind = f"{kind} {tokens[i].upper()}"
    i = _skip(tokens, i + 1, _AFTER_KIND)
    if i >= len(tokens):
        return None
    if kind == "INDEX" and tokens[i].upper() == "ON":  # an unnamed index: name its table instead
        return Operation(f"{verb.lower()} index on {_name(tokens[i + 1])}" if i + 1 < len(tokens) else "", None)
    name = _name(tokens[i])
    text = f"{verb.lower()} {kind.lower()} {name}"
    table = name if kind == "TABLE" else None
    if kind == "INDEX":
        on = next((j for j in range(i + 1, len(tokens) - 1) if tokens[j].upper() == "ON"), None)
        if on is not None:
            table = _name(tokens[_skip(tokens, on + 1, {"ONLY"})])
    if verb == "ALTER" and kind == "TABLE":
        text += _alter_action(tokens, i + 1)
    return Operation(text, table)


def _alter_action(tokens: list[str], i: int) -> str:
    """` add column bio`, ` drop constraint users_email_key`, ` rename to people` ..."""
    if i >= len(tokens) or tokens[i].upper() not in _ALTER_ACTIONS:
        return ""
    words = [tokens[i].lower()]
    j = i + 1
    if j < len(tokens) and tokens[j].upper() in _SUBJECTS:
        words.append(tokens[j].lower())
        j += 1
    j = _skip(tokens, j, {"IF", "NOT", "EXISTS"})
    if j < len(tokens) and tokens[j] not in ("(", ","):
        words.append(_name(tokens[j]))
    return " " + " ".join(words)


def _dml(verb: str, tokens: list[str]) -> Operation | None:
    i = 1
    keyword = _DML[verb]
    if keyword and i < len(tokens) and tokens[i].upper() == keyword:
        i += 1
    i = _skip(tokens, i, {"ONLY", "TABLE"})
    if i >= len(tokens):
        return None
    name = _name(tokens[i])
    return Operation(f"{verb.lower()}{' ' + keyword.lower() if keyword else ''} {name}", name)
