"""A signal that comes while a failed step is being explained waits for the explanation: the failure's module is
imported by the runs that fail (migrator.migrations), inside the bookkeeping a signal does not cut short, the
failed step's history row is written, and the failure stays the outcome (exit 1), as when the signal comes while
the failure is being written (tests/shutdown/test_finish.py). The probe sends SIGTERM to itself at the very
moment that import starts, which no outside timing could hit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import HEAD, add_revision, migrator_env, query

FAILING = "20211105000000"
# SIGTERM when migrator.failures starts to be imported; then the import goes on as usual.
PROBE = """\
import importlib.abc, os, signal, sys

class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "migrator.failures":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
from migrator.cli import main
sys.exit(main(["migrate"]))
"""


def test_a_signal_during_the_failures_import_leaves_the_failure_explained(project: Path, database_url: str) -> None:
    add_revision(project, FAILING, HEAD, 'op.execute("SELECT 1 / 0")', name="divides")
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=project, capture_output=True, text=True, timeout=120,
                          env=migrator_env(database_url), check=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith(f"[error] migration {FAILING} (divides) failed and was rolled back: DivisionByZero: "
                         "division by zero; earlier migrations stay applied"), proc.stderr
    rows = query(database_url, "SELECT outcome FROM migrator_history WHERE revision = %s", FAILING)
    assert rows == [("failed",)], proc.stderr
