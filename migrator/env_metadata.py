"""How an Alembic env.py prepares the metadata it hands to context.configure(), read from its source.

Alembic names the constraints and indexes the migrations create after that metadata's naming_convention, and an
env.py may set it in many ways: in the models (`MetaData(naming_convention=...)`), or itself, before the migrations
run (`target_metadata.naming_convention = NAMING_CONVENTION`, `SQLModel.metadata.naming_convention = ...`, a
`MetaData(naming_convention=...)` built in env.py). `init --adopt` runs the env.py's top-level statements up to
the one that runs the migrations in the app's Python (metadata_probe), as Alembic would, except those that need
Alembic's context (there is none outside Alembic), and reads the metadata afterwards. The statements the metadata
depends on are carried into the new env.py's target_metadata(), in their order (the order matters: a convention
set after the models are imported does not name their constraints for autogenerate).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

from migrator.errors import ConfigError
from migrator.redaction import redact

TARGET = "target_metadata"
# context.* calls that configure or run the migrations: the first top-level statement reaching one ends the
# preparation.
RUN_CALLS = {"configure", "run_migrations", "is_offline_mode", "begin_transaction"}
BUILTINS = set(dir(builtins)) | {"__file__", "__name__"}


def refuse(message: str) -> ConfigError:
    return ConfigError(redact(f"init --adopt: {message} (nothing was written)"))


@dataclass
class Preparation:
    """What an env.py hands to context.configure() as target_metadata, and the statements that prepare it."""

    expression: str  # evaluated after `statements`: what context.configure() receives
    shown: str  # how reports name it: the assigned value for `target_metadata = <value>`
    statements: list[ast.stmt]  # the top-level statements before the run that do not need Alembic's context
    needed: list[ast.stmt]  # those the metadata depends on: carried into target_metadata()
    notes: list[str] = field(default_factory=list)


def preparation(tree: ast.Module) -> Preparation | None:
    """How the env.py prepares its target_metadata; None when it hands over none; a refusal saying what to change
    when adopt cannot tell which metadata (and so which naming convention) Alembic would use."""
    prefix, after = _split(tree)
    passed, without = _passed(tree)
    bound = [s for s in prefix if TARGET in _binds(s)]
    if not passed and not bound:
        return None
    expression = _expression(tree, passed, bound)
    if expression is None:
        return None
    needed = _closure(prefix, _seeds(prefix, expression), expression)
    contextual = _contextual(prefix)
    for stmt in reversed(needed):  # the last: the one preparing the metadata, rather than `config = context.config`
        if id(stmt) in contextual:
            raise refuse(f"env.py line {stmt.lineno}: `{short(ast.unparse(stmt))}` prepares target_metadata with "
                         "Alembic's context (context.config, ...), which only exists while Alembic runs; the "
                         "migrations' constraint names depend on that metadata: prepare it without the context, then "
                         "run init --adopt again")
    _refuse_conventions_elsewhere(tree, after, needed)
    statements = [s for s in prefix if id(s) not in contextual]
    notes = [f"env.py.orig line {call.lineno}: context.configure() without target_metadata is now given "
             f"{expression} and its naming convention too (offline SQL included)" for call in without] if passed else []
    return Preparation(expression, _shown(expression, bound), statements, needed, notes)


def short(text: str) -> str:
    first = redact(text.splitlines()[0])  # before shortening it, which could cut a URL's password in two
    return first if len(first) < 80 else first[:77] + "..."


def carried(statements: list[ast.stmt], needed: list[ast.stmt], expression: str, changed: set[int]) -> list[ast.stmt]:
    """What target_metadata() runs: the statements the metadata depends on, those that changed it where adopt ran
    them (lines in `changed`: an import adding the models' tables), and what these use, in the env.py's order."""
    seeds = [s for s in statements if s in needed or s.lineno in changed]
    return _closure(statements, seeds, expression)


def names_used(statements: list[ast.stmt], expression: str) -> set[str]:
    """The names `statements` and `expression` read."""
    return _loads(ast.parse(expression, mode="eval")).union(*(_loads(s) for s in statements))


def binds(stmt: ast.stmt) -> set[str]:
    return _binds(stmt)


def stores(body: list[ast.stmt]) -> set[str]:
    """The names `body` assigns (not inside the functions it defines)."""
    return _stores(body)


# --- where the preparation ends -------------------------------------------------------------------------

def _split(tree: ast.Module) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """The top-level statements before the first one that runs the migrations, and the rest."""
    runners = _runners(tree)
    for index, node in enumerate(tree.body):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _runs(node, runners):
            return tree.body[:index], tree.body[index:]
    return list(tree.body), []


def _runners(tree: ast.Module) -> set[str]:
    """The env.py's functions that configure or run the migrations, directly or through one another."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    runners: set[str] = set()
    while True:
        found = {name for name, f in functions.items() if name not in runners and _runs(f, runners)}
        if not found:
            return runners
        runners |= found


def _runs(node: ast.AST, runners: set[str]) -> bool:
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        if isinstance(func, ast.Name) and func.id in runners:
            return True
        if isinstance(func, ast.Attribute) and func.attr in RUN_CALLS and ast.unparse(func.value) == "context":
            return True
    return False


# --- what context.configure() receives ------------------------------------------------------------------

def _configure_calls(tree: ast.Module) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "configure" and ast.unparse(n.func.value) == "context"]


def _passed(tree: ast.Module) -> tuple[dict[str, ast.expr], list[ast.Call]]:
    """The target_metadata expressions context.configure() is given (None aside), and the calls given none."""
    passed: dict[str, ast.expr] = {}
    without = []
    for call in _configure_calls(tree):
        values = [k.value for k in call.keywords if k.arg == TARGET]
        if not values and not any(k.arg is None for k in call.keywords):  # **kwargs may carry it
            without.append(call)
        for value in values:
            if not (isinstance(value, ast.Constant) and value.value is None):
                passed.setdefault(ast.unparse(value), value)
    return passed, without


def _expression(tree: ast.Module, passed: dict[str, ast.expr], bound: list[ast.stmt]) -> str | None:
    if len(passed) > 1:
        raise refuse(f"env.py passes context.configure() different metadata ({' and '.join(passed)}): adopt cannot "
                     "tell which naming convention names the migrations' constraints; pass one target_metadata")
    if not passed or next(iter(passed)) == TARGET:
        if not bound:
            raise refuse("env.py passes target_metadata, which it does not assign at the top level before the "
                         "migrations run, so adopt cannot evaluate it; the migrations' constraint names depend on its "
                         "naming convention: assign it at the top level (`target_metadata = <module>.Base.metadata`, "
                         "after the imports it needs)")
        last = bound[-1]
        if isinstance(last, ast.Assign | ast.AnnAssign) and isinstance(last.value, ast.Constant) and \
                last.value.value is None:
            return None
        return TARGET
    text, value = next(iter(passed.items()))
    if not _plain(value) or _local_in_caller(tree, value):
        raise refuse(f"env.py passes target_metadata={text}, which adopt cannot import by itself; the migrations' "
                     "constraint names depend on its naming convention: assign it at the top level first "
                     "(`target_metadata = <module>.Base.metadata`, after the imports it needs)")
    return text


def _plain(node: ast.expr) -> bool:
    if isinstance(node, ast.List | ast.Tuple):
        return all(_plain(e) for e in node.elts)
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _local_in_caller(tree: ast.Module, value: ast.expr) -> bool:
    """Whether a name of `value` is one the function calling context.configure() assigns itself."""
    names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        if any(value in ast.walk(call) for call in _configure_calls(ast.Module(body=function.body, type_ignores=[]))):
            params = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
            if names & (_stores(function.body) | params):
                return True
    return False


def _shown(expression: str, bound: list[ast.stmt]) -> str:
    last = bound[-1] if bound else None
    if expression == TARGET and isinstance(last, ast.Assign | ast.AnnAssign) and last.value is not None:
        return ast.unparse(last.value)
    return expression


# --- the statements the metadata depends on -------------------------------------------------------------

def _seeds(prefix: list[ast.stmt], expression: str) -> list[ast.stmt]:
    """The statements that bind the metadata, and those that change it: a store into an attribute or item of what
    it is made of (`target_metadata.naming_convention = ...`, `SQLModel.metadata.naming_convention = ...`), any
    store into a naming_convention, a call on one (`.naming_convention.update(...)`)."""
    names = _loads(ast.parse(expression, mode="eval"))
    binding = [s for s in prefix if _binds(s) & names]
    roots = names | {n for s in binding for n in _loads(s)}
    return [s for s in prefix if s in binding or _changes(s, roots)]


def _changes(stmt: ast.stmt, roots: set[str]) -> bool:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):  # its body runs when called, not here
        return False
    for node in _own_nodes(stmt):
        if isinstance(node, ast.Attribute | ast.Subscript) and isinstance(node.ctx, ast.Store) and (
                _root(node) in roots or "naming_convention" in ast.unparse(node)):
            return True
        if isinstance(node, ast.Call) and "naming_convention." in ast.unparse(node.func):
            return True
    return False


def _closure(prefix: list[ast.stmt], seeds: list[ast.stmt], expression: str) -> list[ast.stmt]:
    """`seeds` and every earlier top-level statement binding a name they use, in the env.py's order."""
    needed: set[int] = set()
    work = [(len(prefix), _loads(ast.parse(expression, mode="eval")), expression)]
    work += [(prefix.index(s), _loads(s), ast.unparse(s)) for s in seeds]
    for s in seeds:
        needed.add(id(s))
    while work:
        before, names, what = work.pop()
        for name in names - BUILTINS:
            binder = _binder(prefix[:before], name)
            if binder is None:
                raise refuse(f"env.py: `{short(what)}` uses {name}, which the env.py does not bind at the top level "
                             "before it, so adopt cannot evaluate the metadata; the migrations' constraint names "
                             "depend on its naming convention: import or assign it above that line")
            if id(binder) not in needed:
                needed.add(id(binder))
                work.append((prefix.index(binder), _loads(binder), ast.unparse(binder)))
    return [s for s in prefix if id(s) in needed]


def _binder(statements: list[ast.stmt], name: str) -> ast.stmt | None:
    for stmt in reversed(statements):
        binds = _binds(stmt)
        if name in binds or "*" in binds:
            return stmt
    return None


def _contextual(prefix: list[ast.stmt]) -> set[int]:
    """The statements that need Alembic's context (`context.config`, ...), which exists only while Alembic runs:
    the import of alembic.context and everything that uses what it binds, directly or through other names."""
    tainted: set[str] = set()
    found = set()
    for stmt in prefix:
        if _imports_context(stmt) or _loads(stmt) & tainted:
            found.add(id(stmt))
            tainted |= _binds(stmt)
    return found


def _imports_context(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.ImportFrom):
        return stmt.module == "alembic" and any(a.name == "context" for a in stmt.names)
    return isinstance(stmt, ast.Import) and any(a.name == "alembic.context" for a in stmt.names)


def _refuse_conventions_elsewhere(tree: ast.Module, after: list[ast.stmt], needed: list[ast.stmt]) -> None:
    """A naming convention set where adopt does not run it (a function it does not call, after the migrations
    start) may change what Alembic uses: refused, with where to move it."""
    carried = {id(s) for s in needed}
    places: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                              and id(n) not in carried]
    places += [n for n in after if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    for place in places:
        for node in (n for n in ast.walk(place) if isinstance(n, ast.expr)):
            sets = isinstance(node, ast.Attribute) and node.attr == "naming_convention" and (
                isinstance(node.ctx, ast.Store) or node in _call_targets(place))
            builds = isinstance(node, ast.Call) and any(k.arg == "naming_convention" for k in node.keywords)
            if sets or builds:
                where = f" (in {place.name}())" if isinstance(place, ast.FunctionDef | ast.AsyncFunctionDef) else ""
                raise refuse(f"env.py line {node.lineno}{where}: `{short(ast.unparse(node))}` sets a naming convention "
                             "where adopt cannot evaluate it, so it cannot tell which convention names the migrations' "
                             "constraints: set it at the top level, before the migrations run")


def _call_targets(place: ast.AST) -> set[ast.AST]:
    """The objects whose methods `place` calls (`x.naming_convention` in `x.naming_convention.update(...)`)."""
    return {n.func.value for n in ast.walk(place) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}


# --- names ----------------------------------------------------------------------------------------------

def _own_nodes(node: ast.AST) -> list[ast.AST]:
    """The nodes of `node`, without the bodies of the functions, classes and lambdas it defines."""
    found: list[ast.AST] = []
    stack = [node]
    while stack:
        current = stack.pop()
        found.append(current)
        if current is not node and isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef |
                                              ast.Lambda):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return found


def _binds(stmt: ast.stmt) -> set[str]:
    """The module-level names a top-level statement binds ("*" for a star import)."""
    if isinstance(stmt, ast.Import):
        return {alias.asname or alias.name.split(".")[0] for alias in stmt.names}
    if isinstance(stmt, ast.ImportFrom):
        return {alias.asname or alias.name for alias in stmt.names}
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    return _stores([stmt])


def _stores(body: list[ast.stmt]) -> set[str]:
    found = set()
    for stmt in body:
        for node in _own_nodes(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                found.add(node.id)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                found |= _binds(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node is not stmt:
                found.add(node.name)
    return found


def _loads(node: ast.AST) -> set[str]:
    """The names `node` reads from the module (a function's own parameters and locals excepted)."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    for function in (n for n in ast.walk(node) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef |
                                                              ast.Lambda)):
        params = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
        body = function.body if isinstance(function.body, list) else []
        names -= params | _stores(body)
    return names


def _root(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""
