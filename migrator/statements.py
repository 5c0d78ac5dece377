"""What one SQL statement does, in Ecto's words: `create table users`, `create index users_email_index`.

Pure text work on the statement a migration sent, so that raw `op.execute()` SQL is described as well as
Alembic's own operations. Reads only the statement's head (a read-only check of a SELECT reads all of it);
never fails: unknown shapes fall back to Ecto's `execute "..."`.

Every statement that can change data or schema is logged at info. Only statements that certainly change nothing
are `quiet` (debug): SHOW, SET, EXPLAIN without ANALYZE, transaction control that ends nothing, and SELECTs that
lock no rows and call no function outside a short allow-list of read-only built-ins (any other function may
write, as `setval` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from migrator import sql_tokens
from migrator.logs import get_logger
from migrator.redaction import redact
from migrator.statement_actions import TAIL_CAP, actions, alter_table

EXECUTE_PREVIEW = 60  # `execute "..."` shows at most this much of the statement


_BEFORE_KIND = {"OR", "REPLACE", "UNIQUE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "RECURSIVE",
                "CONSTRAINT", "TRUSTED", "PROCEDURAL"}
_AFTER_KIND = {"CONCURRENTLY", "IF", "NOT", "EXISTS", "ONLY"}
_MULTI_KINDS = {"MATERIALIZED VIEW", "FOREIGN TABLE", "FOREIGN DATA WRAPPER", "EVENT TRIGGER", "USER MAPPING",
                "OPERATOR CLASS", "OPERATOR FAMILY", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
                "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "ACCESS METHOD", "DEFAULT PRIVILEGES",
                "LARGE OBJECT", "OWNED BY"}
_MULTI_FIRST = {kind.split()[0] for kind in _MULTI_KINDS}
_TABLES = {"TABLE", "FOREIGN TABLE"}
_ROUTINES = {"FUNCTION", "PROCEDURE", "AGGREGATE", "ROUTINE", "OPERATOR"}  # named with an argument list
_ON_TABLE = {"TRIGGER", "POLICY", "RULE"}  # `create trigger t on users`
_NAMELESS = {"DEFAULT PRIVILEGES", "USER MAPPING", "OWNED BY", "CAST"}  # described by what follows the kind
_DML = {"INSERT": "INTO", "MERGE": "INTO", "DELETE": "FROM", "UPDATE": None, "TRUNCATE": None}
_RENDERED = {"GRANT", "REVOKE", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REFRESH", "LOCK", "SECURITY",
             "REASSIGN", "IMPORT"}  # described by their own words
_SETTINGS = {"SHOW", "SET", "RESET", "BEGIN", "START", "SAVEPOINT", "RELEASE"}
_READS = {"SELECT", "VALUES", "TABLE", "WITH"}

@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to create, and describe() runs per statement
class Operation:
    """What one statement does, for its log line and for the runner's checks.

    `text` in Ecto's words; `table` the table it names; `quiet` when it certainly changes nothing (debug only);
    `concurrent` when it runs CONCURRENTLY, so that its lock waits do not queue application traffic;
    `ends_transaction` for COMMIT, ROLLBACK and their kin; `index` the index it creates, drops, alters (by its
    new name when renamed) or reindexes, folded and truncated as PostgreSQL does, schema-qualified only if written
    so; None when it names none, or leaves the name to PostgreSQL (`CREATE INDEX ON t`, `REINDEX TABLE t`).
    """

    text: str
    table: str | None
    quiet: bool = False
    concurrent: bool = False
    ends_transaction: bool = False
    index: str | None = None
    ending: str | None = None  # the first words of the statement that ends the transaction (`COMMIT`, `ROLLBACK`)

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


def describe(sql: str) -> Operation:
    """Describe one statement, or each of several sent as one text; unrecognised ones become `execute "..."`."""
    if not sql_tokens.MORE.search(sql):
        return _describe_one(sql)
    parts = sql_tokens.statements(sql)
    if len(parts) <= 1:
        return _describe_one(parts[0] if parts else sql)
    ops = [_describe_one(part) for part in parts]
    text = "; ".join(op.text for op in ops[:3]) + (f"; ... ({len(ops)} statements)" if len(ops) > 3 else "")
    tables = {op.table for op in ops}
    ending = next((op.ending for op in ops if op.ends_transaction), None)
    return Operation(text, tables.pop() if len(tables) == 1 else None, quiet=all(op.quiet for op in ops),
                     concurrent=any(op.concurrent for op in ops), ends_transaction=ending is not None,
                     index=next((op.index for op in ops if op.index is not None), None), ending=ending)


# --- describing -----------------------------------------------------------------------------------------------

def _describe_one(sql: str) -> Operation:
    w = sql_tokens.Words(sql)
    if w.first >= len(sql):  # blanks and comments only
        return Operation('execute ""', None, quiet=True)
    verb_match = sql_tokens.VERB.match(w.sql, w.first)
    verb = verb_match.group().upper() if verb_match else ""
    handler = _HANDLERS.get(verb)
    op = handler(w) if handler is not None else None
    if op is None:
        op = Operation(_execute(w), None, quiet=_quiet(verb, w))
    text = op.text
    if not text.isprintable():  # one line, and no terminal control characters in a log
        text = " ".join("".join(char if char.isprintable() else " " for char in text).split())
    if _has_password(text):
        text = _mask(text)
    return op if text is op.text else replace(op, text=text)


def _execute(w: sql_tokens.Words) -> str:
    """`execute "<the statement's first words>"`: one line of at most EXECUTE_PREVIEW characters."""
    size = EXECUTE_PREVIEW * 2
    while True:  # more text when blanks fill the first part
        head = w.sql[w.first:w.first + size]
        if _has_password(head):
            head = _mask(head)
        preview = " ".join(head.split())
        more = w.first + size < len(w.sql)
        if len(preview) > EXECUTE_PREVIEW or not more:
            break
        size *= 4
    if more or len(preview) > EXECUTE_PREVIEW:
        preview = preview[: EXECUTE_PREVIEW - 3] + "..."
    return f'execute "{preview}"'


def _has_password(text: str) -> bool:
    return "assword" in text or "ASSWORD" in text


def _mask(text: str) -> str:
    """Passwords masked by the one owner of masking (SQL's PASSWORD '...' at any depth of quoting, U&'...',
    $$...$$, `password=x`), before the preview cuts the text: a literal cut short is masked to its end."""
    return redact(text)


def _quiet(verb: str, w: sql_tokens.Words) -> bool:
    if verb in _SETTINGS:
        return not (verb == "SET" and w.up(1) == "CONSTRAINTS")  # checking deferred constraints runs triggers
    if verb in _READS:  # rare in migrations: its reader is loaded by the first one
        from migrator import read_only  # noqa: PLC0415

        return read_only.reads_only(w.sql)
    if verb == "EXPLAIN":
        options = range(1, w.close(1)) if w.word(1) == "(" else range(1, 3)
        return not any(w.up(k) in ("ANALYZE", "ANALYSE") for k in options)
    return False


def _transaction(w: sql_tokens.Words) -> Operation:
    """COMMIT, ROLLBACK and their kin end the transaction (ROLLBACK TO a savepoint does not)."""
    verb = w.up(0)
    if verb == "PREPARE":
        ends = w.up(1) == "TRANSACTION"
    elif verb == "ROLLBACK":
        ends = w.up(w.skip(1, {"WORK", "TRANSACTION"})) != "TO"
    else:
        ends = True
    # A statement that ends the transaction is logged at info: it makes what came before durable (or undoes it).
    ending = " ".join(word for word in (verb, w.up(1)) if word.isalpha()) if ends else None
    return Operation(_execute(w), None, quiet=not ends, ends_transaction=ends, ending=ending)


def _ddl(w: sql_tokens.Words) -> Operation | None:
    verb = w.up(0).lower()
    kind, i = _kind(w, w.skip(1, _BEFORE_KIND))
    if not kind:
        return None
    concurrent = False
    while (word := w.up(i)) in _AFTER_KIND:
        concurrent |= word == "CONCURRENTLY"
        i += 1
    if not w.has(i):
        return None
    if kind == "INDEX":
        return _index(w, verb, i, concurrent)
    if kind in _NAMELESS:
        end = w.find(i, "OPTIONS")  # options of a user mapping hold passwords
        return Operation(f"{verb} {kind.lower()} {w.render(i, end, TAIL_CAP)}", None)
    names = []
    while True:
        name, i = _object_name(w, kind, i)
        names.append(name)
        if verb != "drop" or w.word(i) != ",":
            break
        i = w.skip(i + 1, _AFTER_KIND)
    text = f"{verb} {kind.lower()} {', '.join(names)}"
    table = names[0] if kind in _TABLES else None
    if kind in _ON_TABLE:
        on = w.find(i, "TO" if verb == "create" and kind == "RULE" else "ON", i + 24)
        if on is not None:
            table = w.name(w.skip(on + 1, {"ONLY"}))
            text += f" on {table}"
            i = w.skip(on + 1, {"ONLY"}) + 1
    if verb == "create" and kind in _TABLES and w.up(i) == "PARTITION" and w.up(i + 1) == "OF":
        text += f" partition of {w.name(i + 2)}"
    if verb == "alter":
        tail, concurrent = alter_table(w, i) if kind in _TABLES else (actions(w, i), False)
        text += f" {tail}" if tail else ""
    return Operation(text, table, concurrent=concurrent)


def _kind(w: sql_tokens.Words, i: int) -> tuple[str, int]:
    """`TABLE`, `MATERIALIZED VIEW`, `TEXT SEARCH CONFIGURATION` ... and the index just past it."""
    first = w.up(i)
    if first in _MULTI_FIRST:
        for n in (3, 2):
            kind = " ".join(w.up(i + k) for k in range(n))
            if kind in _MULTI_KINDS:
                return kind, i + n
    return first, i + 1


def _object_name(w: sql_tokens.Words, kind: str, i: int) -> tuple[str, int]:
    """The object's name at i (an operator's symbols, a schema's AUTHORIZATION), and the index past it."""
    if kind == "OPERATOR":
        if w.up(i) == "OPERATOR" and w.word(i + 1) == "(":  # OPERATOR(public.!=)
            end = w.close(i + 1)
            return w.render(i + 2, end - 1), end
        name, i = w.name(i), i + 1
    elif kind == "SCHEMA" and w.up(i) == "AUTHORIZATION":
        name, i = f"authorization {w.name(i + 1)}", i + 2
    else:
        name, i = w.name(i), i + 1
    if kind in _ROUTINES and w.word(i) == "(":
        i = w.close(i)  # the argument list
    return name, i


def _index(w: sql_tokens.Words, verb: str, i: int, concurrent: bool) -> Operation:
    if verb == "create":
        name = None if w.up(i) == "ON" else w.name(i)
        on = w.find(i, "ON", i + 3)
        table = w.name(w.skip(on + 1, {"ONLY"})) if on is not None else None
        return Operation(f"create index {name or f'on {table}'}", table, concurrent=concurrent, index=name)
    if verb == "drop":
        names = [w.name(i)]
        while w.word(i + 1) == ",":
            i = w.skip(i + 2, _AFTER_KIND)
            names.append(w.name(i))
        return Operation(f"drop index {', '.join(names)}", None, concurrent=concurrent, index=names[0])
    if w.up(i) == "ALL" and w.up(i + 1) == "IN":  # ALTER INDEX ALL IN TABLESPACE a SET TABLESPACE b
        return Operation(f"alter index {w.render(i, None, TAIL_CAP)}", None)
    name = index = w.name(i)
    if w.up(i + 1) == "RENAME" and w.up(i + 2) == "TO":  # the index keeps its schema under its new name
        index = ".".join([*sql_tokens.name_parts(w.word(i))[:-1], w.name(i + 3)])
    tail = actions(w, i + 1)
    return Operation(f"alter index {name}{' ' + tail if tail else ''}", None, index=index)


def _dml(w: sql_tokens.Words, i: int = 0) -> Operation | None:
    verb = w.up(i)
    if verb == "COPY":
        return _copy(w, i)
    keyword = _DML[verb]
    k = i + 1
    if keyword and w.up(k) == keyword:
        k += 1
    k = w.skip(k, {"ONLY", "TABLE"})
    if not w.has(k):
        return None
    names = ([w.name(w.skip(a, {"ONLY"})) for a, _ in sql_tokens.split_parts(w, k)] if verb == "TRUNCATE"
             else [w.name(k)])
    if not names or not all(names):
        return None
    text = f"{verb.lower()}{' ' + keyword.lower() if keyword else ''} {', '.join(names)}"
    return Operation(text, names[0])


def _copy(w: sql_tokens.Words, i: int) -> Operation | None:
    if w.word(i + 1) == "(":
        name, k = "(query)", w.close(i + 1)
    else:
        name, k = w.name(i + 1), i + 2
        if w.word(k) == "(":
            k = w.close(k)  # the column list
    direction = w.up(k)
    if direction not in ("FROM", "TO"):
        return None
    where = w.up(k + 1)
    source = where.lower() if where in ("STDIN", "STDOUT", "PROGRAM") else "a file"
    return Operation(f"copy {name} {direction.lower()} {source}", None if name == "(query)" else name)


def _with(w: sql_tokens.Words) -> Operation | None:
    """A data-modifying WITH: what its main statement does, and what its CTEs write."""
    i = w.skip(1, {"RECURSIVE"})
    writes = []
    while w.has(i):
        i += 1  # the CTE's name
        if w.word(i) == "(":
            i = w.close(i)
        if w.up(i) != "AS":
            return None
        i = w.skip(i + 1, {"NOT", "MATERIALIZED"})
        if w.word(i) != "(":
            return None
        if w.up(i + 1) in _DML:
            inner = _dml(w, i + 1)
            writes.append(inner.text if inner is not None else w.up(i + 1).lower())
        i = w.close(i)
        if w.word(i) != ",":
            break
        i += 1
    if w.up(i) not in _DML:
        return None  # its main statement reads: `execute "WITH ..."`, at info when a CTE writes
    main = _dml(w, i)
    if main is None:
        return None
    return replace(main, text=main.text + (f" (with {', '.join(writes)})" if writes else ""))


def _comment(w: sql_tokens.Words) -> Operation | None:
    if w.up(1) != "ON":
        return None
    kind, i = _kind(w, 2)
    name, i = _object_name(w, kind, i)
    text = f"comment on {kind.lower()} {name}"
    table = name if kind in _TABLES else name.rsplit(".", 1)[0] if kind == "COLUMN" and "." in name else None
    if kind in _ON_TABLE or kind == "CONSTRAINT":
        if w.up(i) == "ON" and w.up(i + 1) == "DOMAIN":
            text += f" on domain {w.name(i + 2)}"
        elif w.up(i) == "ON":
            table = w.name(i + 1)
            text += f" on {table}"
    return Operation(text, table)


def _reindex(w: sql_tokens.Words) -> Operation | None:
    i = w.close(1) if w.word(1) == "(" else 1  # options
    target = w.up(i)
    concurrent = w.up(i + 1) == "CONCURRENTLY"
    k = i + 2 if concurrent else i + 1
    name = w.name(k)
    text = f"reindex {target.lower()} {name}".rstrip() + (" concurrently" if concurrent else "")
    return Operation(text, name if target == "TABLE" else None, concurrent=concurrent,
                     index=name if target == "INDEX" and name else None)


def _call(w: sql_tokens.Words) -> Operation | None:
    return Operation(f"call {w.name(1)}", None) if w.has(1) else None


def _rendered(w: sql_tokens.Words) -> Operation:
    return Operation(w.render(0, None, TAIL_CAP), None)


_HANDLERS: dict[str, Callable[[sql_tokens.Words], Operation | None]] = {
    "CREATE": _ddl, "DROP": _ddl, "ALTER": _ddl, "COMMENT": _comment, "WITH": _with, "REINDEX": _reindex,
    "CALL": _call, "COPY": _dml, **dict.fromkeys(_DML, _dml), **dict.fromkeys(_RENDERED, _rendered),
    **dict.fromkeys(("COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE"), _transaction),
}
