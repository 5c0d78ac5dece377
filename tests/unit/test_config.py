"""Settings and database configuration from the environment (pure functions, no database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import redaction
from migrator.config import application_name, database_config, load_settings, parse_seconds
from migrator.errors import ConfigError
from migrator.redaction import redact, register_secret


@pytest.fixture(autouse=True)
def _own_secrets() -> Iterator[None]:
    """Secrets registered by one test must not mask text in another."""
    saved = set(redaction._secrets)
    yield
    redaction._secrets.clear()
    redaction._secrets.update(saved)


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("2.5", 2.5), ("500ms", 0.5), ("5s", 5.0),
                                               ("2m", 120.0), ("1h", 3600.0), (" 10 ", 10.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds("X", text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "soon", "5 days", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^X=.* is not a duration"):
        parse_seconds("X", text)


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.timeouts.lock, settings.timeouts.ddl_lock, settings.timeouts.ddl_retries,
            settings.timeouts.statement, settings.timeouts.connect) == (600, 5, 5, 0, 60)
    assert (settings.log_format, settings.log_level) == ("console", "info")


def test_article_url_verbatim() -> None:
    db = database_config({"DATABASE_URL": "postgres://postgres:postgres@localhost:5432/hello_migrations_dev"})
    assert {k: db.params[k] for k in ("host", "port", "user", "password", "dbname")} == {
        "host": "localhost", "port": "5432", "user": "postgres", "password": "postgres",
        "dbname": "hello_migrations_dev"}
    assert db.description == "postgres@localhost:5432/hello_migrations_dev"
    assert db.params["application_name"] == application_name()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"])
def test_schemes_and_percent_encoded_password(scheme: str) -> None:
    db = database_config({"DATABASE_URL": f"{scheme}://app:p%40ss%3Aw%2Fo%3Frd@db:5433/app?sslmode=verify-full"
                                          "&sslrootcert=/etc/ssl/ca.crt"})
    assert db.params["password"] == "p@ss:w/o?rd"
    assert db.params["sslmode"] == "verify-full" and db.params["sslrootcert"] == "/etc/ssl/ca.crt"
    assert "p@ss" not in db.description


def test_password_file_overrides_and_is_redacted(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-the-secret\n")
    db = database_config({"DATABASE_URL": "postgres://app:in-the-url@db/app", "DATABASE_PASSWORD_FILE": str(secret)})
    assert db.params["password"] == "from-the-secret"
    assert redact("oops from-the-secret and in-the-url") == "oops *** and ***"


def test_pg_variables_without_url() -> None:
    db = database_config({"PGHOST": "db.internal", "PGUSER": "app", "PGDATABASE": "app"})
    assert "host" not in db.params  # libpq reads PG* itself
    assert db.description == "app@db.internal:5432/app"


def test_user_application_name_is_kept() -> None:
    db = database_config({"DATABASE_URL": "postgres://db/app?application_name=release-42"})
    assert db.params["application_name"] == "release-42"


def test_redaction_of_urls_and_conninfo() -> None:
    register_secret("hunter2")
    assert redact("postgres://app:whatever@db/app") == "postgres://app:***@db/app"
    assert redact("host=db password='x y' user=app") == "host=db password=*** user=app"
    assert redact("password=hunter2") == "password=***"
    assert redact("said hunter2 twice: hunter2") == "said *** twice: ***"
