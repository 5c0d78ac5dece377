"""`migrator init`: scaffold a migrator project for an existing app, or adopt an existing Alembic project.

`init` writes, in the project directory: migrations/ (an env.py that delegates to migrator, the revision
template, versions/), seeds/, migrator.toml, migrator.Dockerfile (the migrator image plus this project's
migrations and seeds) with its .dockerignore, and deploy/migrator-values.yaml (values for migrator's Helm chart).

`init --adopt` takes over the Alembic project named by alembic.ini (or pyproject's [tool.alembic]) in place:
its versions/ and script.py.mako stay, its env.py is kept as env.py.orig and rewritten to delegate to migrator,
carrying over target_metadata when that is safe (see carry_metadata), and the same files are added beside it.

Every path is checked before anything is written and nothing that exists is overwritten: a path in the way is a
ConfigError (exit 2) naming it, with nothing written. A write that fails half-way removes what it wrote.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from migrator import __version__
from migrator.env_adoption import (
    BACKUP,
    VERSION_OPTIONS,
    carry_options,
    find_models,
    metadata_block,
    python_literal,
    refuse_failures,
    wrap,
)
from migrator.env_notes import leftovers
from migrator.errors import ConfigError
from migrator.metadata_capture import capture
from migrator.redaction import redact
from migrator.revision_imports import missing_in_image

TEMPLATES = Path(__file__).parent / "templates"
VALUES = Path("deploy") / "migrator-values.yaml"


@dataclass
class Plan:
    """What init will do: new files (written in order), an env.py to rewrite, and what to tell the user."""

    project_dir: Path
    claims: list[Path] = field(default_factory=list)  # paths that must not exist: new files and new directories
    files: dict[Path, str] = field(default_factory=dict)
    rewrite: tuple[Path, str] | None = None
    report: list[str] = field(default_factory=list)

    def add(self, relative: Path | str, text: str, what: str, claim: Path | str | None = None) -> None:
        path = self.project_dir / relative
        self.claims.append(self.project_dir / (claim if claim is not None else relative))
        self.files[path] = text
        self.report.append(f"created {relative}: {what}")


def init(project_dir: Path, adopt: bool = False, config: str | None = None) -> list[str]:
    """Scaffold (or with `adopt`, take over) the project in `project_dir`, whose alembic.ini is `config` (relative
    to it) when not ./alembic.ini; returns what it did, line by line."""
    if not project_dir.is_dir():
        raise ConfigError(f"init: project directory {project_dir} not found")
    if config is not None and not adopt:
        raise ConfigError("init: --config names the alembic.ini of a project to adopt: pass --adopt too")
    plan = _adopt_plan(project_dir, config) if adopt else _init_plan(project_dir)
    _check(plan)
    _write(plan)
    return plan.report


# --- a new project --------------------------------------------------------------------------------------

INIT_ORIGIN = """\
Written by `migrator init`. For `alembic revision --autogenerate`, pass your models' metadata through a function
(the migration image holds migrations and seeds, not your app's code), with its naming convention, which the
constraint and index names your migrations create depend on, as a literal:

    def target_metadata() -> Any:
        from myapp.models import Base

        return Base.metadata


    run_migrations(target_metadata, naming_convention={"ix": "ix_%(column_0_label)s", ...})"""


def _init_plan(project_dir: Path) -> Plan:
    ini = project_dir / "alembic.ini"
    if ini.exists():
        raise ConfigError(f"init: {ini} exists: an Alembic project? `migrator init --adopt` takes it over "
                          "(nothing was written)")
    plan = Plan(project_dir)
    values = _values(project_dir, "migrations")
    plan.add("migrations/env.py", _render("env.py.tmpl", origin=INIT_ORIGIN, metadata="", typing="",
                                          arguments="target_metadata=None"),
             "the Alembic environment; it delegates to migrator", claim="migrations")
    plan.add("migrations/script.py.mako", _template("script.py.mako"), "the template of `migrator new`",
             claim="migrations")
    plan.add("migrations/versions/.gitkeep", "", "the revisions' directory (empty)", claim="migrations")
    _add_common(plan, values, extra="")
    return plan


def _add_common(plan: Plan, values: dict[str, str], extra: str) -> None:
    """What init and adopt both add: seeds/, migrator.toml, the image's Dockerfile and the Helm values."""
    plan.add("seeds/README.md", _render("seeds-README.md.tmpl", **values), "how seeds are written (none yet)",
             claim="seeds")
    plan.add("migrator.toml", _render("migrator.toml.tmpl", extra=extra, **values), "migrator's configuration")
    plan.add("migrator.Dockerfile", _render("migrator.Dockerfile.tmpl", **values),
             "the migration image: the migrator image plus migrations, seeds and migrator.toml")
    plan.add("migrator.Dockerfile.dockerignore", _render("migrator.Dockerfile.dockerignore.tmpl", **values),
             "its build context: only those")
    plan.add(VALUES, _render("values.yaml.tmpl", **values), "values for migrator's Helm chart (replace the examples)")


def _values(project_dir: Path, script_location: str) -> dict[str, str]:
    name = re.sub(r"[^a-z0-9]+", "-", project_dir.name.lower()).strip("-")[:40].strip("-") or "app"
    return {"project": name, "database": name.replace("-", "_"), "script_location": script_location,
            "version": __version__}


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _render(name: str, **values: str) -> str:
    text = _template(name)
    for key, value in values.items():
        text = text.replace("{{ " + key + " }}", value)
    left = re.search(r"\{\{ \w+ \}\}", text)
    assert left is None, f"{name}: {left[0] if left else ''} has no value"
    return text


# --- adopting an Alembic project ------------------------------------------------------------------------

def _adopt_plan(project_dir: Path, config: str | None) -> Plan:
    script_dir, ini_options, source_name = _alembic_location(project_dir, config)
    env_py = script_dir / "env.py"
    if not env_py.is_file():
        raise ConfigError(f"init --adopt: {source_name} names {script_dir}, which has no env.py")
    try:
        relative = script_dir.relative_to(project_dir)
    except ValueError:
        raise ConfigError(f"init --adopt: {source_name} names {script_dir}, outside {project_dir}: migrator "
                          "needs the script directory inside the project (it copies it into the image)") from None
    try:
        source = env_py.read_bytes().decode("utf-8")  # bytes: the backup keeps the original's line endings
    except UnicodeDecodeError:
        raise ConfigError(f"init --adopt: {env_py} is not UTF-8 text (nothing was written)") from None
    if "migrator.alembic_env" in source:
        raise ConfigError(f"init --adopt: {env_py} already delegates to migrator (nothing was written)")
    try:
        tree = ast.parse(source, str(env_py))
    except SyntaxError as exc:
        raise ConfigError(f"init --adopt: {env_py} is not valid Python (line {exc.lineno}): {exc.msg}") from None

    models = find_models(tree, source)
    captured = None
    if models is not None:
        what = "the Flask app's Flask-Migrate metadata" if models.flask else \
            f"{BACKUP}'s target_metadata = {models.shown}"
        captured = capture(project_dir, models.probe_request(_sys_path(project_dir, ini_options), str(env_py)), what)
        refuse_failures(models, captured)
    metadata = metadata_block(models, captured)
    options = carry_options(tree, ini_options, captured if models is not None and models.flask else None)
    location = relative.as_posix()
    plan = Plan(project_dir)
    plan.add(relative / BACKUP, source, "the original env.py, for reference (migrator never reads it)")
    logging_kept = "fileConfig(" in source
    arguments = _arguments([
        "target_metadata" if metadata.block else "target_metadata=None",
        *(["naming_convention=NAMING_CONVENTION"] if metadata.block else []),
        *(["file_config=True"] if logging_kept else []),
        *(f"{key}={python_literal(value)}" for key, value in options.carried.items())])
    origin = (f"Written by `migrator init --adopt`, which kept the original as {BACKUP} (it carried over "
              f"{metadata.summary}, {options.summary}"
              f"{', and its logging set-up: alembic.ini, under the plain alembic command' if logging_kept else ''}).")
    plan.rewrite = (env_py, _render("env.py.tmpl", origin=wrap(origin), metadata=metadata.block,
                                    typing="from typing import Any\n\n" if metadata.block else "",
                                    arguments=arguments))
    plan.report.append(f"rewrote {relative / 'env.py'}: it delegates to migrator, with {metadata.summary} "
                       f"and {options.summary}")
    if not (script_dir / "script.py.mako").exists():
        plan.add(relative / "script.py.mako", _template("script.py.mako"), "the template of `migrator new`")
    if not (script_dir / "versions").is_dir():
        plan.add(relative / "versions" / ".gitkeep", "", "the revisions' directory (empty)",
                 claim=relative / "versions")
    revisions = len(list((script_dir / "versions").glob("*.py")))
    plan.report.append(f"kept {location}/versions/ ({revisions} revision file(s)) and its script.py.mako")
    extra = "".join(f"# As in {BACKUP}:\n" * (not i) + f"{key} = {json.dumps(value)}\n"
                    for i, (key, value) in enumerate(options.versions.items())) + _ini_setting(project_dir, config)
    _add_common(plan, _values(project_dir, location), extra=extra)
    if captured is not None:
        plan.report.append(f"imported {models.shown if models and not models.flask else 'the Flask app'} "
                           f"({captured.tables} table(s)) with {captured.python} to capture its naming convention")
    notes = [*(models.notes if models else []), *metadata.notes, *options.notes, *leftovers(tree, metadata.carried),
             *missing_in_image(script_dir, project_dir, _sys_path(project_dir, ini_options))]
    if models is not None and models.flask:
        notes.append("the Flask app's database URL (SQLALCHEMY_DATABASE_URI) is no longer read: `flask db upgrade`, "
                     "`migrator` and `alembic` connect from DATABASE_URL (or PGHOST, PGUSER, ...)")
    if ini_options.get("sqlalchemy.url", "").strip():
        notes.append(f"{source_name}'s sqlalchemy.url is no longer read: `migrator` and `alembic` both connect "
                     "from DATABASE_URL (or PGHOST, PGUSER, ...)")
    plan.report += [f"note: {redact(note)}" for note in notes]  # notes quote the env.py, which may hold a URL
    return plan


def _alembic_location(project_dir: Path, config: str | None) -> tuple[Path, dict[str, str], str]:
    """The script directory named by alembic.ini (`config`, as `alembic -c` names it, or pyproject's
    [tool.alembic], or Flask-Migrate's migrations/alembic.ini), and the ini's options."""
    # Alembic reads both files (alembic.ini first, then pyproject's [tool.alembic]): its pyproject template puts
    # script_location in the toml and leaves the ini only sqlalchemy.url and logging.
    toml = _pyproject_options(project_dir)
    if config is not None:
        return _ini_location(project_dir, _config_file(project_dir, config), toml)
    ini = project_dir / "alembic.ini"
    if ini.is_file():
        return _ini_location(project_dir, ini, toml)
    if toml is not None:
        source = f"{project_dir / 'pyproject.toml'} [tool.alembic]"
        return _script_dir(project_dir, toml, source), toml, str(project_dir / "pyproject.toml")
    flask_ini = project_dir / "migrations" / "alembic.ini"
    if flask_ini.is_file():  # Flask-Migrate's layout: the ini in the script directory, which `flask db` names
        return flask_ini.parent.resolve(), {}, str(flask_ini)
    elsewhere = sorted(p.relative_to(project_dir).as_posix() for p in project_dir.glob("*/alembic.ini"))
    hint = f"; {' and '.join(elsewhere)} exists: pass it as `init --adopt --config {elsewhere[0]}` (as `alembic " \
        f"-c`)" if elsewhere else ": nothing to adopt; `migrator init` starts a new project"
    raise ConfigError(f"init --adopt: no alembic.ini (nor [tool.alembic] in pyproject.toml, nor migrations/alembic.ini)"
                      f" in {project_dir}{hint}")


def _pyproject_options(project_dir: Path) -> dict[str, str] | None:
    """pyproject.toml's [tool.alembic] as ini-style strings (a list, like prepend_sys_path, space-separated), or
    None when it has none."""
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        return None
    import tomllib  # noqa: PLC0415  (only adopt reads it)

    try:
        table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("alembic")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"init --adopt: {pyproject} cannot be read as TOML: {exc}") from None
    if not isinstance(table, dict):
        return None
    return {key: (" ".join(map(str, value)) if isinstance(value, list) else str(value))
            .replace("%(here)s", str(project_dir)) for key, value in table.items()}


def _config_file(project_dir: Path, config: str) -> Path:
    """--config's file: inside the project (relative to it, as `alembic -c` is to where alembic runs)."""
    path = (project_dir / config).resolve()
    if not path.is_file():
        raise ConfigError(f"init --adopt: --config {config}: no such file in {project_dir} (nothing was written)")
    if not path.is_relative_to(project_dir):
        raise ConfigError(f"init --adopt: --config {config} is outside {project_dir}: migrator.toml names it "
                          "relative to the project (nothing was written)")
    return path


def _ini_location(project_dir: Path, ini: Path,
                  toml: dict[str, str] | None = None) -> tuple[Path, dict[str, str], str]:
    # %(here)s is the ini's directory; a relative script_location is relative to where alembic runs (the project)
    parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
    try:
        parser.read(ini, encoding="utf-8")
        section = parser["alembic"] if parser.has_section("alembic") else {}
        # Only the options read here are interpolated: a stray % elsewhere (a URL) is Alembic's business.
        options = {key: parser.get("alembic", key, raw=key not in ("script_location", *VERSION_OPTIONS))
                   for key in section}
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"init --adopt: {ini} cannot be read: {' '.join(str(exc).split())}") from None
    if not options.get("script_location", "").strip() and toml and toml.get("script_location", "").strip():
        merged = {**toml, **options}  # the ini's own settings first, as Alembic reads them
        return _script_dir(project_dir, merged, f"{ini} (pyproject.toml's [tool.alembic])"), merged, str(ini)
    named = [name for name in parser.sections() if name != "alembic" and parser.has_option(name, "script_location")
             and not parser.has_option("alembic", "script_location")]
    if named:  # `alembic --name core`: each section its own script directory (Netflix/dispatch)
        raise ConfigError(f"init --adopt: {ini} names its script directories in the sections "
                          f"{', '.join(f'[{n}]' for n in named)} (`alembic --name`), not in [alembic]: migrator "
                          "adopts the script directory of an [alembic] section: give one its own ini with that "
                          "section, adopt it with --config, and list the others as [[repos]] in migrator.toml "
                          "(nothing was written)")
    return _script_dir(project_dir, options, str(ini)), options, str(ini)


def _script_dir(project_dir: Path, options: dict[str, str], source: str) -> Path:
    location = options.get("script_location", "").strip()
    if not location:
        raise ConfigError(f"init --adopt: {source} sets no script_location (its tool may set it in code): add "
                          f"`script_location = {_suggested_location(Path(source))}` to its [alembic] section, then run "
                          "init --adopt again (nothing was written)")
    if ":" in location and not Path(location).is_absolute():
        raise ConfigError(f"init --adopt: {source}: script_location {location!r} names a package resource; "
                          "migrator needs a directory")
    if options.get("version_locations", "").strip():
        raise ConfigError(f"init --adopt: {source} sets version_locations: migrator reads revisions only from "
                          f"{location}/versions (move them there first)")
    return (project_dir / location).resolve()


def _ini_setting(project_dir: Path, config: str | None) -> str:
    """migrator.toml's alembic_ini, for an ini that is not ./alembic.ini: migrator then reads the one `alembic -c`
    reads."""
    if config is None:
        return ""
    name = _config_file(project_dir, config).relative_to(project_dir).as_posix()
    if name == "alembic.ini":
        return ""
    return (f"# The Alembic config `alembic -c {name}` reads (its script_location is relative to this directory, "
            f"where\n# alembic runs): migrator reads it too, where it is there (the migration image has none).\n"
            f"alembic_ini = {json.dumps(name)}\n")


def _suggested_location(ini: Path) -> str:
    """The script_location that names the directory holding env.py, beside the ini or below it."""
    if (ini.parent / "env.py").is_file():
        return "%(here)s"
    below = sorted(p.parent.name for p in ini.parent.glob("*/env.py"))
    return f"%(here)s/{below[0]}" if len(below) == 1 else "<the directory holding env.py>"


def _arguments(arguments: list[str]) -> str:
    """run_migrations()'s arguments, on one line when they fit, else one per line."""
    one_line = ", ".join(arguments)
    return one_line if len(one_line) < 100 else "\n" + "".join(f"    {a},\n" for a in arguments)


def _sys_path(project_dir: Path, ini_options: dict[str, str]) -> list[str]:
    """Where Alembic looks for the app's modules: alembic.ini's prepend_sys_path (relative to the project)."""
    entries = ini_options.get("prepend_sys_path", ".").replace(os.pathsep, " ").split()
    return [str((project_dir / entry).resolve()) for entry in entries]


# --- checking and writing -------------------------------------------------------------------------------

def _check(plan: Plan) -> None:
    for path in dict.fromkeys(plan.claims):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"init: {path} exists; nothing was written (init never overwrites a file)")
        for parent in path.relative_to(plan.project_dir).parents:
            where = plan.project_dir / parent
            if where.exists() and not where.is_dir():
                raise ConfigError(f"init: {where} exists and is not a directory; nothing was written")


def _write(plan: Plan) -> None:
    created: list[Path] = []
    try:
        for path, text in plan.files.items():
            for directory in reversed([path.parent, *path.parent.parents]):
                if not directory.exists():
                    directory.mkdir()
                    created.append(directory)
            with path.open("x", encoding="utf-8") as out:  # "x": never overwrite, even in a race
                created.append(path)
                out.write(text)
        if plan.rewrite is not None:
            env_py, text = plan.rewrite
            temporary = env_py.with_name(f".{env_py.name}.migrator-init")
            created.append(temporary)
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, env_py)  # atomic: the env.py is the old one or the new one, never half
            created.remove(temporary)
    except OSError as exc:
        for path in reversed(created):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        raise ConfigError(f"init: cannot write {exc.filename}: {exc.strerror}; nothing was written") from None
