"""The parser's answer, for the revision files whose text alone cannot clear them (migrator.revision_text).

Where one of the four names, a dynamic word or `import *` occurs outside strings and comments (a
`{'revision': revision}` in upgrade()), the file is parsed with Python's own parser (ast), which tells a read
from a binding and a function's scope from the module's. It clears the file unless something in it could give
the four names other values than their literal assignments, and raises Uncertain with the first such thing.

parse_script (migrator.revision_file) imports this module only when it needs it: the few files of a history
that need the parser pay for it, not every start-up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

from migrator.errors import Uncertain
from migrator.revision_text import DYNAMIC, NAMES, TOKEN, WATCHED, line_of

# The parser's statements whose bodies run as module-level code, and what a reason calls them.
_BLOCKS = {"If": "an if block", "For": "a loop", "AsyncFor": "a loop", "While": "a loop", "Try": "a try statement",
           "TryStar": "a try statement", "With": "a with block", "AsyncWith": "a with block",
           "Match": "a match statement"}
# Module-level statements that bind a name other than by `name = value`: the fields that hold the names bound
# (Name nodes with a Store or Del context), and what a reason says of them.
_BINDS = {"AugAssign": ("target", "is changed by augmented assignment"), "For": ("target", "is a loop variable"),
          "AsyncFor": ("target", "is a loop variable"), "With": ("items", "is bound by `with ... as`"),
          "AsyncWith": ("items", "is bound by `with ... as`"), "Delete": ("targets", "is deleted"),
          "TypeAlias": ("name", "is defined by a type statement")}


Finding = tuple[int, int, str]  # (line, column, reason): the first in the file is the one reported


def check_tree(text: str, shown: str) -> None:
    """Raise Uncertain with the first thing in the file (the parser's view) that could give the four names other
    values than their literal assignments: another module-level binding, a read that could fail or change a
    list, a global declaration, an assignment expression, a dynamic word, `import *`."""
    try:
        tree = ast.parse(text[1:], shown)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise Uncertain(f"{shown}: does not parse ({type(exc).__name__})") from None
    assigned, found = _module_bindings(tree, text)
    # names are most of a tree's nodes: only the watched ones, and the rarer kinds of node, are looked at
    kinds = {ast.Attribute, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
             ast.Global, ast.Nonlocal, ast.NamedExpr}
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if not (node.id in WATCHED if type(node) is ast.Name else type(node) in kinds):
                continue
            reason = _dynamic(node) or _unsafe_read(node, stmt, assigned)
            if reason:
                found.append((getattr(node, "lineno", stmt.lineno), getattr(node, "col_offset", 0), reason))
    if found:
        line, _, reason = min(found)
        raise Uncertain(f"{shown}: line {line}: {reason}")


def _module_bindings(tree: ast.Module, text: str) -> tuple[dict[str, ast.Assign | ast.AnnAssign], list[Finding]]:
    """Each name's first top-level `name = value`, and every other binding of the four in the module's scope."""
    read = {(line_of(text, match.start() + 1), match["name"]) for match in TOKEN.finditer(text) if match["name"]}
    assigned: dict[str, ast.Assign | ast.AnnAssign] = {}
    found: list[Finding] = []
    for stmt in tree.body:
        for node, name, how in _bindings(stmt, None):
            reason = how
            if how is None and isinstance(stmt, ast.Assign | ast.AnnAssign):  # the text read it, or says why not
                assigned.setdefault(name, stmt)
                if (node.lineno, name) in read:
                    read.discard((node.lineno, name))
                    continue
                reason = _unread(stmt, tree.body)
            found.append((node.lineno, node.col_offset, f"{name} {reason}"))
    found += [(line, 0, f"{name} = ... is not a module-level statement") for line, name in read]
    return assigned, found


def _bindings(stmt: ast.stmt, block: str | None) -> Iterator[tuple[Any, str, str | None]]:
    """(node, name, how) for each of the four names this module-level statement binds in the module's scope;
    how is None for `name = value` at the top level. Function and class bodies are other scopes: not entered."""
    kind = type(stmt).__name__
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        yield from _assignments(stmt, block)
    elif kind in _BINDS:
        field, how = _BINDS[kind]
        yield from ((node, node.id, how) for node in _stored(getattr(stmt, field)))
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        for alias in stmt.names:
            name = alias.asname or alias.name.partition(".")[0]
            if name in NAMES:
                yield alias, name, "is bound by an import"
    elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and stmt.name in NAMES:
        yield stmt, stmt.name, f"is defined by {'class' if kind == 'ClassDef' else 'def'}"
    yield from ((handler, handler.name, "is bound by `except ... as`")
                for handler in getattr(stmt, "handlers", ()) if handler.name in NAMES)
    for case in getattr(stmt, "cases", ()):
        for node in ast.walk(case.pattern):
            captured = getattr(node, "name", None) or getattr(node, "rest", None)
            if captured in NAMES:
                yield node, captured, "is a capture pattern of a match statement"
    if kind in _BLOCKS:
        inner = [*getattr(stmt, "body", ()), *getattr(stmt, "orelse", ()), *getattr(stmt, "finalbody", ())]
        inner += [s for part in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())) for s in part.body]
        for nested in inner:
            yield from _bindings(nested, _BLOCKS[kind])


def _assignments(stmt: ast.Assign | ast.AnnAssign, block: str | None) -> Iterator[tuple[Any, str, str | None]]:

    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if stmt.value is not None else []
    for target in targets:
        if not isinstance(target, ast.Name):
            yield from ((node, node.id, "is assigned by unpacking") for node in _stored(target))
        elif target.id in NAMES:
            yield target, target.id, (f"is assigned inside {block}" if block else
                                      "is assigned in a chained assignment" if len(targets) > 1 else None)


def _stored(field: ast.AST | list[ast.AST]) -> list[ast.Name]:
    """The Name nodes of the four names that a target (or a list of them) binds or deletes."""
    nodes = [node for part in (field if isinstance(field, list) else [field]) for node in ast.walk(part)]
    return [node for node in nodes if isinstance(node, ast.Name) and node.id in NAMES
            and isinstance(node.ctx, ast.Store | ast.Del)]


def _unread(stmt: ast.Assign | ast.AnnAssign, body: list[ast.stmt]) -> str:
    """Why the text did not read this top-level `name = value`."""
    if any(other is not stmt and stmt.lineno in (other.lineno, other.end_lineno) for other in body):
        return "shares its line with another statement (;)"
    try:
        ast.literal_eval(stmt.value or "")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "is not assigned a literal the text can read"
    if isinstance(stmt, ast.AnnAssign):
        return "has an annotation the text cannot read (strings, or several lines)"
    return "is not assigned a literal the text can read"


def _dynamic(node: ast.AST) -> str | None:
    """Why this node, anywhere in the file, could bind the four names or reach them by a computed name."""
    if isinstance(node, ast.Global | ast.Nonlocal):
        declared = [name for name in node.names if name in NAMES]
        return f"{declared[0]} is declared {type(node).__name__.lower()}" if declared else None
    if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name) and node.target.id in NAMES:
        return f"{node.target.id} is assigned by :="
    if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
        return "`from ... import *` can bind any name"
    word = next((word for word in _words(node) if word in DYNAMIC), None)
    return f"uses {word}, which can change module variables where the text cannot see it" if word else None


def _words(node: ast.AST) -> list[str]:
    """The identifiers a node uses or binds, as far as the dynamic words go."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        # what the statement binds, and the package it starts from: `from indico.modules.x import y` does not
        # touch sys.modules, while `import importlib.util` or `from builtins import ...` reach dynamic tools
        words = [word for alias in node.names for word in (alias.name.partition(".")[0], alias.asname or "")]
        if isinstance(node, ast.ImportFrom):
            words += [alias.name for alias in node.names] + [(node.module or "").partition(".")[0]]
        return words
    return []


def _unsafe_read(node: ast.AST, stmt: ast.stmt, assigned: dict[str, ast.Assign | ast.AnnAssign]) -> str | None:
    """Why a read of one of the four names (in the top-level statement `stmt`) is not harmless, or None."""
    if not (isinstance(node, ast.Name) and node.id in NAMES and isinstance(node.ctx, ast.Load)):
        return None
    name, assignment = node.id, assigned.get(node.id)
    if assignment is None:
        return f"{name} is read, but never assigned by a module-level `{name} = ...`"
    if stmt.lineno <= assignment.lineno:  # it may run before the name exists: a NameError in Alembic's import
        return f"{name} is read before line {assignment.lineno} assigns it"
    if isinstance(assignment.value, ast.List):
        return f"{name} is a list (line {assignment.lineno}), which code that reads it can change"
    return None

