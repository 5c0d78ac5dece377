"""Run by `migrator init --adopt` in the app's own Python (`python -c <this file's text> REQUEST OUT`): import
the models as the original env.py did and write down what the migrations' SQL depends on.

It runs where the app is installed, which is not where migrator is (pipx), so it imports nothing of migrator's
and only the standard library at the top; the app's modules, SQLAlchemy and Flask come from the app's environment.
The request (JSON) says how to reach the metadata:

- `{"imports": [...], "needed": [...], "expression": "Base.metadata"}`: execute the `needed` import statements,
  evaluate `expression`; then each other import of the env.py, noting the tables each one adds to the metadata
  (an import that adds none is not needed for the models);
- `{"flask": true}`: load the Flask app as `flask` does (FLASK_APP, .flaskenv) and read Flask-Migrate's
  database metadata and its `configure_args` within an app context.

The answer (JSON, written to OUT, since the app's import may print to stdout): the metadata's naming
convention, the tables each other import registers, Flask-Migrate's options, or the error that stopped it.
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


def _from_imports(request: dict[str, Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for statement in request["needed"]:
        exec(statement, namespace)  # noqa: S102  (the env.py's own import statements)
    metadata = eval(request["expression"], namespace)  # noqa: S307  (a name or attribute chain, checked by adopt)
    answer = _convention(metadata)
    before = _tables(metadata)
    registers: dict[str, Any] = {}
    for statement in request["imports"]:
        try:
            exec(statement, namespace)  # noqa: S102
        except Exception as exc:  # reported to adopt, which says so
            registers[statement] = f"{type(exc).__name__}: {exc}"
            continue
        after = _tables(metadata)
        registers[statement] = sorted(after - before)
        before = after
    answer["registers"] = registers
    answer["tables"] = len(before)
    return answer


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
        answer = _from_flask() if request.get("flask") else _from_imports(request)
    except BaseException as exc:  # an app that exits at import is an answer too
        answer = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main(sys.argv[1:])
