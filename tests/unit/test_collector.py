"""The console script tunes the garbage collector for one run (migrator.collector); importing migrator as a
library leaves the process's settings alone."""

from __future__ import annotations

import subprocess
import sys

from migrator.collector import YOUNG

SHOW = "import gc; print(gc.get_threshold()[0])"


def _young_threshold(code: str) -> int:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_the_console_script_collects_the_young_generation_less_often() -> None:
    code = f"from migrator import cli\ncli.main = lambda: exec({SHOW!r}) or 0\ncli.entrypoint()"
    assert _young_threshold(code) == YOUNG


def test_importing_migrator_keeps_the_default() -> None:
    assert _young_threshold(f"import migrator.cli, migrator.migrations\n{SHOW}") == 700
