"""lint runs squawk with only the environment squawk needs: no database URL, password or token."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from migrator import linting

FORBIDDEN = {
    "DATABASE_URL": "postgres://app:Hunter2Secret@db/app", "DATABASE_PASSWORD_FILE": "/secrets/pw",
    "ANALYTICS_DATABASE_URL": "postgres://a:Hunter2Secret@db/a", "PGPASSWORD": "Hunter2Secret",
    "PGHOST": "db", "MIGRATOR_CONFIG": "x.toml", "REDIS_URL": "redis://:Hunter2Secret@r",
    "AWS_SECRET_ACCESS_KEY": "Hunter2Secret", "GITHUB_TOKEN": "Hunter2Secret", "SQUAWK_GITHUB_TOKEN": "Hunter2Secret",
    "APP_PASSWORD": "Hunter2Secret", "SENTRY_DSN": "https://Hunter2Secret@sentry", "USER": "root",
}
ALLOWED = {"PATH": None, "HOME": "/home/ci", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp",
           "SQUAWK_ASSUME_IN_TRANSACTION": "true"}


@pytest.fixture
def fake_squawk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `squawk` first on PATH that writes its environment to env.json and reports no problem."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = tmp_path / "env.json"
    script = bin_dir / "squawk"
    script.write_text(f"#!{sys.executable} -I\nimport json, os\n"
                      f"json.dump(dict(os.environ), open({str(dump)!r}, 'w'))\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for name, value in {**FORBIDDEN, **ALLOWED}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return dump


def test_squawk_gets_only_what_it_needs(fake_squawk: Path, tmp_path: Path) -> None:
    linting.squawk([("20211103022310_create_users.sql", "CREATE TABLE users (id int);\n")], tmp_path)
    seen = json.loads(fake_squawk.read_text())
    leaked = {name for name in seen if name in FORBIDDEN}
    assert not leaked, f"squawk saw {sorted(leaked)}"
    assert not [name for name, value in seen.items() if "Hunter2Secret" in value]
    # Python may add LC_CTYPE (PEP 538); nothing else beyond what was allowed.
    assert set(seen) - {"LC_CTYPE"} == {*ALLOWED, "NO_COLOR"}
    assert seen["PATH"].startswith(str(tmp_path / "bin"))


def test_squawk_environment_keeps_colour_choice() -> None:
    env = {"PATH": "/bin", "NO_COLOR": "1", "TERM": "xterm"}
    assert linting.squawk_environment(env, color=True) == {"PATH": "/bin", "NO_COLOR": "1"}
    assert linting.squawk_environment({"PATH": "/bin"}, color=False) == {"PATH": "/bin", "NO_COLOR": "1"}
