"""SQL literals quoted by psycopg for one connection's settings, for a statement that travels with others in one
round trip, where no parameters can be bound: the step's history row sent with its COMMIT (migrator.session)."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.adapt import Transformer


def literal(value: str | datetime | Iterable[str] | None, context: psycopg.Connection[Any] | None = None) -> str:
    """`value` as SQL text (psycopg's quoting, for `context`'s settings when given), for a statement that travels
    with others in one round trip, where no parameters can be bound."""
    return Quoter(context).literal(value)


class Quoter:
    """psycopg's quoting of values as SQL literals for one connection's settings (what sql.Literal does), with
    one psycopg Transformer for many values, and each text quoted once: a step's history row repeats most of
    the previous one's."""

    def __init__(self, context: psycopg.Connection[Any] | None) -> None:
        self._transformer = Transformer.from_context(context)
        self._encoding = context.info.encoding if context is not None else "utf-8"
        self._texts: dict[str, str] = {}

    def literal(self, value: str | datetime | Iterable[str] | None) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, datetime):
            return self._quote(value)
        return f"ARRAY[{', '.join(map(self._text, value))}]::text[]"

    def _text(self, value: str) -> str:
        quoted = self._texts.get(value)
        if quoted is None:
            if "\0" in value:
                raise ValueError("a NUL character cannot be stored in PostgreSQL text")
            quoted = self._texts[value] = self._quote(value)
        return quoted

    def _quote(self, value: str | datetime) -> str:
        return bytes(self._transformer.as_literal(value)).decode(self._encoding)


_QUOTERS: weakref.WeakKeyDictionary[psycopg.Connection[Any], tuple[tuple[str, str | None], Quoter]] = \
    weakref.WeakKeyDictionary()


def quoter(conn: psycopg.Connection[Any], info: psycopg.ConnectionInfo | None = None) -> Quoter:
    """The connection's Quoter (`info`: its conn.info, when read already), made again when the settings its
    quoting depends on changed (a migration may SET client_encoding or standard_conforming_strings in the
    transaction the row is written in)."""
    info = info or conn.info
    settings = (info.encoding, info.parameter_status("standard_conforming_strings"))
    found = _QUOTERS.get(conn)
    if found is None or found[0] != settings:
        found = _QUOTERS[conn] = (settings, Quoter(conn))
    return found[1]
