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

A repo may stand for many tenants migrated with the same migrations (migrator.tenants): `tenants = [...]`
lists them, or `tenants_query = "SELECT ..."` reads them from the repo's database; `tenant_kind` says whether
each is a schema of that database (the default) or a database on the same server.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from migrator import alembic_ini
from migrator.config import read_text_file, validate_option
from migrator.errors import ConfigError

DEFAULT_NAME = "default"
TENANT_KEYS = {"tenants", "tenants_query", "tenant_kind", "tenant_shared_schemas"}
KEYS = {"name", "url_env", "password_file_env", "script_location", "seeds", "version_table",
        "version_table_schema", "version_table_schema_env", "alembic_ini", "validate", *TENANT_KEYS}
LISTS = {"tenants", "tenant_shared_schemas"}  # the keys whose value is a list of strings; every other is a string
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONFIG_FILE_MAX = 1024 * 1024  # bytes of migrator.toml or pyproject.toml read, at most
_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
# A tenant's schema or database name: an identifier PostgreSQL accepts quoted, within NAMEDATALEN, without the
# quote and control characters that would need escaping in a message or a search_path.
TENANT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$", re.ASCII)
TENANT_KINDS = ("schema", "database")


class Tenants(NamedTuple):
    """How a repo's tenants are found: listed in the config (`names`), or by `query` on the repo's database.

    `kind` "schema": each tenant is a schema of the repo's database, migrated with search_path set to it (then
    the `shared` schemas); "database": each is a database on the repo's server, named by the tenant."""

    kind: str = "schema"
    names: tuple[str, ...] | None = None
    query: str | None = None
    shared: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind}s"


class Repo(NamedTuple):
    """One database: where its URL comes from, its scripts, its seeds and its version table."""

    name: str
    project_dir: Path
    script_location: Path
    seeds: Path
    url_env: str = "DATABASE_URL"
    password_file_env: str = "DATABASE_PASSWORD_FILE"  # noqa: S105 (the name of a variable, not a password)
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    tenants: Tenants | None = None
    # The project's alembic.ini, relative to project_dir, read when it is there (not in the migration image):
    # another one for a project run with `alembic -c conf/alembic.ini`.
    alembic_ini: str = alembic_ini.FILE
    validate: str | None = None  # error, warn or off (migrator.validation); MIGRATOR_VALIDATE overrides it

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
    repos = [_repo(project_dir, source, entry, env) for entry in entries]
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
        if not os.path.lexists(path):
            raise ConfigError(f"MIGRATOR_CONFIG={explicit} not found")
        return str(path), _read_toml(f"MIGRATOR_CONFIG={explicit}", path)
    # Whatever carries the name is the config file: a FIFO or a dangling link is an error, not "no file".
    toml_file = project_dir / "migrator.toml"
    if os.path.lexists(toml_file):
        return str(toml_file), _read_toml(str(toml_file), toml_file)
    pyproject = project_dir / "pyproject.toml"
    if os.path.lexists(pyproject):
        tool = _read_toml(str(pyproject), pyproject).get("tool", {})
        section = tool.get("migrator") if isinstance(tool, dict) else None
        if section is not None:
            if not isinstance(section, dict):
                raise ConfigError(f"{pyproject}: [tool.migrator] must be a table")
            return f"{pyproject} [tool.migrator]", section
    return "defaults", {}


def _read_toml(what: str, path: Path) -> dict[str, Any]:
    import tomllib  # noqa: PLC0415  (only projects with a config file pay for it)

    text = read_text_file(what, path, CONFIG_FILE_MAX)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} cannot be read as TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} cannot be read as TOML: nested too deeply") from None


def project_directory(path: Path | None) -> Path:
    """The project directory (default: the working directory), absolute; ConfigError when unusable."""
    where = _resolve(path if path is not None else Path.cwd(), "project directory")
    kind = _kind(where)
    if kind != "directory":
        raise ConfigError(f"project directory {where} {_problem(kind, 'directory')}")
    return where


def _script_location(path: Path, prefix: str) -> Path:
    """The Alembic script directory at `path`, resolved; it must hold an env.py."""
    where = _resolve(path, prefix + "migrations directory")
    kind, env_py = _kind(where), _kind(where / "env.py")
    if kind == "directory" and env_py == "file":
        return where
    hint = "; run from the project directory or pass --project-dir"
    if kind == "missing":
        problem = "not found" + hint
    elif kind != "directory":
        problem = _problem(kind, "directory")
    elif env_py == "missing":
        problem = "has no env.py (not an Alembic script directory)" + hint
    else:
        problem = f"has an env.py that {_problem(env_py, 'file')}"
    raise ConfigError(f"{prefix}migrations directory {where} {problem}")


def _resolve(path: Path, what: str) -> Path:
    """`path` made absolute with its symlinks resolved; a symlink loop is a ConfigError naming the path."""
    loop = f"{what} {path.absolute()} is a symlink loop (too many levels of symbolic links)"
    try:
        resolved = path.resolve()
    except RuntimeError:  # how Python before 3.13 reports a loop, even when not strict
        raise ConfigError(loop) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path.absolute()} cannot be read: {exc.strerror}") from None
    if _kind(resolved) == "loop":  # Python 3.13 returns the path where the loop starts
        raise ConfigError(loop)
    return resolved


def _kind(path: Path) -> str:
    """directory, file, missing, loop, other or unreadable: what `path` is, its symlinks followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return {errno.ENOENT: "missing", errno.ENOTDIR: "missing", errno.ELOOP: "loop"}.get(exc.errno or 0,
                                                                                            "unreadable")
    return "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _problem(kind: str, wanted: str) -> str:
    """Why a path of this `kind` is not the `wanted` directory or file, in words."""
    return {"missing": "not found", "loop": "is a symlink loop (too many levels of symbolic links)",
            "unreadable": "cannot be read", "directory": "is a directory",
            "file": "is a file", "other": f"is not a {wanted}"}[kind]


def _ini_default(project_dir: Path, ini_name: str, key: str) -> str | None:
    """alembic.ini's value of `key`, which `alembic` would use, when migrator.toml does not set it."""
    ini = alembic_ini.read(project_dir, ini_name)
    return getattr(ini, key) if ini is not None else None


def _default_location(project_dir: Path, ini_name: str) -> Path:
    """alembic.ini's script_location when the project has one (so that `alembic` and `migrator` agree), else
    migrations/."""
    ini = alembic_ini.read(project_dir, ini_name)
    if ini is not None and ini.script_location is not None:
        return ini.script_location
    return project_dir / "migrations"


def _repo(project_dir: Path, source: str, entry: Any, env: Mapping[str, str]) -> Repo:
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
    if len(strings) + len(LISTS & set(entry)) != len(entry) or LISTS & set(strings):
        raise ConfigError(f"{where}: every value must be a string, except {' and '.join(sorted(LISTS))}: a list "
                          "of strings")
    for key in ("url_env", "password_file_env", "version_table_schema_env"):
        if key in strings and not _ENV_VAR.match(strings[key]):
            raise ConfigError(f"{where}: {key} must be an environment variable name, not {strings[key]!r}")
    for key in ("version_table", "version_table_schema"):
        if key in strings and not _SQL_NAME.match(strings[key]):
            raise ConfigError(f"{where}: {key} must be a plain SQL identifier, not {strings[key]!r}")
    prefix = "" if source == "defaults" else where + ": "
    ini_name = strings.get("alembic_ini", alembic_ini.FILE)
    configured = strings.get("script_location")
    script_location = _script_location(project_dir / configured if configured else
                                       _default_location(project_dir, ini_name), prefix)
    seeds = _resolve(project_dir / strings.get("seeds", "seeds"), prefix + "seeds directory")
    seeds_kind = _kind(seeds)
    # The default seeds/ may be absent (or something else: `seed` says so); a configured one must be there.
    if seeds_kind == "loop" or ("seeds" in strings and seeds_kind != "directory"):
        raise ConfigError(f"{prefix}seeds directory {seeds} {_problem(seeds_kind, 'directory')}")
    tenants = _tenants(where, entry)
    if tenants is not None and tenants.kind == "schema" and {"version_table_schema", "version_table_schema_env"} & set(
            strings):
        raise ConfigError(f"{where}: version_table_schema cannot be set with schema tenants: each tenant's version "
                          "table is in its own schema")
    return Repo(
        name=name, project_dir=project_dir, script_location=script_location, seeds=seeds, tenants=tenants,
        url_env=strings.get("url_env", "DATABASE_URL"),
        password_file_env=strings.get("password_file_env", "DATABASE_PASSWORD_FILE"),
        version_table=strings.get("version_table") or _ini_default(project_dir, ini_name, "version_table")
        or "alembic_version",
        version_table_schema=_schema(where, strings, env) or _ini_default(project_dir, ini_name,
                                                                           "version_table_schema"),
        alembic_ini=ini_name,
        validate=validate_option(f"{where}: validate", strings["validate"]) if "validate" in strings else None,
    )


def _schema(where: str, strings: dict[str, str], env: Mapping[str, str]) -> str | None:
    """version_table_schema, or the value of the variable version_table_schema_env names when it is set (an env.py
    that computed it from the environment, carried over by init --adopt)."""
    variable = strings.get("version_table_schema_env")
    value = env.get(variable, "").strip() if variable else ""
    if not value:
        return strings.get("version_table_schema")
    if not _SQL_NAME.match(value):
        raise ConfigError(f"{where}: {variable}={value!r} (version_table_schema_env) is not a plain SQL identifier")
    return value


def _tenants(where: str, entry: dict[str, Any]) -> Tenants | None:
    """The repo's tenants settings, validated; None when it has none (one database, as before)."""
    if not TENANT_KEYS & set(entry):
        return None
    names, query = entry.get("tenants"), entry.get("tenants_query")
    if (names is None) == (query is None):
        raise ConfigError(f"{where}: set one of tenants (a list) or tenants_query (a SELECT returning one column of "
                          "names), not " + ("both" if names is not None else "neither"))
    kind = entry.get("tenant_kind", "schema")
    if kind not in TENANT_KINDS:
        raise ConfigError(f"{where}: tenant_kind must be schema or database, not {kind!r}")
    shared = tuple(entry.get("tenant_shared_schemas", ()))
    if shared and kind != "schema":
        raise ConfigError(f"{where}: tenant_shared_schemas is for schema tenants (tenant_kind = \"schema\")")
    for schema in shared:
        if not isinstance(schema, str) or not _SQL_NAME.match(schema):
            raise ConfigError(f"{where}: tenant_shared_schemas must list plain SQL identifiers, not {schema!r}")
    if names is not None:
        return Tenants(kind, check_tenant_names(f"{where}: tenants", names), None, shared)
    text = str(query).strip().removesuffix(";").strip()
    if not text:
        raise ConfigError(f"{where}: tenants_query is empty")
    return Tenants(kind, None, text, shared)


def check_tenant_names(what: str, names: list[Any]) -> tuple[str, ...]:
    """`names` as tenant names: each a name TENANT_NAME accepts, none repeated; ConfigError naming the first
    that is not."""
    for name in names:
        if not isinstance(name, str) or not TENANT_NAME.match(name):
            raise ConfigError(f"{what}: {name!r} is not a tenant name (letters, digits, _, $ or -, starting with a "
                              "letter or _, at most 63 characters)")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what}: {name!r} is listed twice")
        seen.add(name)
    return tuple(names)
