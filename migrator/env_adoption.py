"""What `init --adopt` carries over from a project's Alembic env.py into the env.py that delegates to migrator,
and a note on everything else the original did.

What changes the migrations' SQL is carried over or refused, never dropped: the models' naming convention
(captured as a literal by importing them once, metadata_capture), constant context.configure() options, the
version table (into migrator.toml, which `migrator` reads before any env.py runs; one computed from an environment
variable becomes version_table_schema_env). Flask-Migrate's env.py reaches its metadata and options through the
Flask app, so adopt loads the app as `flask db` does. Every other statement of the original becomes a note that
says what it did.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError
from migrator.metadata_capture import Captured
from migrator.redaction import redact

BACKUP = "env.py.orig"
# Modules an Alembic env.py imports for its own machinery; imports of anything else are the app's.
MACHINERY = {"alembic", "sqlalchemy", "migrator", "flask", *sys.stdlib_module_names}
# context.configure() options that migrator sets itself, for every run.
OWNED_OPTIONS = {"url", "connection", "target_metadata", "literal_binds", "dialect_opts", "dialect_name", "as_sql",
                 "transaction_per_migration", "output_buffer", "starting_rev", "tag", "fn"}
VERSION_OPTIONS = ("version_table", "version_table_schema")
FLASK_MIGRATE = re.compile(r"""current_app\.extensions\[\s*['"]migrate['"]\s*\]""")
FLASK_MULTIDB = re.compile(r"engine_name|SQLALCHEMY_BINDS|bind_names")


def refuse(message: str) -> ConfigError:
    return ConfigError(redact(f"init --adopt: {message} (nothing was written)"))


# --- the models -----------------------------------------------------------------------------------------

@dataclass
class Models:
    """How the original env.py reaches its models' metadata: an expression over its imports, or Flask-Migrate."""

    expression: str
    line: int
    needed: list[ast.Import | ast.ImportFrom] = field(default_factory=list)  # imports binding its names
    others: list[ast.Import | ast.ImportFrom] = field(default_factory=list)  # other app imports (may add tables)
    flask: bool = False

    def probe_request(self, sys_path: list[str]) -> dict[str, Any]:
        if self.flask:
            return {"flask": True, "sys_path": sys_path}
        return {"needed": [ast.unparse(s) for s in self.needed], "imports": [ast.unparse(s) for s in self.others],
                "expression": self.expression, "sys_path": sys_path}


def find_models(tree: ast.Module, source: str) -> Models | None:
    """The original env.py's models, None when its target_metadata is None, or a refusal saying what to change."""
    if FLASK_MIGRATE.search(source):
        if FLASK_MULTIDB.search(source):
            raise refuse("the env.py is Flask-Migrate's multi-database env.py (`flask db init --multidb`): it "
                         "runs each revision once per bind (upgrade_<bind>()) on several databases in one run, and "
                         "migrator runs one database per script directory; give each database a script directory "
                         "of its own (a [[repos]] entry each in migrator.toml), or keep `flask db upgrade`")
        return Models("current_app.extensions['migrate'].db.metadata", 0, flask=True)
    assignments = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign) and _assigns(node)]
    if not assignments:
        passed = sorted({ast.unparse(k.value) for call in ast.walk(tree) if isinstance(call, ast.Call)
                         for k in call.keywords if k.arg == "target_metadata"} - {"target_metadata", "None"})
        if passed:
            raise refuse(f"env.py passes target_metadata={' or '.join(passed)}, which adopt cannot import by itself; "
                         "the migrations' constraint names depend on its naming convention: assign it at the top "
                         "level first (`target_metadata = <module>.Base.metadata`, after the imports it needs)")
        return None
    node = assignments[-1]
    value = node.value
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return None
    expression = ast.unparse(value)
    imports = [s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom) and s.lineno < node.lineno]
    needed_names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    bound = {name for stmt in imports for name in _bound(stmt)}
    if not _plain(value) or (needed_names - bound and "*" not in bound):
        raise refuse(f"env.py line {node.lineno}: target_metadata = {expression} is not a name or attribute of "
                     "what the env.py imports, so adopt cannot import it by itself; the migrations' constraint "
                     "names depend on its naming convention: write it as `target_metadata = <module>.<attribute>` "
                     "after the imports it needs (e.g. `from myapp.models import Base`, `Base.metadata`)")
    needed = [s for s in imports if set(_bound(s)) & needed_names or "*" in _bound(s)]
    others = [s for s in imports if s not in needed and _module_root(s) not in MACHINERY]
    return Models(expression, node.lineno, needed, others)


def _assigns(node: ast.stmt) -> bool:
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


@dataclass
class Metadata:
    """The target_metadata() function and NAMING_CONVENTION of the new env.py ('' without models), its summary,
    and notes on the imports left out."""

    block: str = ""
    summary: str = "target_metadata=None"
    notes: list[str] = field(default_factory=list)


FLASK_LOADER = '''\
def target_metadata() -> Any:
    """Your models' metadata, from the Flask app as Flask-Migrate's env.py read it (in `flask db`'s app context):
    for autogenerate, and checked against NAMING_CONVENTION there."""
    from flask import current_app

    db = current_app.extensions["migrate"].db
    return db.metadatas[None] if hasattr(db, "metadatas") else db.metadata
'''


def metadata_block(models: Models | None, captured: Captured | None) -> Metadata:
    """The new env.py's target_metadata() (the models' imports, for autogenerate) and the captured convention."""
    if models is None or captured is None:
        return Metadata()
    notes: list[str] = []
    if models.flask:
        loader = FLASK_LOADER
        origin = f"Flask-Migrate's database in the Flask app {captured.app!r}"
    else:
        carried, notes = _carried_imports(models, captured)
        lines = [f"    {ast.unparse(s)}{comment}" for s, comment in carried]
        loader = (f'def target_metadata() -> Any:\n    """Your models\' metadata, imported as {BACKUP} imported it: '
                  'for autogenerate, and checked\n    against NAMING_CONVENTION where the models are installed."""\n'
                  + "\n".join(lines) + f"\n\n    return {models.expression}\n")
        origin = models.expression
    convention = json.dumps(captured.naming_convention, indent=4)
    comment = (f"The naming convention of {origin}, captured by `migrator init --adopt`: Alembic names the "
               "constraints and indexes the migrations create after it, so they run with it also where the models "
               "are not installed (the migration image); where they are, the two must agree.")
    block = (f"\n\n# ruff: noqa: PLC0415  (target_metadata() imports the models when called: the migration image has "
             f"none)\n{loader}\n\n{wrap(comment, prefix='# ')}\nNAMING_CONVENTION = {convention}\n")
    return Metadata(block, f"target_metadata = {models.expression} with its naming convention", notes)


def wrap(text: str, width: int = 110, prefix: str = "") -> str:
    """TEXT in lines of at most WIDTH characters, each starting with PREFIX."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(prefix + word)
    return "\n".join(lines)


def _carried_imports(models: Models, captured: Captured) -> tuple[list[tuple[ast.stmt, str]], list[str]]:
    """The needed imports, and the other app imports that add tables to the metadata (with a comment naming
    them); a note for each import left out."""
    carried: list[tuple[ast.stmt, str]] = []
    notes = []
    for stmt in sorted([*models.needed, *models.others], key=lambda s: s.lineno):
        text = ast.unparse(stmt)
        if stmt in models.needed:
            carried.append((stmt, ""))
            continue
        found = captured.registers.get(text, [])
        if isinstance(found, list) and found:
            tables = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            carried.append((stmt, f"  # noqa: F401  (it adds the table(s) {tables} to the metadata)"))
        elif isinstance(found, list):
            notes.append(f"{BACKUP} line {stmt.lineno}: `{text}` is not carried over: importing it adds no table "
                         f"to {models.expression}")
        else:
            notes.append(f"{BACKUP} line {stmt.lineno}: `{text}` is not carried over: it failed where the models "
                         f"import ({found})")
    return carried, notes


# --- context.configure() options ------------------------------------------------------------------------

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


def carry_options(tree: ast.Module, ini_options: dict[str, str], captured: Captured | None = None) -> Options:
    """The constant options of the env.py's context.configure() calls (and Flask-Migrate's, as captured from the
    app); others become notes, a version table that cannot be read is refused."""
    options = Options()
    found = _configure_keywords(tree, options.notes, flask=captured is not None and bool(captured.app))
    for key in VERSION_OPTIONS:
        if ini_options.get(key, "").strip():
            found.setdefault(key, set()).add(repr(ini_options[key].strip()))
    if captured is not None:
        for key, value in captured.configure_args.items():
            if key not in OWNED_OPTIONS:
                found.setdefault(key, set()).add(repr(value))
        options.notes += [f"Migrate(...)'s {key} (in the app) is not carried over (not a constant): it only changes "
                          "what autogenerate compares or writes; pass it to run_migrations() in env.py for `flask "
                          "db migrate`" for key in captured.other_args if key != "process_revision_directives"]
    for key, sources in sorted(found.items()):
        value = _constant(sources)
        if key in VERSION_OPTIONS:
            _version_option(options, key, value, sources)
        elif value is not None:
            options.carried[key] = value
        else:
            options.notes.append(f"context.configure({key}={' or '.join(sorted(sources))}) is not carried over "
                                 f"(not one constant): see {BACKUP}")
    return options


def _version_option(options: Options, key: str, value: Any, sources: set[str]) -> None:
    if isinstance(value, str):
        if value != "alembic_version":  # in both: `migrator` reads migrator.toml, `alembic` the env.py
            options.versions[key] = value
            options.carried[key] = value
        return
    variable = _environment_variable(sources) if key == "version_table_schema" else None
    if variable is not None:  # read from the environment at run time: migrator.toml names the variable
        name, default = variable
        options.versions["version_table_schema_env"] = name
        if default is not None:
            options.versions["version_table_schema"] = default
        return
    spelled = " or ".join(sorted(sources))
    how = ("a string, or read it from an environment variable as os.environ.get(\"NAME\", \"default\"), which adopt "
           "carries into migrator.toml as version_table_schema_env") if key == "version_table_schema" else "a string"
    raise refuse(f"the env.py sets {key} to {spelled}: migrator must read the same table before it runs env.py, and "
                 f"cannot tell which; write it in env.py as {how}, then run init --adopt again")


def _environment_variable(sources: set[str]) -> tuple[str, str | None] | None:
    """`os.environ.get("X", "d")`, `os.getenv("X")` or `os.environ["X"]`: the variable and its default."""
    if len(sources) != 1:
        return None
    node = ast.parse(next(iter(sources)), mode="eval").body
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
        args: list[ast.expr] = [node.slice]
    elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "environ.get", "os.getenv",
                                                                    "getenv") and not node.keywords:
        args = node.args
    else:
        return None
    literals = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(literals) != len(args) or not 1 <= len(args) <= 2:
        return None
    return literals[0], (literals[1] if len(literals) == 2 else None)


def _configure_keywords(tree: ast.Module, notes: list[str], flask: bool) -> dict[str, set[str]]:
    """The source of each option the env.py's context.configure() calls pass, except those migrator sets."""
    found: dict[str, set[str]] = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "configure"
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "context"):
            continue
        for keyword in call.keywords:
            if keyword.arg is None and not flask:  # Flask-Migrate's **conf_args: captured from the app instead
                notes.append(f"{BACKUP} line {call.lineno}: **{ast.unparse(keyword.value)} in context.configure() "
                             "is not carried over")
            elif keyword.arg is not None and keyword.arg not in OWNED_OPTIONS:
                found.setdefault(keyword.arg, set()).add(ast.unparse(keyword.value))
    return found


def python_literal(value: Any) -> str:
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


# --- everything else: notes -----------------------------------------------------------------------------

# Top-level statements of a stock env.py that delegating replaces: logging setup, the Alembic config object,
# the online/offline dispatch and the calls of its run functions.
BOILERPLATE = re.compile(r"fileConfig\(|is_offline_mode\(\)|\bcontext\.config\b|^(asyncio\.run\()?run_\w*migrations"
                         r"|^logger = logging\.getLogger\(")
# Calls inside a stock env.py's functions that migrator's run_migrations() does in its own way.
STOCK_CALLS = {"configure", "begin_transaction", "run_migrations", "is_offline_mode", "get_main_option", "get_section",
               "connect", "run_sync", "dispose", "run", "NullPool", "get_context", "get", "getattr", "hasattr",
               "get_engine", "get_engine_url", "get_metadata", "render_as_string", "replace", "str", "is_empty",
               "info", "debug", "do_run_migrations", "run_async_migrations", "run_migrations_online",
               "run_migrations_offline", "engine_from_config", "create_engine", "async_engine_from_config",
               "create_async_engine", "execution_options", "commit", "begin", "text", "isinstance", "list", "dict",
               "get_x_argument", "get_bind", "close"}
ENGINE_CALLS = {"engine_from_config", "create_engine", "async_engine_from_config", "create_async_engine"}
STOCK_ENGINE_KEYWORDS = {"prefix", "poolclass", "future"}


def leftovers(tree: ast.Module) -> list[str]:
    """Notes on the statements of the original env.py that the new one does not carry over, with what they did:
    top-level statements, and what its functions did beyond connecting and running the migrations."""
    notes = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            notes += _function_notes(node)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef) or _assigns(node) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        text = ast.unparse(node)
        if BOILERPLATE.search(text):
            continue
        call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
        name = "" if call is None else call.func.attr if isinstance(call.func, ast.Attribute) else \
            getattr(call.func, "id", "")
        what = _what_it_did(call, name) if call is not None else None
        notes.append(f"{BACKUP} line {node.lineno}: `{_short(text)}` is not carried over" + (f": {what}" if what
                                                                                               else ""))
    return notes


def _function_notes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    notes = []
    where = f"{BACKUP} line {{}} (in {function.name}())"
    for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        what = _what_it_did(call, name)
        if what is not None:
            notes.append(f"{where.format(call.lineno)}: `{_short(ast.unparse(call))}` is not carried over: {what}")
    if function.name == "process_revision_directives":
        notes.append(f"{where.format(function.lineno)}: process_revision_directives is not carried over: it changed "
                     "what autogenerate writes (Flask-Migrate's skips an empty revision)")
    return notes


def _what_it_did(call: ast.Call, name: str) -> str | None:
    if name in ("execute", "exec_driver_sql"):
        return ("it ran SQL on the migration connection before the migrations; migrator does not: put it in a "
                "migration, or run it once by hand")
    if name in ("async_engine_from_config", "create_async_engine"):
        extra = _engine_keywords(call)
        return ("it connected with an async engine (asyncio); migrator connects with psycopg 3 from DATABASE_URL "
                "(or PG*)" + (f"; {extra}" if extra else ""))
    if name in ENGINE_CALLS:
        return _engine_keywords(call) or None
    if name in ("set_main_option", "set_section_option"):
        return "it set an Alembic option at run time"
    if name in STOCK_CALLS or name in ("context",):
        return None
    return "migrator's run_migrations() does not do this"


def _engine_keywords(call: ast.Call) -> str:
    kept = [k for k in call.keywords if k.arg not in STOCK_ENGINE_KEYWORDS]
    if not kept:
        return ""
    names = ", ".join(f"{k.arg}=" if k.arg else "**" for k in kept)
    echo = " (MIGRATOR_LOG_LEVEL=debug logs the SQL)" if any(k.arg == "echo" for k in kept) else ""
    return f"it created the engine with {names}{echo}; migrator connects from DATABASE_URL (or PG*), with libpq's " \
           "parameters in the URL"


def revisions_importing_the_app(versions: Path, models: Models | None) -> list[str]:
    """Notes on revision files that import the app's own modules (a column type of the models, say): the
    migration image holds no app code, so they cannot run there."""
    if models is None or models.flask:
        return []
    app = {_module_root(s) for s in models.needed} - MACHINERY - {""}  # where the models live
    notes = []
    for path in sorted(versions.glob("*.py")):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # migrator reports a broken revision file itself, when it loads the scripts
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and _module_root(node) in app:
                notes.append(f"{versions.name}/{path.name} line {node.lineno}: `{_short(ast.unparse(node))}` imports "
                             "the app, which the migration image does not hold: migrating stops there (exit 2); "
                             "write what it uses into the revision (e.g. a column type's implementation)")
                break
    return notes


def _short(text: str) -> str:
    first = redact(text.splitlines()[0])  # before shortening it, which could cut a URL's password in two
    return first if len(first) < 80 else first[:77] + "..."
