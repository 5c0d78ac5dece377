"""Whether a SELECT (or VALUES, TABLE, WITH) certainly changes nothing, so that it may be logged at debug.

It must lock no rows and call no function outside a short allow-list of read-only built-ins: any other function
may write, as `setval` does. Both checks run on the statement lower-cased and reversed, so that the scan jumps from
one `(` to the next: a name before `(` is a call, unless it is a type's modifier (`::varchar(32)`), the column
list of an alias or a CTE.
"""

from __future__ import annotations

import re

from migrator import sql_tokens

READ_SCAN_LIMIT = 20_000  # a longer SELECT is not searched for writes: it is logged at info

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


def reads_only(sql: str) -> bool:
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
