"""A project's alembic.ini: the `[alembic]` settings that decide which scripts and version locations Alembic
sees, so that `alembic` and `migrator` run the same migrations.

Read on every start (the init container's no-op included), so the common case costs a file read and a
substring test: configparser is imported only when the file sets something beyond the defaults.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import NamedTuple

from migrator.errors import ConfigError

FILE = "alembic.ini"
MAX_BYTES = 1 << 20
# Keys whose presence changes where scripts are found or how they are read.
LOCATION_KEYS = ("script_location", "version_locations", "recursive_version_locations", "sourceless",
                 "path_separator", "version_path_separator", "version_table", "version_table_schema")


class AlembicIni(NamedTuple):
    """What alembic.ini says about script locations (paths absolute); None when it does not say."""

    path: Path
    script_location: Path | None = None
    version_locations: tuple[Path, ...] = ()
    recursive: bool = False
    sourceless: bool = False
    version_table: str | None = None  # read by env.py (Alembic's own template passes it to configure)
    version_table_schema: str | None = None


@functools.cache
def read(project_dir: Path, name: str = FILE) -> AlembicIni | None:
    """The project's alembic.ini (`name`, relative to the project directory: migrator.toml's alembic_ini, for a
    project run with `alembic -c conf/alembic.ini`), or None when there is none (read once per process)."""
    path = project_dir / name
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES} bytes: is it really alembic.ini?")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if not any(key in text for key in LOCATION_KEYS):
        return AlembicIni(path)
    return _parse(path, text, project_dir)


def _parse(path: Path, text: str, project_dir: Path) -> AlembicIni:
    import configparser  # noqa: PLC0415  (only for an ini that sets locations)

    parser = configparser.ConfigParser(defaults={"here": str(path.parent)})
    try:
        parser.read_string(text, source=str(path))
        section = parser["alembic"] if parser.has_section("alembic") else None
        if section is None:
            return AlembicIni(path)
        values = {key: section.get(key) for key in LOCATION_KEYS}
    except (configparser.Error, ValueError) as exc:
        raise ConfigError(f"{path} cannot be parsed: {' '.join(str(exc).split())}") from None
    return AlembicIni(
        path=path,
        script_location=_path(path, values["script_location"], project_dir),
        version_locations=tuple(_path(path, p, project_dir) or project_dir for p in _split(values) if p),
        recursive=_bool(path, "recursive_version_locations", values["recursive_version_locations"]),
        sourceless=_bool(path, "sourceless", values["sourceless"]),
        version_table=values["version_table"] or None,
        version_table_schema=values["version_table_schema"] or None,
    )


def _split(values: dict[str, str | None]) -> list[str]:
    """version_locations split as Alembic splits it (path_separator, or the legacy spellings)."""
    raw = values["version_locations"] or ""
    separator = values["path_separator"] or values["version_path_separator"] or "space"
    seps = {"os": os.pathsep, ":": ":", ";": ";", "space": None, "newline": "\n"}
    sep = seps.get(separator, separator)
    parts = raw.split(sep) if sep is not None else raw.replace(",", " ").split()
    return [p.strip() for p in parts]


_RESOURCE = re.compile(r"^[A-Za-z_][\w.]*:[^/\\]")  # Alembic's "package:dir" form


def _path(ini: Path, value: str | None, project_dir: Path) -> Path | None:
    """A location alembic.ini names: a relative one is relative to where `alembic` runs (the project directory),
    not to the ini's directory, which only %(here)s names."""
    if not value:
        return None
    if _RESOURCE.match(value):
        raise ConfigError(f"{ini}: {value!r} is a package resource location; migrator needs a directory: set "
                          "script_location in migrator.toml (or use a path in alembic.ini)")
    path = Path(value)
    return path if path.is_absolute() else (project_dir / path)


def _bool(ini: Path, key: str, value: str | None) -> bool:
    if value is None or not value.strip():
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{ini}: {key} = {value!r} is not true or false")
