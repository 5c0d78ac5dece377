"""The README tells the truth a newcomer relies on: the demo's output as it runs, the exit codes as errors.py
defines them (and --help prints them), what --repo does for each command, the article it follows."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from migrator.errors import EXIT_CODES
from tests.conftest import ROOT, migrator_env, run_migrator

README = (ROOT / "README.md").read_text()
ARTICLE = "https://staknine.com/phoenix-database-migrations-elixir-releases/"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def normalized(text: str) -> list[str]:
    """Lines without what changes from run to run: times, durations, the temporary server's directory."""
    text = re.sub(r"\b\d\d:\d\d:\d\d\.\d{3}\b", "HH:MM:SS.mmm", text)
    text = re.sub(r"/tmp/migrator-pg-\w+", "/tmp/migrator-pg-XXXX", text)
    text = re.sub(r" in \d+\.\ds\b", " in 0.0s", text)
    return text.strip("\n").splitlines()


def test_the_readme_shows_the_demo_as_it_runs() -> None:
    marker = README.index("<!-- The demo's output (make demo)")
    start = README.index("```\n", marker) + 4
    block = README[start:README.index("\n```", start)]
    demo = subprocess.run([sys.executable, "-m", "tests.demo"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False, env=migrator_env(None))
    assert demo.returncode == 0, demo.stdout
    assert normalized(block) == normalized(demo.stdout)
    assert "(exit 5, as intended:" in block  # the step that fails on purpose says so


def readme_exit_codes() -> dict[int, str]:
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section("Exit codes"), re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_lists_the_exit_codes_of_errors_py_word_for_word() -> None:
    expected = "".join(f"| {code} | {meaning} |\n" for code, meaning in EXIT_CODES.items())
    assert readme_exit_codes() == EXIT_CODES, f"the README's table should read:\n{expected}"


def test_help_prints_every_exit_code() -> None:
    result = run_migrator(["--help"], cwd=ROOT, database_url=None)
    assert result.returncode == 0, result.stderr
    for code, meaning in EXIT_CODES.items():
        assert f"  {code:>3}  {meaning}" in result.stdout.splitlines()


@pytest.mark.parametrize(("command", "codes"), [
    ("migrate", [0, 1, 2, 3, 4, 6, 7, 130, 143]), ("rollback", [0, 1, 2, 3, 4, 6, 130, 143]),
    ("seed", [0, 1, 2, 3, 4, 5, 6, 7, 130, 143]), ("status", [0, 1, 2, 3, 5, 6, 7, 130, 141, 143]),
    ("wait", [0, 1, 2, 3, 5, 130, 143]), ("sql", [0, 2, 3, 130, 141, 143]), ("new", [0, 2, 130, 141, 143]),
    ("lint", [0, 1, 2, 130, 141, 143]), ("history", [0, 1, 2, 3, 7, 130, 141, 143]),
    ("resolve", [0, 1, 2, 3, 4, 130, 143]), ("init", [0, 2, 130, 141, 143]), ("verify", [0, 1, 2, 3, 4, 130, 141, 143]),
    ("manifest", [0, 2, 130, 141, 143]),
])
def test_each_command_help_lists_the_exit_codes_it_can_end_with(command: str, codes: list[int],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from migrator.cli import build_parser

    with pytest.raises(SystemExit) as exited:  # argparse prints the help and exits 0, in this process: cheap
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out.split("exit codes:\n", 1)[1].splitlines()
    assert listed == [f"  {code:>3}  {EXIT_CODES[code]}" for code in codes]


@pytest.mark.parametrize(("command", "says"), [
    ("migrate", "default: every one, in the file's order (with --to: required when it lists several)"),
    ("seed", "default: every one, in the file's order"),
    ("status", "default: every one, in the file's order"),
    ("wait", "default: every one, in the file's order"),
    ("rollback", "required when it lists several"),
    ("sql", "required when it lists several"),
    ("new", "required when it lists several"),
    ("lint", "required when it lists several"),
])
def test_repo_help_says_what_the_command_does_with_several_databases(command: str, says: str) -> None:
    result = run_migrator([command, "--help"], cwd=ROOT, database_url=None)
    found = re.search(r"^  --repo NAME\s+(.*?)\n(?:  -|\n)", result.stdout, re.MULTILINE | re.DOTALL)
    assert found, result.stdout
    assert " ".join(found[1].split()).endswith(says)
    assert "default: all" not in result.stdout


def test_the_readme_names_and_links_the_article_first() -> None:
    first_screen = README[:README.index("\n## ")]
    assert f'["Phoenix Database Migrations with Elixir Releases"]({ARTICLE})' in first_screen.replace("\n", " ")
    assert "seed article" not in README


def test_the_readme_installs_the_tool_before_the_development_setup() -> None:
    headings = re.findall(r"^## (.+)$", README, re.MULTILINE)
    assert headings[:3] == ["Install", "Use it on your own database", "Try it here: the demo and the tests"]
    install = section("Install")
    assert "pipx install ." in install and "migrator --version" in install


def test_nothing_tells_users_to_install_migrator_from_pypi_by_name() -> None:
    """The project named `migrator` on PyPI is another one (a 2015 "Database Migration Assistant"): `pip install
    'migrator[verify]'` would install it. The README and every message install from this repository instead."""
    # migrator, with or without extras, not followed by a direct reference (`migrator[verify] @ git+https://...`)
    by_name = re.compile(r"\b(?:pip|pipx) install (?:-\S+ )*['\"]?migrator(?:\[[\w,]+\])?(?!\[| @)")
    sources = [*(ROOT / "migrator").rglob("*.py"), *(ROOT / "migrator" / "templates").iterdir()]
    texts = {"README.md": README, **{str(p.relative_to(ROOT)): p.read_text() for p in sources}}
    assert {name: by_name.findall(text) for name, text in texts.items() if by_name.search(text)} == {}


def test_the_openings_no_op_figures_are_those_the_benchmarks_section_shows() -> None:
    """The opening's "(0.62 s against 1.65 s for `alembic upgrade head`" are the medians of one B1 pair of rows of
    the latest run that Benchmarks prints, not the figures of an older run."""
    [(ours, theirs)] = re.findall(r"without importing Alembic \((\d\.\d+) s against (\d\.\d+) s for",
                                  " ".join(README[:README.index("\n## ")].split()))
    rows = re.findall(r"^B1 no-op N=(\d+): (migrator migrate|alembic upgrade head)\s+[\d.]+\s+([\d.]+)",
                      section("Benchmarks"), re.MULTILINE)
    medians = {(n, who): f"{float(median):.2f}" for n, who, median in rows}
    pairs = [(medians[(n, "migrator migrate")], medians[(n, "alembic upgrade head")]) for n, who, _ in rows
             if who == "migrator migrate" and (n, "alembic upgrade head") in medians]
    assert (ours, theirs) in pairs, pairs
