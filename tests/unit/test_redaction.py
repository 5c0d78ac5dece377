"""Structural masking: passwords are masked where the text says they are one, and nothing else changes."""

from __future__ import annotations

import random
import re
import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from migrator.redaction import redact


@pytest.mark.parametrize(("text", "masked"), [
    ("postgres://app:whatever@db/app", "postgres://app:***@db/app"),
    ("postgres://postgres:postgres@localhost:5432/hello_migrations_dev",
     "postgres://postgres:***@localhost:5432/hello_migrations_dev"),
    ("url postgresql+psycopg://u:p%40ss@db/app, then more", "url postgresql+psycopg://u:***@db/app, then more"),
    ("postgres://u:p@ss@db/app and me@example.org", "postgres://u:***@db/app and me@example.org"),
    ("postgres://u@h/db?sslmode=require&password=s3cr%40t&application_name=x",
     "postgres://u@h/db?sslmode=require&password=***&application_name=x"),
    ("host=db password=hunter2 user=app", "host=db password=*** user=app"),
    ("host=db password='x y\\' z' user=app", "host=db password=*** user=app"),
    ("host=db password = 'it''s' user=app", "host=db password = *** user=app"),
    ("PGPASSWORD=hunter2 DATABASE_PASSWORD_FILE=/etc/pw", "PGPASSWORD=*** DATABASE_PASSWORD_FILE=/etc/pw"),
    ("[parameters: {'name': 'bob', 'password': 'hunter2'}]", "[parameters: {'name': 'bob', 'password': '***'}]"),
    ('{"db_password": "hun\\"ter2", "user": "e"}', '{"db_password": "***", "user": "e"}'),
    ("LINE 1: CREATE ROLE e LOGIN PASSWORD 'e' BAD", "LINE 1: CREATE ROLE e LOGIN PASSWORD '***' BAD"),
    ("ALTER USER app WITH ENCRYPTED PASSWORD 'md5abc' VALID UNTIL 'infinity'",
     "ALTER USER app WITH ENCRYPTED PASSWORD '***' VALID UNTIL 'infinity'"),
    ("alter role app password E'a\\'b' login", "alter role app password E'***' login"),
    ("CREATE ROLE x PASSWORD 'it''s' LOGIN", "CREATE ROLE x PASSWORD '***' LOGIN"),
    ("CREATE ROLE x PASSWORD $pw$hunter2$pw$ LOGIN", "CREATE ROLE x PASSWORD $pw$***$pw$ LOGIN"),
    ("...E ROLE app PASSWORD 'abcdefgh\nHINT: x", "...E ROLE app PASSWORD '***\nHINT: x"),
])
def test_passwords_in_password_positions_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


COMMON_PASSWORDS = ["postgres", "e", "password", "migration", "20211103022310", "app", "error", "1"]
LINES = [
    "19:37:51.517 [error] cannot connect to postgres@127.0.0.1:5432/postgres: FATAL: password authentication "
    'failed for user "postgres"',
    "19:37:51.517 [info] == Running 20211103022310 migrations/versions/20211103022310_create_users.py forward",
    "19:37:51.517 [info] == Migrated 20211103022310 in 0.0s",
    "19:37:51.517 [warning] waiting for database app@db:5432/app (migration): Connection refused; retrying",
    "migrate failed (exit 1): the migration 20211104101500 failed: the password column needs a default",
    "the password_encryption setting is scram-sha-256; no password supplied",
    "status: current 20211103022310, heads 20211104101500, pending 20211104101500; password file read",
    "postgres://db:5432/app has no password",
]


@pytest.mark.parametrize("line", LINES)
def test_nothing_else_is_touched_whatever_the_password(line: str) -> None:
    """The old mechanism replaced every occurrence of each password: `e` garbled `[error]` into `[***rror]`."""
    assert redact(line) == line


def test_text_without_a_password_position_is_unchanged() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " []:/@.=-_'\"{},\n"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        if "://" in text or "password" in text.lower():
            continue
        assert redact(text) == text


@pytest.mark.parametrize("password", [*COMMON_PASSWORDS, "s3cr3t:p@ss/w?rd", "p w", "it's", 'q"uote', "back\\slash",
                                      "p\u00e9", "&amp", "#frag", "$$", "PASSWORD 'x'"])
def test_every_spelling_of_a_password_is_masked_whole_and_alone(password: str) -> None:
    """Each way a password gets printed: exactly the password is masked, the structure around it stays."""
    quoted = repr(password)[0]
    spellings = {
        f"postgres://app:{quote(password, safe='')}@db/app": "postgres://app:***@db/app",
        f"postgres://app@db/app?password={quote(password, safe='')}&sslmode=require":
            "postgres://app@db/app?password=***&sslmode=require",
        make_conninfo(host="db", user="app", password=password): "host=db user=app password=***",
        str({"user": "app", "password": password}): f"{{'user': 'app', 'password': {quoted}***{quoted}}}",
        "CREATE ROLE app LOGIN PASSWORD '" + password.replace("'", "''") + "'": "CREATE ROLE app LOGIN PASSWORD '***'",
    }
    for text, masked in spellings.items():
        assert redact(text) == masked, text


def test_one_letter_password_in_a_real_error() -> None:
    line = "19:37:51.517 [error] cannot connect to e@127.0.0.1:5432/e: FATAL: database \"e\" does not exist"
    assert redact(line) == line


# --- SQL's PASSWORD literal at every depth of quoting (hypothesis) ---------------------------------------

# Passwords: any text on one line (a log line's excerpt is cut at a line end), quotes and backslashes included,
# but not quotes alone: PASSWORD followed by four quotes reads as well as a literal holding one quote as the
# opening of a literal quoted two DO blocks deep, and is masked as the latter.
PASSWORDS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), min_size=1,
                    max_size=30).filter(lambda password: password.strip("'") != "")
BEFORE = ["CREATE ROLE app LOGIN", "ALTER ROLE app WITH ENCRYPTED", "ALTER USER app WITH",
          '19:37:51.517 [info] execute "CREATE USER x', "DO $$ BEGIN EXECUTE 'ALTER ROLE app",
          "migration 1 failed: could not run: ALTER ROLE app"]
AFTER = ["", " LOGIN", " VALID UNTIL 'infinity'", "; END $$", '"', " (its 'note': fine) password"]


def literal(password: str, form: str) -> tuple[str, str, str]:
    """(opening, text, closing) of `password` written as SQL in `form`."""
    plain = password.replace("'", "''")
    if form == "plain":
        return "'", plain, "'"
    if form == "E":
        return "E'", password.replace("\\", "\\\\").replace("'", "\\'"), "'"
    if form == "U&":
        return "U&'", plain, "'"
    if form == "in a DO block":  # EXECUTE '... PASSWORD ''x''': quoted within quotes
        return "''", plain.replace("'", "''"), "''"
    if form == "two DO blocks deep":
        return "''''", plain.replace("'", "''").replace("'", "''"), "''''"
    return "$pw$", password, "$pw$"


@settings(max_examples=400, deadline=None)
@given(password=PASSWORDS, form=st.sampled_from(["plain", "E", "U&", "in a DO block", "two DO blocks deep", "$pw$"]),
       before=st.sampled_from(BEFORE), after=st.sampled_from(AFTER), keyword=st.sampled_from(["PASSWORD", "password"]))
def test_sql_passwords_are_masked_whole_and_alone(password: str, form: str, before: str, after: str,
                                                  keyword: str) -> None:
    """Exactly the literal's text is masked, at every depth of quoting; what is around it stays as it was."""
    if form == "$pw$" and "$pw$" in password + "$":
        return  # a dollar-quoted literal cannot contain its own tag
    opening, text, closing = literal(password, form)
    statement = f"{before} {keyword} {opening}{text}{closing}{after}"
    assert redact(statement) == f"{before} {keyword} {opening}***{closing}{after}"


@settings(max_examples=300, deadline=None)
@given(password=PASSWORDS, form=st.sampled_from(["plain", "E", "U&", "in a DO block", "two DO blocks deep"]),
       cut=st.integers(min_value=0, max_value=29))
def test_a_literal_cut_short_is_masked_to_its_end(password: str, form: str, cut: int) -> None:
    """An error's excerpt may end inside the literal: nothing of the password after the opening quote shows (at
    most quotes, where the cut fell between the two quotes of an escaped one)."""
    opening, text, _ = literal(password, form)
    head = text[:cut]
    if not head:
        return
    masked = redact(f"LINE 1: ...ROLE app PASSWORD {opening}{head}\nHINT: x")
    assert re.fullmatch(r"LINE 1: \.\.\.ROLE app PASSWORD (E|U&)?'*(\*\*\*)?'*\nHINT: x", masked), masked


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(list(string.ascii_letters + string.digits + " '\"$&\\\n[]:=-_/.;(),U"))))
def test_text_without_the_word_password_is_unchanged(text: str) -> None:
    if "password" in text.lower() or "://" in text:
        return
    assert redact(text) == text
