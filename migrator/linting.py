"""`migrator lint`: squawk (PyPI squawk-cli) on the SQL each migration would run.

Dangerous DDL (a NOT NULL column without a default, an index built without CONCURRENTLY, a constraint
validated under an exclusive lock) is caught in CI instead of in production. Squawk reads the project's
`.squawk.toml`, where rules that do not fit are excluded one by one, each with its reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from migrator.errors import ConfigError, LintFailed
from migrator.statements import describe


def without_version_table(sql: str, version_table: str) -> str:
    """Alembic's own bookkeeping statements are not the migration's DDL: leave them out of the review."""
    kept = []
    for chunk in sql.split("\n\n"):
        statement = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        op = describe(statement) if statement else None
        if op is not None and op.touches(version_table):
            continue
        kept.append(chunk)
    return "\n\n".join(kept)


# squawk needs only where to find programs, a home, the locale and a temporary directory; it reads the SQL
# files and .squawk.toml it is given, never a database. Anything naming a database or a secret stays out,
# also under an allowed prefix (SQUAWK_GITHUB_TOKEN is for its GitHub comments, which lint does not use).
SQUAWK_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "NO_COLOR")
SQUAWK_ENV_PREFIXES = ("LC_", "SQUAWK_")
_SECRET_NAME = re.compile(r"^(?:DATABASE_|PG|MIGRATOR_)|_URL$|PASSWORD|SECRET|TOKEN|CREDENTIAL|KEY", re.IGNORECASE)


def squawk_environment(env: Mapping[str, str], *, color: bool) -> dict[str, str]:
    """The environment squawk runs in: the variables it needs and nothing that names a database or a secret."""
    kept = {name: value for name, value in env.items()
            if (name in SQUAWK_ENV or name.startswith(SQUAWK_ENV_PREFIXES)) and not _SECRET_NAME.search(name)}
    if not color:
        kept["NO_COLOR"] = "1"
    return kept


# What migrator itself does on every migration's session (MIGRATOR_DDL_LOCK_TIMEOUT, MIGRATOR_STATEMENT_TIMEOUT):
# lint leaves these rules out itself, for every project, whatever its .squawk.toml says. init does not write a
# .squawk.toml for them: init never overwrites a file, so an adopted project's own would stay without them, and
# the reason holds for migrator, not for the project's configuration.
SET_BY_MIGRATOR = ("require-lock-timeout", "require-statement-timeout")


def excluded_rules(config: Path) -> list[str]:
    """The project's excluded_rules and SET_BY_MIGRATOR: squawk's --exclude replaces the file's list, not adds."""
    rules: list[str] = []
    if config.is_file():
        import tomllib  # noqa: PLC0415  (lint only)

        try:
            found = tomllib.loads(config.read_text(encoding="utf-8")).get("excluded_rules", [])
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"{config} cannot be read as TOML: {exc}") from None
        if not isinstance(found, list) or not all(isinstance(rule, str) for rule in found):
            raise ConfigError(f"{config}: excluded_rules must be a list of rule names")
        rules += found
    return list(dict.fromkeys([*rules, *SET_BY_MIGRATOR]))


def squawk(files: list[tuple[str, str]], project_dir: Path) -> str:
    """Write each (name, sql) and lint them together; the report, or LintFailed carrying it."""
    # A venv's console scripts sit beside its python, whether or not the venv is on PATH.
    executable = shutil.which("squawk") or shutil.which("squawk", path=str(Path(sys.executable).parent))
    if executable is None:
        raise ConfigError("squawk not found on PATH: pip install squawk-cli (lint is a CI tool, not in the image)")
    if not files:
        return "no migrations to lint"
    config = project_dir / ".squawk.toml"
    options = [*(["--config", str(config)] if config.is_file() else []),
               f"--exclude={','.join(excluded_rules(config))}"]
    color = sys.stdout.isatty()
    with tempfile.TemporaryDirectory(prefix="migrator-lint-") as tmp:
        paths = []
        for name, text in files:
            path = Path(tmp) / name
            path.write_text(text)
            paths.append(str(path))
        env = squawk_environment(os.environ, color=color)

        def run(reporter: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([executable, *options, f"--reporter={reporter}", *paths], capture_output=True,
                                  text=True, check=False, cwd=tmp, env=env)

        counted = run("json")
        problems = _problems(counted.stdout)
        # squawk's tty report colours its text whatever NO_COLOR says: plain gcc lines for a pipe or a file.
        shown = run("tty" if color else "gcc") if problems or counted.returncode != 0 else counted
    report = (shown.stdout + shown.stderr).replace(tmp + "/", "") if shown is not counted else ""
    if problems:
        checked = len({problem.get("file") for problem in problems})
        raise LintFailed(f"squawk found {len(problems)} problem(s) in {checked} of {len(files)} migration(s)",
                         report=report)
    if counted.returncode != 0:
        raise LintFailed(f"squawk failed (exit {counted.returncode})", report=report)
    return f"squawk: {len(files)} migration(s), no problems"


def _problems(output: str) -> list[dict[str, object]]:
    """squawk's JSON report: one object per problem."""
    try:
        found = json.loads(output) if output.strip() else []
    except json.JSONDecodeError:
        return []
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
