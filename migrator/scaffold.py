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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.errors import ConfigError
from migrator.redaction import redact

TEMPLATES = Path(__file__).parent / "templates"
BACKUP = "env.py.orig"
VALUES = Path("deploy") / "migrator-values.yaml"
# Modules an Alembic env.py imports for its own machinery; imports of anything else are the app's, kept for
# the models they define or register.
MACHINERY = {"alembic", "sqlalchemy", "migrator", *sys.stdlib_module_names}
# context.configure() options that migrator sets itself, for every run.
OWNED_OPTIONS = {"url", "connection", "target_metadata", "literal_binds", "dialect_opts", "dialect_name", "as_sql",
                 "transaction_per_migration", "output_buffer", "starting_rev", "tag", "fn"}
VERSION_OPTIONS = ("version_table", "version_table_schema")


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


def init(project_dir: Path, adopt: bool = False) -> list[str]:
    """Scaffold (or with `adopt`, take over) the project in `project_dir`; returns what it did, line by line."""
    if not project_dir.is_dir():
        raise ConfigError(f"init: project directory {project_dir} not found")
    plan = _adopt_plan(project_dir) if adopt else _init_plan(project_dir)
    _check(plan)
    _write(plan)
    return plan.report


# --- a new project --------------------------------------------------------------------------------------

INIT_ORIGIN = """\
Written by `migrator init`. For `alembic revision --autogenerate`, pass your models' metadata, imported so that
the migrator image (which holds migrations and seeds, not your app's code) still runs without it:

    try:
        from myapp.models import Base

        target_metadata = Base.metadata
    except ImportError:  # the migrator image: migrating needs no models
        target_metadata = None

    run_migrations(target_metadata=target_metadata)"""


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

def _adopt_plan(project_dir: Path) -> Plan:
    script_dir, ini_options, source_name = _alembic_location(project_dir)
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

    metadata = carry_metadata(tree)
    options = carry_options(tree, ini_options)
    location = relative.as_posix()
    plan = Plan(project_dir)
    plan.add(relative / BACKUP, source, "the original env.py, for reference (migrator never reads it)")
    arguments = ", ".join(["target_metadata=target_metadata" if metadata.block else "target_metadata=None",
                           *(f"{key}={_python(value)}" for key, value in options.carried.items())])
    origin = (f"Written by `migrator init --adopt`, which kept the original as {BACKUP} (it carried over "
              f"{metadata.summary} and {options.summary}).")
    plan.rewrite = (env_py, _render("env.py.tmpl", origin=_wrap(origin), metadata=metadata.block,
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
                    for i, (key, value) in enumerate(options.versions.items()))
    _add_common(plan, _values(project_dir, location), extra=extra)
    notes = metadata.notes + options.notes + leftovers(tree)
    if ini_options.get("sqlalchemy.url", "").strip():
        notes.append(f"{source_name}'s sqlalchemy.url is no longer read: `migrator` and `alembic` both connect "
                     "from DATABASE_URL (or PGHOST, PGUSER, ...)")
    plan.report += [f"note: {redact(note)}" for note in notes]  # notes quote the env.py, which may hold a URL
    return plan


def _alembic_location(project_dir: Path) -> tuple[Path, dict[str, str], str]:
    """The script directory named by alembic.ini (or pyproject's [tool.alembic]), and the ini's options."""
    ini = project_dir / "alembic.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(defaults={"here": str(project_dir)})
        try:
            parser.read(ini, encoding="utf-8")
            section = parser["alembic"] if parser.has_section("alembic") else {}
            # Only the options read here are interpolated: a stray % elsewhere (a URL) is Alembic's business.
            options = {key: parser.get("alembic", key, raw=key not in ("script_location", *VERSION_OPTIONS))
                       for key in section}
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"init --adopt: {ini} cannot be read: {' '.join(str(exc).split())}") from None
        return _script_dir(project_dir, options, str(ini)), options, str(ini)
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        import tomllib  # noqa: PLC0415  (only adopt reads it)

        try:
            table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("alembic")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"init --adopt: {pyproject} cannot be read as TOML: {exc}") from None
        if isinstance(table, dict):
            options = {k: str(v).replace("%(here)s", str(project_dir)) for k, v in table.items()}
            return _script_dir(project_dir, options, f"{pyproject} [tool.alembic]"), options, str(pyproject)
    flask_ini = project_dir / "migrations" / "alembic.ini"
    if flask_ini.is_file():  # Flask-Migrate's layout: the ini in the script directory, which `flask db` names
        return flask_ini.parent.resolve(), {}, str(flask_ini)
    raise ConfigError(f"init --adopt: no alembic.ini (nor [tool.alembic] in pyproject.toml, nor migrations/alembic.ini)"
                      f" in {project_dir}: nothing to adopt; `migrator init` starts a new project")


def _script_dir(project_dir: Path, options: dict[str, str], source: str) -> Path:
    location = options.get("script_location", "").strip()
    if not location:
        raise ConfigError(f"init --adopt: {source} sets no script_location")
    if ":" in location and not Path(location).is_absolute():
        raise ConfigError(f"init --adopt: {source}: script_location {location!r} names a package resource; "
                          "migrator needs a directory")
    if options.get("version_locations", "").strip():
        raise ConfigError(f"init --adopt: {source} sets version_locations: migrator reads revisions only from "
                          f"{location}/versions (move them there first)")
    return (project_dir / location).resolve()


def _wrap(text: str, width: int = 110) -> str:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


# --- what an env.py carries over ------------------------------------------------------------------------

@dataclass
class Metadata:
    """The target_metadata block of the new env.py ('' for None), what it is, and why not when it is None."""

    block: str = ""
    summary: str = "target_metadata=None"
    notes: list[str] = field(default_factory=list)


def carry_metadata(tree: ast.Module) -> Metadata:
    """target_metadata as the original env.py defines it, when that is a plain expression (a name, attribute,
    or a list or tuple of them) over names its top-level imports bind; otherwise None, with a note saying why.

    The app's imports are carried over with it (also those that only register models), inside a try block:
    the migrator image has no app code, and migrating needs no models; autogenerate, where they exist, does.
    """
    assignments = [node for node in tree.body
                   if isinstance(node, ast.Assign | ast.AnnAssign) and _assigns_metadata(node)]
    if not assignments:
        passed = sorted({ast.unparse(k.value) for call in ast.walk(tree) if isinstance(call, ast.Call)
                         for k in call.keywords if k.arg == "target_metadata"} - {"target_metadata", "None"})
        how = f" (it passes target_metadata={' or '.join(passed)})" if passed else ""
        return Metadata(notes=[f"{BACKUP} sets no target_metadata at its top level{how}: env.py passes None; "
                               "autogenerate needs your models' metadata (see env.py's docstring)"])
    node = assignments[-1]
    value = node.value
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return Metadata()
    expression = ast.unparse(value)
    unsafe = Metadata(notes=[f"{BACKUP} line {node.lineno}: target_metadata = {expression} could not be carried "
                             "over safely; env.py passes None (set it by hand for autogenerate)"])
    if not _plain(value):
        return unsafe
    imports = [stmt for stmt in tree.body if isinstance(stmt, ast.Import | ast.ImportFrom)
               and stmt.lineno < node.lineno]
    needed = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    bound = {name for stmt in imports for name in _bound(stmt)}
    if needed - bound and "*" not in bound:
        return unsafe
    carried = [stmt for stmt in imports if set(_bound(stmt)) & needed or _module_root(stmt) not in MACHINERY]
    lines = []
    for stmt in carried:
        unused = "*" not in _bound(stmt) and not set(_bound(stmt)) <= needed
        lines.append("    " + ast.unparse(stmt) + ("  # noqa: F401  (as in env.py.orig: it may register models)"
                                                   if unused else ""))
    block = ("\ntry:  # your models' metadata, for autogenerate (carried over from env.py.orig)\n"
             + "\n".join(lines) + f"\n\n    target_metadata: Any = {expression}\n"
             "except ImportError:  # the migrator image holds migrations and seeds, not the app: migrating needs "
             "no models\n    target_metadata = None\n")
    return Metadata(block, f"target_metadata = {expression}")


def _assigns_metadata(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
        else []
    return any(isinstance(t, ast.Name) and t.id == "target_metadata" for t in targets)


def _plain(node: ast.expr) -> bool:
    if isinstance(node, ast.List | ast.Tuple):
        return all(_plain(e) for e in node.elts)
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _bound(stmt: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(stmt, ast.Import):
        return [alias.asname or alias.name.split(".")[0] for alias in stmt.names]
    return [alias.asname or alias.name for alias in stmt.names]


def _module_root(stmt: ast.Import | ast.ImportFrom) -> str:
    if isinstance(stmt, ast.ImportFrom):
        return "" if stmt.level else (stmt.module or "").split(".")[0]  # relative: the app's own
    return stmt.names[0].name.split(".")[0]


# Top-level statements of a stock env.py that delegating replaces: logging setup, the Alembic config object,
# the online/offline dispatch and the calls of its run functions.
BOILERPLATE = re.compile(r"fileConfig\(|is_offline_mode\(\)|\bcontext\.config\b|^(asyncio\.run\()?run_\w*migrations"
                         r"|^logger = logging\.getLogger\(")


def leftovers(tree: ast.Module) -> list[str]:
    """Notes on the top-level statements of the original env.py that the new one does not carry over."""
    notes = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                or _assigns_metadata(node) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        text = ast.unparse(node)
        if not BOILERPLATE.search(text):
            first = redact(text.splitlines()[0])  # before shortening it, which could cut a URL's password in two
            notes.append(f"{BACKUP} line {node.lineno}: `{first if len(first) < 80 else first[:77] + '...'}` is not "
                         "carried over")
    return notes


@dataclass
class Options:
    """context.configure() options carried over: plain ones into run_migrations(), the version table into
    migrator.toml (migrator must read the same table), and notes on what was left behind."""

    carried: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"the options {', '.join(self.carried)}" if self.carried else "no other options"


def carry_options(tree: ast.Module, ini_options: dict[str, str]) -> Options:
    """The constant options of the env.py's context.configure() calls; other options become notes."""
    options = Options()
    found = _configure_keywords(tree, options.notes)
    for key in VERSION_OPTIONS:
        if ini_options.get(key, "").strip():
            found.setdefault(key, set()).add(repr(ini_options[key].strip()))
    for key, sources in sorted(found.items()):
        value = _constant(sources)
        if key in VERSION_OPTIONS:
            if not isinstance(value, str):
                raise ConfigError(f"init --adopt: the env.py sets {key} to {' or '.join(sorted(sources))}: migrator "
                                  "must read the same table and cannot tell which; adopt it by hand (nothing was "
                                  "written)")
            if value != "alembic_version":  # in both: `migrator` reads migrator.toml, `alembic` the env.py
                options.versions[key] = value
                options.carried[key] = value
        elif value is not None:
            options.carried[key] = value
        else:
            options.notes.append(f"context.configure({key}={' or '.join(sorted(sources))}) is not carried over "
                                 f"(not one constant): see {BACKUP}")
    return options


def _configure_keywords(tree: ast.Module, notes: list[str]) -> dict[str, set[str]]:
    """The source of each option the env.py's context.configure() calls pass, except those migrator sets."""
    found: dict[str, set[str]] = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "configure"
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "context"):
            continue
        for keyword in call.keywords:
            if keyword.arg is None:
                notes.append(f"{BACKUP} line {call.lineno}: **{ast.unparse(keyword.value)} in context.configure() "
                             "is not carried over")
            elif keyword.arg not in OWNED_OPTIONS:
                found.setdefault(keyword.arg, set()).add(ast.unparse(keyword.value))
    return found


def _python(value: Any) -> str:
    """A constant as Python source, strings in double quotes as the rest of the file."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _constant(sources: set[str]) -> Any:
    """The one constant all `sources` spell, else None."""
    values = set()
    for text in sources:
        try:
            values.add(ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError):
            return None
    return values.pop() if len(values) == 1 else None


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
