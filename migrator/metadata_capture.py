"""What `init --adopt` learns by importing the app's models once, in the app's own Python.

Alembic names the constraints and indexes that `op.create_table` & co. create after the target metadata's
naming_convention, so the migrations' SQL depends on it. The migration image holds no app code, so adopt imports
the models where they are installed (migrator itself may live elsewhere: pipx) and writes the convention into
the new env.py as a literal. metadata_probe does the importing, in a subprocess: the app's import runs its own
code, may print, and must not leave anything behind in migrator's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator import metadata_probe
from migrator.errors import ConfigError
from migrator.redaction import redact

PROBE_TIMEOUT = 120.0  # seconds: importing an app's models may be slow, never unbounded


@dataclass
class Captured:
    """The models' metadata as adopt found it, and the Python that imported it."""

    naming_convention: dict[str, str]
    python: str
    tables: int = 0
    # What each top-level statement of the env.py that the metadata does not depend on changed in it (line ->
    # {"tables": [...], "convention": bool}; only those that changed something), and those that failed (line -> why).
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    configure_args: dict[str, Any] = field(default_factory=dict)  # Flask-Migrate's constant options
    other_args: list[str] = field(default_factory=list)  # Flask-Migrate's options that are not constants
    app: str = ""


def pythons(project_dir: Path) -> list[str]:
    """The interpreters that may have the app installed: the active virtualenv's, the project's own .venv or
    venv, then the one running migrator (installed beside the app)."""
    found = []
    active = os.environ.get("VIRTUAL_ENV")
    if active:
        found.append(Path(active) / "bin" / "python")
    found += [project_dir / name / "bin" / "python" for name in (".venv", "venv")]
    found.append(Path(sys.executable))
    return list(dict.fromkeys(str(path) for path in found if path.is_file()))


def capture(project_dir: Path, request: dict[str, Any], what: str) -> Captured:
    """Run the probe with each candidate Python until one imports the models; a ConfigError when none does."""
    tried = []
    for python in pythons(project_dir):
        answer = _probe(python, project_dir, request)
        if "error" not in answer:
            return _captured(answer, python, what)
        tried.append(f"{answer['error']} (with {python})")
    raise ConfigError(redact(
        f"init --adopt: cannot import {what} to capture the naming convention its migrations are written with: "
        f"{'; '.join(tried)}; run init --adopt where the models import: with the app's virtualenv active "
        "(VIRTUAL_ENV) or in the project's .venv, and its settings in the environment (nothing was written)"))


def _captured(answer: dict[str, Any], python: str, what: str) -> Captured:
    if "unsupported" in answer:
        raise ConfigError(redact(
            f"init --adopt: {what} has a naming convention entry that is not a string ({answer['unsupported']}): "
            "migrator can carry only strings into env.py; make that entry a string template, or adopt by hand "
            "(nothing was written)"))
    return Captured(naming_convention=answer["naming_convention"], python=python, tables=answer.get("tables", 0),
                    effects=answer.get("effects", {}), failed=answer.get("failed", {}),
                    configure_args=answer.get("configure_args", {}),
                    other_args=answer.get("other_args", []), app=answer.get("app", ""))


def _probe(python: str, project_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    source = Path(metadata_probe.__file__).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="migrator-adopt-") as tmp:
        request_file, out_file = Path(tmp) / "request.json", Path(tmp) / "answer.json"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        try:
            # -c: sys.path[0] is the project directory (the working directory), as for `alembic` run there.
            proc = subprocess.run([python, "-c", source, str(request_file), str(out_file)], cwd=project_dir,
                                  capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"importing them took longer than {PROBE_TIMEOUT:.0f} s"}
        except OSError as exc:
            return {"error": f"cannot run it: {exc.strerror}"}
        if not out_file.is_file():
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            return {"error": last}
        answer: dict[str, Any] = json.loads(out_file.read_text(encoding="utf-8"))
        return answer
