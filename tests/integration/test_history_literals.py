"""The history row that travels with a step's COMMIT has its values quoted on the client (psycopg's quoting, through
literals.Quoter), not bound by the server: whatever it quotes must read back exactly, under either
standard_conforming_strings and client encoding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.tables import history
from migrator.tables.literals import literal

# Quoting's special characters often, among any others (lone surrogates cannot be sent as UTF-8 at all).
TEXT = st.text(st.one_of(st.sampled_from("\\'\"$%{}\n"),
                         st.characters(codec="utf-8", exclude_characters="\0")), max_size=40)


@pytest.fixture(params=["on", "off"])
def conn(request: pytest.FixtureRequest, database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(f"SET standard_conforming_strings = {request.param}")
        c.execute("SET escape_string_warning = off")
        yield c


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_text_reads_back_exactly(conn: psycopg.Connection, text: str) -> None:
    assert conn.execute(f"SELECT {literal(text, conn)}").fetchone() == (text,)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(TEXT, max_size=4))
def test_arrays_read_back_exactly(conn: psycopg.Connection, items: list[str]) -> None:
    assert conn.execute(f"SELECT {literal(items, conn)}").fetchone() == (items,)


def test_odd_texts_and_times_read_back_exactly(conn: psycopg.Connection) -> None:
    for text in ("x'); DROP TABLE users; --", "back\\slash\\", "\\'", "''", "$$ %s %(x)s {}", "é\u2028\U0001f600"):
        assert conn.execute(f"SELECT {literal(text, conn)}").fetchone() == (text,)
    for when in (datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC),
                 datetime(1999, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))):
        assert conn.execute(f"SELECT {literal(when, conn)}").fetchone() == (when,)
    assert conn.execute(f"SELECT {literal(None, conn)}").fetchone() == (None,)


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        literal("a\0b")


def test_a_steps_row_reads_back_exactly_as_the_session_changes_its_quoting_settings(database_url: str) -> None:
    """insert_statement reuses its quoting on a connection (one step's row repeats most of the last one's); a
    migration may change the settings quoting depends on in the transaction its row is written in."""
    odd = "back\\slash 'quoted' é"
    with psycopg.connect(database_url, autocommit=True) as c:
        history.ensure(c, "public")
        c.execute("SET escape_string_warning = off")
        for n, setting in enumerate(("standard_conforming_strings = off", "client_encoding = LATIN1",
                                     "standard_conforming_strings = on", "client_encoding = UTF8")):
            c.execute(f"SET {setting}")
            c.execute(history.insert_statement(
                c, "public", version_table=odd, revision=f"{odd}{n}", parents=[odd, f"{odd}{n}"], direction="up",
                outcome="applied", started_at=datetime(2026, 12, 7, 12, n, tzinfo=UTC),
                sums=history.FileSums(odd, f"{odd}{n}")))
        rows = c.execute("SELECT version_table, revision, parents, started_at, checksum, file_hash "
                         "FROM migrator_history ORDER BY id").fetchall()
    assert rows == [(odd, f"{odd}{n}", [odd, f"{odd}{n}"], datetime(2026, 12, 7, 12, n, tzinfo=UTC), odd, f"{odd}{n}")
                    for n in range(4)]


def test_a_row_is_written_in_a_schema_whose_name_has_braces_and_quotes(database_url: str) -> None:
    """insert_statement's text is a str.format template around the values: the schema's quoted name, braces
    included, must come out as it went in."""
    schema = 'odd "sch{e}ma}'
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
        history.ensure(c, schema)
        c.execute(history.insert_statement(c, schema, version_table="v{0}", revision="r{x}", parents=["{}"],
                                           direction="up", outcome="applied",
                                           started_at=datetime(2026, 12, 8, tzinfo=UTC)))
        rows = c.execute(psycopg.sql.SQL("SELECT version_table, revision, parents FROM {}").format(
            history.qualified(schema))).fetchall()
    assert rows == [("v{0}", "r{x}", ["{}"])]
