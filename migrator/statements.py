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

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from migrator import sql_tokens
from migrator.logs import get_logger

HEADS = (96, 240, 600)  # characters of a statement read to describe it: more only when a description needs more
EXECUTE_PREVIEW = 60  # `execute "..."` shows at most this much of the statement
ACTION_CAP = 60  # one action of an ALTER, rendered
TAIL_CAP = 120  # all actions of an ALTER, rendered; more become `, ...`
READ_SCAN_LIMIT = 20_000  # a longer SELECT is not searched for writes: it is logged at info
NAME_BYTES = 63  # PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes

_PART = re.compile(r'"((?:[^"]|"")*)"?|([^."]+)')
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # PostgreSQL folds ASCII letters only
_PASSWORD = re.compile(r"(\bpassword\s*=?\s*)(?:E?'(?:[^'\\]|\\.|'')*'?|\$(\w*)\$.*?(?:\$\2\$|\Z))",
                       re.IGNORECASE | re.DOTALL)

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
_CONSTRAINTS = {"PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"}
_DML = {"INSERT": "INTO", "MERGE": "INTO", "DELETE": "FROM", "UPDATE": None, "TRUNCATE": None}
_RENDERED = {"GRANT", "REVOKE", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REFRESH", "LOCK", "SECURITY",
             "REASSIGN", "IMPORT"}  # described by their own words
_SETTINGS = {"SHOW", "SET", "RESET", "BEGIN", "START", "SAVEPOINT", "RELEASE"}
_READS = {"SELECT", "VALUES", "TABLE", "WITH"}

# A read-only check of a SELECT: these may write, and so may any function call but the allow-listed ones.
# Both run on the statement lower-cased and reversed, so that the scan jumps from one `(` to the next: a name
# before `(` is a call, unless it is a type's modifier (`::varchar(32)`), the column list of an alias or a CTE.
_WRITE_WORDS = ("insert", "update", "delete", "merge", "into", "copy")
_ROW_LOCK = re.compile(r"erahs(?:\s+yek)?\s+rof(?![\w$])")  # FOR [KEY] SHARE (FOR UPDATE is a write word)
_CALL = re.compile(r'\(\s*+("(?:[^"]|"")*"|[\w$]++)'
                   r'(?:\s*+(?P<dot>\.)|\s*+(?P<cast>::)|\s++(?P<alias>sa|(?:evisrucer\s++)?htiw)(?![\w$]))?')
_PG_CATALOG = re.compile(r"\s*golatac_gp(?![\w$])")
_NOT_CALLS = {"in", "any", "all", "some", "exists", "cast", "when", "then", "else", "case", "join", "from", "and",
              "or", "not", "on", "using", "as", "values", "select", "where", "over", "filter", "within", "group",
              "by", "partition", "array", "row", "lateral", "distinct", "is", "between", "like", "ilike",
              "similar", "union", "intersect", "except", "limit", "offset", "having", "with", "recursive",
              "materialized", "collate", "escape", "order", "coalesce", "nullif", "greatest", "least", "extract",
              "position", "substring", "overlay", "trim", "interval", "grouping", "rollup", "cube", "sets",
              "ordinality", "window", "range", "rows", "fetch", "first", "next", "only", "ties"}
_READ_ONLY_FUNCTIONS = {
    # aggregates and window functions
    "count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and", "bool_or", "every", "json_agg",
    "jsonb_agg", "json_object_agg", "jsonb_object_agg", "row_number", "rank", "dense_rank", "lag", "lead",
    # catalog introspection (SQLAlchemy's and Alembic's reflection queries)
    "version", "current_schema", "current_schemas", "current_database", "current_setting", "pg_backend_pid",
    "pg_is_in_recovery", "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible",
    "pg_collation_is_visible", "pg_opclass_is_visible", "pg_get_expr", "pg_get_constraintdef", "pg_get_indexdef",
    "pg_get_viewdef", "pg_get_triggerdef", "pg_get_functiondef", "pg_get_function_arguments",
    "pg_get_function_identity_arguments", "pg_get_function_result", "pg_get_serial_sequence", "pg_get_userbyid",
    "pg_get_partkeydef", "pg_get_statisticsobjdef", "pg_get_ruledef", "pg_relation_size",
    "pg_total_relation_size", "pg_table_size", "pg_indexes_size", "format_type", "obj_description",
    "col_description", "shobj_description", "has_table_privilege", "has_schema_privilege",
    "has_column_privilege", "has_database_privilege", "has_function_privilege", "has_sequence_privilege",
    "pg_has_role", "to_regclass", "to_regtype", "to_regproc", "to_regnamespace", "to_regrole", "pg_typeof",
    "pg_encoding_to_char", "generate_series", "generate_subscripts", "unnest", "pg_sleep",
    "set_config",  # a setting, as SET (pg_dump's `SELECT pg_catalog.set_config('search_path', '', false)`)
    # plain value functions
    "array_length", "array_position", "array_to_string", "array_upper", "array_lower", "cardinality", "lower",
    "upper", "length", "char_length", "substr", "btrim", "ltrim", "rtrim", "replace", "split_part", "concat",
    "concat_ws", "left", "right", "strpos", "regexp_replace", "regexp_match", "format", "quote_ident",
    "quote_literal", "to_char", "to_date", "to_timestamp", "to_number", "date_trunc", "date_part", "age", "abs",
    "round", "ceil", "floor", "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "row_to_json", "to_json",
    "to_jsonb", "string_to_array",
}


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


# --- the words of a statement's head -------------------------------------------------------------------------

class _Words:
    """The tokens of a statement's head, comments dropped; `blanks[k]` is what preceded token k (maybe "").

    Reads the statement a part at a time: most descriptions need its first few words only. Every access goes
    through `has(k)`, which reads on when token k lies beyond what was read and the statement goes on.
    """

    __slots__ = ("blanks", "cut", "first", "part", "pos", "sql", "words")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.words: list[str] = []
        self.blanks: list[str] = []  # what precedes each token: blanks, comments or nothing
        leading = sql_tokens.LEADING.match(sql)
        self.first = self.pos = leading.end() if leading else 0
        self.part = -1
        self.cut = True  # nothing read yet

    def _read(self) -> None:
        self.part += 1
        end = self.first + HEADS[self.part]
        found = sql_tokens.TOKEN.findall(self.sql, self.pos, end)
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
        return _name(self.words[k]) if k < len(self.words) or self._more(k) else ""

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
            out.append(token if token[0] in "'$" or token[0].isdigit() or token[1:2] == "'" else _name(token))
            k += 1
        return _cap("".join(out), cap)


def _name(token: str) -> str:
    """The identifier as PostgreSQL sees it: unquoted parts fold to lower case, quoted ones keep theirs."""
    if '"' not in token:
        name = token.translate(_FOLD)
        if len(name) <= NAME_BYTES and name.isascii():
            return name
    return ".".join(_parts(token))


def _parts(token: str) -> list[str]:
    """`public."Users"` -> ["public", "Users"]; each part truncated as PostgreSQL truncates it."""
    return [_truncate(quoted.replace('""', '"') if quoted else bare.translate(_FOLD))
            for quoted, bare in _PART.findall(token)]


def _truncate(part: str) -> str:
    raw = part.encode()
    return part if len(raw) <= NAME_BYTES else raw[:NAME_BYTES].decode(errors="ignore")


def _cap(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 3] + "..."


def _split(w: _Words, start: int) -> list[tuple[int, int]]:
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


def _join_actions(w: _Words, actions: list[str]) -> str:
    """`add column a, drop column b`; what the head cut off or what would make it long becomes `, ...`."""
    if w.cut and len(actions) > 1:
        actions[-1] = "..."
    elif w.cut and actions and not actions[-1].endswith("..."):
        actions[-1] += " ..."
    text = ""
    for k, action in enumerate(actions):
        if k and len(text) + len(action) > TAIL_CAP:
            return text + ", ..."
        text += (", " if k else "") + action
    return text


# --- describing -----------------------------------------------------------------------------------------------

def _describe_one(sql: str) -> Operation:
    w = _Words(sql)
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


def _execute(w: _Words) -> str:
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
    """SQL's own way to write a password (`PASSWORD 'x'`); log redaction masks URLs and `password=x`."""
    return _PASSWORD.sub(lambda m: m.group(1) + "'***'", text)


def _quiet(verb: str, w: _Words) -> bool:
    if verb in _SETTINGS:
        return not (verb == "SET" and w.up(1) == "CONSTRAINTS")  # checking deferred constraints runs triggers
    if verb in _READS:
        return _reads_only(w.sql)
    if verb == "EXPLAIN":
        options = range(1, w.close(1)) if w.word(1) == "(" else range(1, 3)
        return not any(w.up(k) in ("ANALYZE", "ANALYSE") for k in options)
    return False


def _reads_only(sql: str) -> bool:
    """A SELECT that certainly changes nothing: it locks no rows and calls only allow-listed functions."""
    if len(sql) > READ_SCAN_LIMIT or sql_tokens.MORE.search(sql):
        return False
    low = sql.lower()
    if any(_has_word(low, word) for word in _WRITE_WORDS):
        return False
    backwards = low[::-1]
    if "erahs" in backwards and _ROW_LOCK.search(backwards):
        return False
    for m in _CALL.finditer(backwards):
        if m.group("cast") or m.group("alias"):
            continue
        if m.group("dot") and not _PG_CATALOG.match(backwards, m.end()):
            return False  # a function in some other schema: it may do anything
        name = m.group(1)[::-1]
        if name not in _READ_ONLY_FUNCTIONS and name not in _NOT_CALLS:
            return False  # also any quoted name
    return True


def _has_word(text: str, word: str) -> bool:
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if (at == 0 or not _word_char(text[at - 1])) and (end == len(text) or not _word_char(text[end])):
            return True
        at = text.find(word, end)
    return False


def _word_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _transaction(w: _Words) -> Operation:
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


def _ddl(w: _Words) -> Operation | None:
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
        tail, concurrent = _alter_table(w, i) if kind in _TABLES else (_actions(w, i), False)
        text += f" {tail}" if tail else ""
    return Operation(text, table, concurrent=concurrent)


def _kind(w: _Words, i: int) -> tuple[str, int]:
    """`TABLE`, `MATERIALIZED VIEW`, `TEXT SEARCH CONFIGURATION` ... and the index just past it."""
    first = w.up(i)
    if first in _MULTI_FIRST:
        for n in (3, 2):
            kind = " ".join(w.up(i + k) for k in range(n))
            if kind in _MULTI_KINDS:
                return kind, i + n
    return first, i + 1


def _object_name(w: _Words, kind: str, i: int) -> tuple[str, int]:
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


def _index(w: _Words, verb: str, i: int, concurrent: bool) -> Operation:
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
        index = ".".join([*_parts(w.word(i))[:-1], w.name(i + 3)])
    tail = _actions(w, i + 1)
    return Operation(f"alter index {name}{' ' + tail if tail else ''}", None, index=index)


def _actions(w: _Words, i: int) -> str:
    return _join_actions(w, [w.render(a, b) for a, b in _split(w, i)])


def _alter_table(w: _Words, i: int) -> tuple[str, bool]:
    """Each action of an ALTER TABLE (`add column age, drop constraint users_email_key`); CONCURRENTLY?"""
    concurrent = False
    actions = []
    for a, b in _split(w, i):
        if w.up(a) == "DETACH" and w.find(a, "CONCURRENTLY", b) is not None:
            concurrent = True
        actions.append(_table_action(w, a, b))
    return _join_actions(w, actions), concurrent


def _table_action(w: _Words, a: int, b: int) -> str:
    """One action of an ALTER TABLE; a column's name where PostgreSQL lets the word COLUMN be left out."""
    action = _TABLE_ACTIONS.get(w.up(a))
    return (action(w, a, b) if action is not None else None) or w.render(a, b)


def _add(w: _Words, a: int, b: int) -> str:
    sub = w.up(a + 1)
    if sub == "CONSTRAINT":
        return f"add constraint {w.name(a + 2)} {_constraint(w, a + 3, b)}".rstrip()
    if sub in _CONSTRAINTS:
        return f"add {_constraint(w, a + 1, b)}"
    k = w.skip(a + 2 if sub == "COLUMN" else a + 1, {"IF", "NOT", "EXISTS"})
    return f"add column {w.name(k)}".rstrip()


def _drop(w: _Words, a: int, b: int) -> str:
    sub = w.up(a + 1)
    subject = sub.lower() if sub in ("COLUMN", "CONSTRAINT") else "column"
    k = w.skip(a + 2 if sub in ("COLUMN", "CONSTRAINT") else a + 1, {"IF", "EXISTS"})
    return f"drop {subject} {w.name(k)}".rstrip()


def _alter_column(w: _Words, a: int, b: int) -> str | None:
    sub = w.up(a + 1)
    if sub == "CONSTRAINT":
        return None
    k = a + 2 if sub == "COLUMN" else a + 1
    end = w.find(k + 1, "USING", b) or b  # TYPE ... USING <expression>
    return f"alter column {w.name(k)} {w.render(k + 1, end)}".rstrip()


def _rename(w: _Words, a: int, b: int) -> str | None:
    sub = w.up(a + 1)
    if sub == "TO":
        return None
    subject = sub.lower() if sub in ("COLUMN", "CONSTRAINT") else "column"
    k = a + 2 if sub in ("COLUMN", "CONSTRAINT") else a + 1
    return f"rename {subject} {w.name(k)} to {w.name(k + 2)}".rstrip()


_TABLE_ACTIONS: dict[str, Callable[[_Words, int, int], str | None]] = {
    "ADD": _add, "DROP": _drop, "ALTER": _alter_column, "RENAME": _rename,
}


def _constraint(w: _Words, k: int, b: int) -> str:
    """`unique (email)`, `check (age > 0)`, `foreign key (user_id) references users not valid`."""
    if w.up(k) != "FOREIGN":
        return w.render(k, b)
    references = w.find(k, "REFERENCES", b)
    if references is None or w.up(k + 1) != "KEY" or w.word(k + 2) != "(":
        return w.render(k, b)
    text = f"foreign key {w.render(k + 2, w.close(k + 2))} references {w.name(references + 1)}"
    not_valid = any(w.up(j) == "NOT" and w.up(j + 1) == "VALID" for j in range(references + 2, b))
    return text + (" not valid" if not_valid else "")


def _dml(w: _Words, i: int = 0) -> Operation | None:
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
    names = [w.name(w.skip(a, {"ONLY"})) for a, _ in _split(w, k)] if verb == "TRUNCATE" else [w.name(k)]
    if not names or not all(names):
        return None
    text = f"{verb.lower()}{' ' + keyword.lower() if keyword else ''} {', '.join(names)}"
    return Operation(text, names[0])


def _copy(w: _Words, i: int) -> Operation | None:
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


def _with(w: _Words) -> Operation | None:
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


def _comment(w: _Words) -> Operation | None:
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


def _reindex(w: _Words) -> Operation | None:
    i = w.close(1) if w.word(1) == "(" else 1  # options
    target = w.up(i)
    concurrent = w.up(i + 1) == "CONCURRENTLY"
    k = i + 2 if concurrent else i + 1
    name = w.name(k)
    text = f"reindex {target.lower()} {name}".rstrip() + (" concurrently" if concurrent else "")
    return Operation(text, name if target == "TABLE" else None, concurrent=concurrent,
                     index=name if target == "INDEX" and name else None)


def _call(w: _Words) -> Operation | None:
    return Operation(f"call {w.name(1)}", None) if w.has(1) else None


def _rendered(w: _Words) -> Operation:
    return Operation(w.render(0, None, TAIL_CAP), None)


_HANDLERS: dict[str, Callable[[_Words], Operation | None]] = {
    "CREATE": _ddl, "DROP": _ddl, "ALTER": _ddl, "COMMENT": _comment, "WITH": _with, "REINDEX": _reindex,
    "CALL": _call, "COPY": _dml, **dict.fromkeys(_DML, _dml), **dict.fromkeys(_RENDERED, _rendered),
    **dict.fromkeys(("COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE"), _transaction),
}
