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
import textwrap
from dataclasses import dataclass, field
from typing import Any

from migrator import env_metadata
from migrator.env_metadata import refuse, short
from migrator.metadata_capture import Captured

BACKUP = "env.py.orig"
# Modules an Alembic env.py imports for its own machinery; imports of anything else are the app's.
MACHINERY = {"alembic", "sqlalchemy", "migrator", "flask", *sys.stdlib_module_names}
# context.configure() options that migrator sets itself, for every run.
OWNED_OPTIONS = {"url", "connection", "target_metadata", "literal_binds", "dialect_opts", "dialect_name", "as_sql",
                 "transaction_per_migration", "output_buffer", "starting_rev", "tag", "fn"}
VERSION_OPTIONS = ("version_table", "version_table_schema")
FLASK_MIGRATE = re.compile(r"""current_app\.extensions\[\s*['"]migrate['"]\s*\]""")
FLASK_MULTIDB = re.compile(r"engine_name|SQLALCHEMY_BINDS|bind_names")


# --- the models -----------------------------------------------------------------------------------------

@dataclass
class Models:
    """How the original env.py reaches its models' metadata: its own top-level statements (env_metadata), or
    Flask-Migrate's app."""

    expression: str  # what context.configure() is given, evaluated after `statements`
    shown: str  # how reports name it
    statements: list[ast.stmt] = field(default_factory=list)  # run by the probe, in order
    needed: list[ast.stmt] = field(default_factory=list)  # those the metadata depends on
    notes: list[str] = field(default_factory=list)
    flask: bool = False

    def probe_request(self, sys_path: list[str], env_py: str = "env.py") -> dict[str, Any]:
        if self.flask:
            return {"flask": True, "sys_path": sys_path}
        needed = {id(s) for s in self.needed}
        return {"statements": [{"source": ast.unparse(s), "line": s.lineno, "needed": id(s) in needed}
                               for s in self.statements],
                "expression": self.expression, "env_py": env_py, "sys_path": sys_path}


def find_models(tree: ast.Module, source: str) -> Models | None:
    """The original env.py's models, None when its target_metadata is None, or a refusal saying what to change."""
    if FLASK_MIGRATE.search(source):
        if FLASK_MULTIDB.search(source):
            raise refuse("the env.py is Flask-Migrate's multi-database env.py (`flask db init --multidb`): it "
                         "runs each revision once per bind (upgrade_<bind>()) on several databases in one run, and "
                         "migrator runs one database per script directory; give each database a script directory "
                         "of its own (a [[repos]] entry each in migrator.toml), or keep `flask db upgrade`")
        expression = "current_app.extensions['migrate'].db.metadata"
        return Models(expression, expression, flask=True)
    found = env_metadata.preparation(tree)
    if found is None:
        return None
    return Models(found.expression, found.shown, found.statements, found.needed, found.notes)


def assigns(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
        else []
    return any(isinstance(t, ast.Name) and t.id == "target_metadata" for t in targets)


def _module_root(stmt: ast.Import | ast.ImportFrom) -> str:
    if isinstance(stmt, ast.ImportFrom):
        return "" if stmt.level else (stmt.module or "").split(".")[0]  # relative: the app's own
    return stmt.names[0].name.split(".")[0]


def _app_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Import | ast.ImportFrom) and _module_root(stmt) not in MACHINERY


@dataclass
class Metadata:
    """The target_metadata() function and NAMING_CONVENTION of the new env.py ('' without models), its summary,
    the statements of the original it carries, and notes on the app imports left out."""

    block: str = ""
    summary: str = "target_metadata=None"
    notes: list[str] = field(default_factory=list)
    carried: list[ast.stmt] = field(default_factory=list)


FLASK_LOADER = '''\
def target_metadata() -> Any:
    """Your models' metadata, from the Flask app as Flask-Migrate's env.py read it (in `flask db`'s app context):
    for autogenerate, and checked against NAMING_CONVENTION there."""
    from flask import current_app

    db = current_app.extensions["migrate"].db
    return db.metadatas[None] if hasattr(db, "metadatas") else db.metadata
'''


def metadata_block(models: Models | None, captured: Captured | None) -> Metadata:
    """The new env.py's target_metadata() (the statements preparing the models' metadata, for autogenerate) and
    the captured convention."""
    if models is None or captured is None:
        return Metadata()
    notes: list[str] = []
    carried: list[ast.stmt] = []
    if models.flask:
        loader = FLASK_LOADER
        origin = f"Flask-Migrate's database in the Flask app {captured.app!r}"
    else:
        carried = env_metadata.carried(models.statements, models.needed, models.expression,
                                       {int(line) for line in captured.effects})
        loader = _loader(models, carried, captured)
        notes = _left_out(models, carried, captured)
        origin = models.shown
    convention = json.dumps(captured.naming_convention, indent=4)
    comment = (f"The naming convention of {origin}, captured by `migrator init --adopt`: Alembic names the "
               "constraints and indexes the migrations create after it, so they run with it also where the models "
               "are not installed (the migration image); where they are, the two must agree.")
    block = (f"\n\n# ruff: noqa: PLC0415  (target_metadata() imports the models when called: the migration image has "
             f"none)\n{loader}\n\n{wrap(comment, prefix='# ')}\nNAMING_CONVENTION = {convention}\n")
    return Metadata(block, f"target_metadata = {models.shown} with its naming convention{_set_where(models)}", notes,
                    carried)


def _set_where(models: Models) -> str:
    """Where the original env.py set the convention Alembic used, when it did."""
    lines = [str(s.lineno) for s in models.needed if "naming_convention" in ast.unparse(s)
             and not isinstance(s, ast.Import | ast.ImportFrom)]
    return f" (as {BACKUP} line {', '.join(lines)} sets it)" if lines else ""


def _loader(models: Models, carried: list[ast.stmt], captured: Captured) -> str:
    """target_metadata(): the carried statements in the original's order, then the metadata."""
    returned = models.expression
    body = list(carried)
    last = body[-1] if body else None
    if returned == env_metadata.TARGET and isinstance(last, ast.Assign | ast.AnnAssign) and last.value is not None \
            and assigns(last) and (isinstance(last, ast.AnnAssign) or len(last.targets) == 1):
        returned = ast.unparse(last.value)  # `target_metadata = X` last: return X
        body.pop()
    lines = []
    for index, stmt in enumerate(body):
        used = env_metadata.names_used([*body[index + 1:]], returned)
        text = textwrap.indent(ast.unparse(stmt), "    ")
        first, _, rest = text.partition("\n")
        lines.append(first + _comment(stmt, captured, used) + ("\n" + rest if rest else ""))
    verb = "imported as {0} imported" if all(isinstance(s, ast.Import | ast.ImportFrom) for s in carried) else \
        "prepared as {0} prepared"
    return ('def target_metadata() -> Any:\n    """Your models\' metadata, ' + verb.format(BACKUP) + ' it: for '
            'autogenerate, and checked\n    against NAMING_CONVENTION where the models are installed."""\n'
            + "\n".join(lines) + f"\n\n    return {returned}\n")


def _comment(stmt: ast.stmt, captured: Captured, used: set[str]) -> str:
    """The comment a carried statement gets: what it changed in the metadata, and noqa for an unused import."""
    effect = captured.effects.get(str(stmt.lineno))
    what = []
    if effect and effect["tables"]:
        found = effect["tables"]
        what.append(f"it adds the table(s) {', '.join(found[:3])}"
                    f"{f' and {len(found) - 3} more' if len(found) > 3 else ''} to the metadata")
    if effect and effect["convention"]:
        what.append("it sets the metadata's naming convention")
    unused = isinstance(stmt, ast.Import | ast.ImportFrom) and bool(env_metadata.binds(stmt) - used - {"*"})
    noqa = "noqa: F401" if unused or (what and isinstance(stmt, ast.Import | ast.ImportFrom)) else ""
    why = f"({'; '.join(what)})" if what else ""
    return f"  # {noqa}{'  ' if noqa and why else ''}{why}" if noqa or why else ""


def refuse_failures(models: Models, captured: Captured) -> None:
    """A top-level statement of the app (an import of it, or a use of what one bound) that failed where adopt ran
    the env.py may change the metadata Alembic uses: refused, rather than capture a convention that may be wrong."""
    app_names = {name for s in models.statements if _app_import(s) for name in env_metadata.binds(s)}
    for stmt in models.statements:
        why = captured.failed.get(str(stmt.lineno))
        if why and (_app_import(stmt) or env_metadata.names_used([stmt], "None") & app_names):
            raise refuse(f"env.py line {stmt.lineno}: `{short(ast.unparse(stmt))}` failed where adopt ran the env.py "
                         f"({why}), so adopt cannot tell whether it changes the metadata Alembic uses (its tables, "
                         "its naming convention); run init --adopt where it runs: the app's virtualenv active "
                         "(VIRTUAL_ENV) and its settings in the environment")


def _left_out(models: Models, carried: list[ast.stmt], captured: Captured) -> list[str]:
    """A note for each app import the probe ran that is not carried over: it changed nothing."""
    return [f"{BACKUP} line {stmt.lineno}: `{ast.unparse(stmt)}` is not carried over: importing it adds no table to "
            f"{models.shown} and leaves its naming convention as it is"
            for stmt in models.statements if stmt not in carried and _app_import(stmt)]


def wrap(text: str, width: int = 110, prefix: str = "") -> str:
    """TEXT in lines of at most WIDTH characters, each starting with PREFIX."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(prefix + word)
    return "\n".join(lines)


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
