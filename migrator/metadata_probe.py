"""Run by `migrator init --adopt` in the app's own Python (`python -c <this file's text> REQUEST OUT`): prepare
the metadata as the original env.py did and write down what the migrations' SQL depends on.

It runs where the app is installed, which is not where migrator is (pipx), so it imports nothing of migrator's
and only the standard library at the top; the app's modules, SQLAlchemy and Flask come from the app's environment.
The request (JSON) says how to reach the metadata:

- `{"statements": [{"source", "line", "needed"}, ...], "expression": "target_metadata", "env_py": ...}`: run the
  env.py's top-level statements before the migrations run (env_metadata chose them: those that need Alembic's
  context left out), in their order, as Alembic would, then evaluate `expression`, what context.configure() is
  given. A `needed` statement (the metadata depends on it) that fails is an error; another one that fails is
  reported and skipped. For each other statement, what it changed in the metadata: tables, naming convention;
- `{"flask": true}`: load the Flask app as `flask` does (FLASK_APP, .flaskenv) and read Flask-Migrate's
  database metadata and its `configure_args` within an app context.

The answer (JSON, written to OUT, since the app's import may print to stdout): the metadata's naming
convention, what each statement changed, Flask-Migrate's options, or the error that stopped it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _tables(metadata: Any) -> set[str]:
    every = metadata if isinstance(metadata, (list, tuple)) else [metadata]
    return {key for one in every for key in one.tables}


def _convention(metadata: Any) -> dict[str, Any]:
    """The convention Alembic applies: the metadata's own; for a list of metadata, SQLAlchemy's default."""
    if isinstance(metadata, (list, tuple)):
        from sqlalchemy import MetaData  # noqa: PLC0415  (the app's SQLAlchemy)

        metadata = MetaData()
    found: dict[str, Any] = {}
    for key, value in metadata.naming_convention.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return {"unsupported": f"{key!r}: {value!r}"}
        found[key] = value
    return {"naming_convention": found}


def _from_env(request: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import MetaData  # noqa: PLC0415  (the app's SQLAlchemy)

    created = _recording(MetaData)

    def states() -> list[tuple[Any, ...]]:
        """Each MetaData made so far: its tables and its naming convention."""
        return [(frozenset(m.tables), _spelled(m.naming_convention)) for m in created]

    namespace: dict[str, Any] = {"__file__": request["env_py"], "__name__": "env_py"}
    history = [states()]
    failed: dict[str, str] = {}
    for statement in request["statements"]:
        try:
            exec(compile(statement["source"], request["env_py"], "exec"), namespace)  # noqa: S102  (the env.py's own)
        except Exception as exc:
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            if statement["needed"]:
                return {"error": f"env.py line {statement['line']}: {why}"}
            failed[str(statement["line"])] = why
        history.append(states())
    metadata = eval(request["expression"], namespace)  # noqa: S307  (a name or attribute chain, checked by adopt)
    if metadata is None:
        return {"error": f"{request['expression']} is None after the env.py's top-level statements"}
    answer = _convention(metadata)
    answer["tables"] = len(_tables(metadata))
    answer["failed"] = failed
    every = metadata if isinstance(metadata, (list, tuple)) else [metadata]
    targets = [index for index, m in enumerate(created) if any(m is one for one in every)]
    answer["effects"] = _effects(request["statements"], history, targets, _spelled(MetaData().naming_convention))
    return answer


def _recording(metadata_class: Any) -> list[Any]:
    """The MetaData objects made from now on, in order (MetaData's __init__ wrapped: subclasses' too)."""
    created: list[Any] = []
    original = metadata_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        created.append(self)

    metadata_class.__init__ = init
    return created


def _spelled(convention: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((repr(key), repr(value)) for key, value in convention.items()))


def _effects(statements: list[dict[str, Any]], history: list[list[tuple[Any, ...]]], targets: list[int],
             default: tuple[tuple[str, str], ...]) -> dict[str, dict[str, Any]]:
    """What each statement the metadata does not depend on changed in it (`targets`: the indexes of its MetaData
    objects in `history`'s states): tables added, its naming convention."""
    effects: dict[str, dict[str, Any]] = {}
    for index, statement in enumerate(statements):  # no zip(strict=): the app's Python may be older than 3.10
        before, after = history[index], history[index + 1]
        tables: set[str] = set()
        convention = False
        for key in targets:
            if key >= len(after):
                continue
            was = before[key] if key < len(before) else (frozenset(), default)
            tables |= after[key][0] - was[0]
            convention = convention or after[key][1] != was[1]
        if not statement["needed"] and (tables or convention):
            effects[str(statement["line"])] = {"tables": sorted(tables), "convention": convention}
    return effects


def _from_flask() -> dict[str, Any]:
    from flask.cli import ScriptInfo, load_dotenv  # noqa: PLC0415  (the app's Flask)

    load_dotenv()
    app = ScriptInfo().load_app()
    with app.app_context():
        migrate = app.extensions["migrate"]
        db = migrate.db
        metadata = db.metadatas[None] if hasattr(db, "metadatas") else db.metadata  # as its env.py's get_metadata()
        answer = _convention(metadata)
        answer["tables"] = len(_tables(metadata))
        constants, others = {}, []
        for key, value in migrate.configure_args.items():
            if value is None or isinstance(value, (bool, int, float, str)):
                constants[key] = value
            else:
                others.append(key)
        answer["configure_args"] = constants
        answer["other_args"] = sorted(others)
        answer["app"] = app.import_name
    return answer


def main(argv: list[str]) -> None:
    request_file, out_file = argv
    with open(request_file, encoding="utf-8") as f:
        request = json.load(f)
    sys.path[:0] = request.get("sys_path", [])
    try:
        answer = _from_flask() if request.get("flask") else _from_env(request)
    except BaseException as exc:  # an app that exits at import is an answer too
        answer = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main(sys.argv[1:])
