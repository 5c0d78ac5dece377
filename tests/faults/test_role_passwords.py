"""Role passwords written in migration SQL never reach a log line, an error, the termination message or the
migration history, at any log level and in either log format: CREATE ROLE ... PASSWORD '...', ENCRYPTED PASSWORD,
U&'...', E'...', $$...$$, and inside DO blocks, where the literal is quoted within quotes (''...'') or deeper
(''''...''''). The last statement fails with a syntax error, so PostgreSQL quotes it back in its error.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import add_revision, query
from tests.faults.helpers import BASE, Migrator, at_base, versions

REV = "20240101000001"
SECRETS = ["pw-one", "pw-two", "pw-three", "pw-four", "pw-five", "pw-six", "pw-seven", "pw-eight"]
Q = "'"


def statements(suffix: str) -> list[str]:
    """The migration's SQL, as the server receives it; Q is one single quote."""
    a, b = f"ra_{suffix}", f"rb_{suffix}"
    return [
        f"CREATE ROLE {a} LOGIN PASSWORD {Q}pw-one-x{Q}",
        f"ALTER ROLE {a} WITH ENCRYPTED PASSWORD {Q}pw-two-x{Q} VALID UNTIL {Q}infinity{Q}",
        f"CREATE ROLE {b} PASSWORD U&{Q}pw-three-\\0078{Q}",
        f"DO $$ BEGIN EXECUTE {Q}ALTER ROLE {b} PASSWORD {Q * 2}pw-four-it{Q * 4}s{Q * 2}{Q}; END $$",
        f"DO $o$ BEGIN EXECUTE {Q}DO $i$ BEGIN EXECUTE {Q * 2}ALTER ROLE {b} PASSWORD {Q * 4}pw-five-x{Q * 4}"
        f"{Q * 2}; END $i${Q}; END $o$",
        f"ALTER ROLE {b} PASSWORD $p$pw-six-x$p$",
        f"ALTER USER {b} WITH PASSWORD E{Q}pw-seven-\\{Q}x{Q}",
        # An error that quotes a statement (as an application's function may): the failure's own line.
        f"DO $$ BEGIN RAISE EXCEPTION {Q}could not run: %{Q}, {Q}ALTER ROLE {b} PASSWORD {Q * 2}pw-eight-x{Q * 3}; "
        "END $$",
    ]


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_role_passwords_are_masked_everywhere(fault_project: Path, url: str, tmp_path: Path, log_format: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    body = "\n".join(f"op.execute({sql!r})" for sql in statements(suffix))
    add_revision(fault_project, REV, BASE, body, name="roles")
    at_base(url)
    run = Migrator(["migrate"], cwd=fault_project, url=url, termination=tmp_path / "termination",
                   MIGRATOR_LOG_LEVEL="debug", MIGRATOR_LOG_FORMAT=log_format)
    result = run.finish(60)
    assert result.code == 1, result.err
    lines = result.err.splitlines()
    if log_format == "json":
        lines = [str(json.loads(line)["event"]) for line in lines]
    masked = [line for line in lines if "PASSWORD" in line.upper() and "***" in line]
    assert len(masked) >= 8, "every statement is logged, masked, and the failure quotes the last one"
    termination = (tmp_path / "termination").read_text()
    [(detail,)] = query(url, "SELECT detail FROM migrator_history WHERE revision = %s", REV)
    for text in (result.err, result.out, termination, str(detail)):
        leaked = [secret for secret in SECRETS if secret in text]
        assert leaked == [], f"{leaked} in {text}"
    assert f"could not run: ALTER ROLE rb_{suffix} PASSWORD '***'" in str(detail), detail  # kept, masked
    assert versions(url) == [BASE]
    assert query(url, "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", f"%{suffix}") == [(0,)]
