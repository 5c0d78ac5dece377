"""The README's "Use it on your own database", tried step by step as a newcomer would: its shell blocks run by
bash in a new app directory, with the real `migrator` command of this environment on PATH, against a real
PostgreSQL; the Python block fills in the revision `migrator new` wrote. Only the database URL differs from the
README's placeholder (the `export DATABASE_URL=...` line is given the test database's). The image blocks (docker
build and run) are the image tests' (tests/image/test_init_image.py)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, assert_no_secret, migrator_env, query

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    start = README.index("\n## Use it on your own database\n")
    section = README[start:README.index("\n## ", start + 1)]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def bash(script: str, cwd: Path, database_url: str, exported: bool = False) -> subprocess.CompletedProcess[str]:
    """SCRIPT in a new bash; `exported`: DATABASE_URL as the first block's `export` left it in the reader's shell."""
    script = re.sub(r"^export DATABASE_URL=\S+", f"export DATABASE_URL='{database_url}'", script, flags=re.M)
    env = {**migrator_env(database_url if exported else None),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env=env)
    assert_no_secret(proc.stdout, proc.stderr)
    return proc


def test_the_quick_start_runs_as_written(tmp_path: Path, database_url: str) -> None:
    setup, commands, *_ = blocks("sh")
    [revision_body] = blocks("python")
    (tmp_path / "my-app").mkdir()
    created = bash(setup, tmp_path, database_url)
    assert created.returncode == 0, created.stderr
    [path] = [tmp_path / "my-app" / line for line in created.stdout.splitlines() if line.endswith("_create_items.py")]
    text = path.read_text()
    path.write_text(text[:text.index("\ndef upgrade()")] + "\n" + revision_body)

    ran = bash(commands, tmp_path / "my-app", database_url, exported=True)
    assert ran.returncode == 0, ran.stderr
    assert "CREATE TABLE items (" in ran.stdout
    assert re.search(r"== Running \d{14} create_items\.upgrade forward", ran.stderr)
    assert "  pending: none\n  at head: yes" in ran.stdout
    assert re.search(r"== Running \d{14} create_items\.downgrade backward", ran.stderr)
    assert query(database_url, "SELECT to_regclass('items')") == [(None,)]


def test_the_command_table_lists_every_option() -> None:
    from migrator.cli import build_parser

    start = README.index("\n## Commands\n")
    commands_section = README[start:README.index("\n## ", start + 1)]
    rows = re.findall(r"^\| `(\w+)([^|]*)` \|", commands_section, re.MULTILINE)
    table = {command: "".join(rest for name, rest in rows if name == command) for command, _ in rows}
    [subcommands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    # --repo and --tenant are described once, after the table, naming the commands that take them.
    [tenants] = re.findall(r"`--tenant NAME` picks one:(.*?)\n\n", commands_section, re.DOTALL)
    for command, parser in subcommands.choices.items():
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
        assert set(re.findall(r"--[\w-]+", table[command])) == options - {"--help", "--repo", "--tenant"}, command
        assert ("--tenant" in options) == (f"`{command}" in tenants), command


def test_the_ci_package_list_names_what_ci_installs() -> None:
    packages = set(re.findall(r"missing\+=\(([\w.-]+)\)", (ROOT / ".ci" / "run").read_text())) - {"python3"}
    [listed] = re.findall(r"`apt-get install ([^`]+)`", README)
    assert set(listed.split()) == packages


def test_the_readme_names_every_file_init_writes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "migrator", "init"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False, env=migrator_env(None))
    assert proc.returncode == 0, proc.stderr
    written = [line.split(":")[0].removeprefix("created ") for line in proc.stdout.splitlines()]
    for name in written:
        if not name.startswith(("migrations/", "seeds/")):  # the directories' contents are described, not named
            assert name in README, name
    assert "--network host -e DATABASE_URL -e PGPASSWORD" in (tmp_path / "migrator.Dockerfile").read_text()
