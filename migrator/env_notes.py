"""What `init --adopt` says about the rest of an adopted env.py: each statement the delegating env.py does not
carry over (migrator.env_adoption carries the models, options and version table), with what it did, as notes
written beside the new env.py.
"""

from __future__ import annotations

import ast
import re

from migrator import env_metadata
from migrator.env_adoption import BACKUP, assigns
from migrator.env_metadata import short

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


def leftovers(tree: ast.Module, carried: list[ast.stmt] | None = None) -> list[str]:
    """Notes on the statements of the original env.py that the new one does not carry over (`carried` into
    target_metadata()), with what they did: top-level statements, and what its functions did beyond connecting
    and running the migrations."""
    notes = []
    for node in tree.body:
        if node in (carried or []):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            notes += _function_notes(node)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef) or assigns(node) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        text = ast.unparse(node)
        if BOILERPLATE.search(text):
            continue
        call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
        name = "" if call is None else call.func.attr if isinstance(call.func, ast.Attribute) else \
            getattr(call.func, "id", "")
        what = _what_it_did(call, name) if call is not None else _what_it_set(node, tree)
        notes.append(f"{BACKUP} line {node.lineno}: `{short(text)}` is not carried over" + (f": {what}" if what
                                                                                               else ""))
    return notes


def _what_it_set(node: ast.stmt, tree: ast.Module) -> str | None:
    """What a top-level statement that is no call set: names (and where the env.py read them), attributes."""
    inside = {id(n) for n in ast.walk(node)}
    names = sorted(env_metadata.stores([node]))
    attributes = [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Attribute | ast.Subscript)
                  and isinstance(n.ctx, ast.Store)]
    said = []
    if names:
        lines = sorted({n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                        and n.id in names and id(n) not in inside})
        read = "which the env.py does not read" if not lines else f"which line {lines[0]} reads" \
            if len(lines) == 1 else f"which lines {', '.join(map(str, lines))} read"
        said.append(f"it set {', '.join(names)}, {read}")
    if attributes:
        on_config = " on Alembic's Config object of that run" if all(a.startswith("config.") for a in attributes) \
            else ""
        said.append(f"it set {', '.join(attributes)}{on_config}")
    return "; ".join(said) or None


def _function_notes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    notes = []
    where = f"{BACKUP} line {{}} (in {function.name}())"
    found: list[tuple[ast.Call, str]] = []
    for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        what = _what_it_did(call, name)
        if what is not None:
            found.append((call, what))
    inner = {id(n) for call, _ in found for n in ast.walk(call) if n is not call}
    for call, what in found:  # a call inside a noted one (`getLogger(...)` of `getLogger(...).setLevel(...)`) is
        if id(call) not in inner:  # part of that note
            notes.append(f"{where.format(call.lineno)}: `{short(ast.unparse(call))}` is not carried over: {what}")
    if function.name == "process_revision_directives":
        notes.append(f"{where.format(function.lineno)}: process_revision_directives is not carried over: it changed "
                     "what autogenerate writes (Flask-Migrate's skips an empty revision)")
    return notes


_RAN_SQL = ("it ran SQL on the migration connection before the migrations; migrator does not: put it in a migration, "
            "or run it once by hand")
_SET_OPTION = "it set an Alembic option at run time"
FIXED_NOTES = {"execute": _RAN_SQL, "exec_driver_sql": _RAN_SQL, "set_main_option": _SET_OPTION,
               "set_section_option": _SET_OPTION}


def _what_it_did(call: ast.Call, name: str) -> str | None:
    if name in FIXED_NOTES:
        return FIXED_NOTES[name]
    if name in ("async_engine_from_config", "create_async_engine"):
        extra = _engine_keywords(call)
        return ("it connected with an async engine (asyncio); migrator connects with psycopg 3 from DATABASE_URL "
                "(or PG*)" + (f"; {extra}" if extra else ""))
    if name in ENGINE_CALLS:
        return _engine_keywords(call) or None
    if name in STOCK_CALLS or name in ("context",):
        return None
    if "engine" in name.lower():  # the app's own engine factory (fractal-server's DB.engine_sync())
        return ("it made the engine the migrations ran on, the app's way; migrator connects from DATABASE_URL "
                "(or PG*), with libpq's parameters in the URL")
    return "migrator's run_migrations() does not do this"


def _engine_keywords(call: ast.Call) -> str:
    kept = [k for k in call.keywords if k.arg not in STOCK_ENGINE_KEYWORDS]
    if not kept:
        return ""
    names = ", ".join(f"{k.arg}=" if k.arg else "**" for k in kept)
    echo = " (MIGRATOR_LOG_LEVEL=debug logs the SQL)" if any(k.arg == "echo" for k in kept) else ""
    return f"it created the engine with {names}{echo}; migrator connects from DATABASE_URL (or PG*), with libpq's " \
           "parameters in the URL"
