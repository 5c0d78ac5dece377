"""The databases to migrate ("repos", as in Ecto): one by default, or those listed in a config file.

Without a config file there is one repo, `default`: DATABASE_URL, `migrations/` and `seeds/` in the project
directory. A team with several databases lists them, in the order `migrate` and `seed` visit them, in
`migrator.toml` or under `[tool.migrator]` in pyproject.toml:

    [[repos]]
    name = "primary"
    url_env = "DATABASE_URL"
    script_location = "migrations"
    seeds = "seeds"

    [[repos]]
    name = "analytics"
    url_env = "ANALYTICS_DATABASE_URL"
    password_file_env = "ANALYTICS_DATABASE_PASSWORD_FILE"
    script_location = "analytics/migrations"
    seeds = "analytics/seeds"

A table without `repos` configures the single default repo (e.g. just `script_location = "db/migrations"`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError

DEFAULT_NAME = "default"
KEYS = {"name", "url_env", "password_file_env", "script_location", "seeds", "version_table",
        "version_table_schema"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class Repo:
    """One database: where its URL comes from, its scripts, its seeds and its version table."""

    name: str
    project_dir: Path
    script_location: Path
    seeds: Path
    url_env: str = "DATABASE_URL"
    password_file_env: str = "DATABASE_PASSWORD_FILE"  # noqa: S105 (the name of a variable, not a password)
    version_table: str = "alembic_version"
    version_table_schema: str | None = None

    @property
    def versions_dir(self) -> Path:
        return self.script_location / "versions"


def load_repos(project_dir: Path, env: Mapping[str, str] = os.environ) -> list[Repo]:
    """The configured repos, validated; ConfigError names the file and the entry at fault."""
    source, table = _config_table(project_dir, env)
    entries = table.get("repos")
    if entries is None:
        entries = [{**table, "name": table.get("name", DEFAULT_NAME)}]
    elif not isinstance(entries, list) or not entries or set(table) - {"repos"}:
        raise ConfigError(f"{source}: `repos` must be a non-empty list of tables ([[repos]]) and stand alone")
    repos = [_repo(project_dir, source, entry) for entry in entries]
    names = [repo.name for repo in repos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: repo names must be unique, {', '.join(duplicates)} repeats")
    return repos


def select(repos: list[Repo], name: str | None) -> list[Repo]:
    """All repos, or the one called `name`."""
    if name is None:
        return repos
    for repo in repos:
        if repo.name == name:
            return [repo]
    raise ConfigError(f"unknown repo {name!r}: configured repos are {', '.join(r.name for r in repos)}")


def _config_table(project_dir: Path, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    explicit = env.get("MIGRATOR_CONFIG", "").strip()
    if explicit:
        path = Path(explicit) if Path(explicit).is_absolute() else project_dir / explicit
        if not path.is_file():
            raise ConfigError(f"MIGRATOR_CONFIG={explicit} not found")
        return str(path), _read_toml(path)
    toml_file = project_dir / "migrator.toml"
    if toml_file.is_file():
        return str(toml_file), _read_toml(toml_file)
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {}).get("migrator")
        if tool is not None:
            return f"{pyproject} [tool.migrator]", tool
    return "defaults", {}


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # noqa: PLC0415  (only projects with a config file pay for it)

    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as TOML: {exc}") from None


def _repo(project_dir: Path, source: str, entry: Any) -> Repo:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: each repo must be a table")
    name = entry.get("name", "")
    where = f"{source}: repo {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name must be letters, digits, '-' or '_', starting with a letter")
    unknown = set(entry) - KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    strings = {k: v for k, v in entry.items() if isinstance(v, str)}
    if len(strings) != len(entry):
        raise ConfigError(f"{where}: every value must be a string")
    for key in ("url_env", "password_file_env"):
        if key in strings and not _ENV_VAR.match(strings[key]):
            raise ConfigError(f"{where}: {key} must be an environment variable name, not {strings[key]!r}")
    for key in ("version_table", "version_table_schema"):
        if key in strings and not _SQL_NAME.match(strings[key]):
            raise ConfigError(f"{where}: {key} must be a plain SQL identifier, not {strings[key]!r}")
    script_location = (project_dir / strings.get("script_location", "migrations")).resolve()
    if not (script_location / "env.py").is_file():
        missing = "not found" if not script_location.is_dir() else "has no env.py (not an Alembic script directory)"
        raise ConfigError(f"{'' if source == 'defaults' else where + ': '}migrations directory {script_location} "
                          f"{missing}; run from the project directory or pass --project-dir")
    seeds = (project_dir / strings.get("seeds", "seeds")).resolve()
    if "seeds" in strings and not seeds.is_dir():
        raise ConfigError(f"{where}: seeds directory {seeds} not found")
    return Repo(
        name=name, project_dir=project_dir, script_location=script_location, seeds=seeds,
        url_env=strings.get("url_env", "DATABASE_URL"),
        password_file_env=strings.get("password_file_env", "DATABASE_PASSWORD_FILE"),
        version_table=strings.get("version_table", "alembic_version"),
        version_table_schema=strings.get("version_table_schema"),
    )
