"""What counts as a change (migrator.source_checksum): reformatting by the real formatters and comment edits
do not change a file's checksum; every change to what Python executes does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.source_checksum import checksum, checksum_of_text, normalized
from tests.conftest import ROOT

CORPUS = Path(__file__).with_name("corpus_unformatted.py.txt")
BIN = Path(sys.executable).parent
EXAMPLES = sorted((ROOT / "migrations" / "versions").glob("*.py"))

# ruff format and black with the settings teams use: defaults, narrow and wide lines, single quotes, no magic
# trailing comma. Each rewrites the corpus' layout, quotes, parentheses, trailing commas and one-liners.
FORMATTERS = [
    ["ruff", "format", "-q", "--no-cache"],
    ["ruff", "format", "-q", "--no-cache", "--line-length=40"],
    ["ruff", "format", "-q", "--no-cache", "--line-length=200", "--config", "format.quote-style='single'"],
    ["ruff", "format", "-q", "--no-cache", "--config", "format.skip-magic-trailing-comma=true"],
    ["black", "-q"],
    ["black", "-q", "--line-length=50", "--skip-string-normalization"],
    ["black", "-q", "--skip-magic-trailing-comma"],
]


def formatted(source: Path, command: list[str], tmp_path: Path) -> bytes:
    tool = BIN / command[0]
    if not tool.exists():
        pytest.skip(f"{command[0]} is not installed in this environment: pip install -e '.[dev]'")
    copy = tmp_path / "revision.py"
    shutil.copy(source, copy)
    subprocess.run([str(tool), *command[1:], str(copy)], check=True, timeout=60)
    data = copy.read_bytes()
    compile(data, str(copy), "exec")  # still valid Python
    return data


@pytest.mark.parametrize("command", FORMATTERS, ids=[" ".join(c[:1] + c[3:] if c[0] == "ruff" else c)
                                                     for c in FORMATTERS])
@pytest.mark.parametrize("source", [CORPUS, *EXAMPLES], ids=lambda p: p.name)
def test_formatting_by_ruff_or_black_is_not_a_change(source: Path, command: list[str], tmp_path: Path) -> None:
    data = formatted(source, command, tmp_path)
    assert data != source.read_bytes() or source != CORPUS  # the corpus is unformatted: the formatter changed it
    assert checksum(data) == checksum(source.read_bytes())


SAME = {
    "comments and blank lines": ("x = 1\n", "# set x\n\nx = 1  # one\n\n# end\n"),
    "blank lines before a dedent": ("def f():\n    x\ny\n", "def f():\n    x\n\n\ny\n"),
    "a comment line opening a block": ("def f():\n    return 1\n", "def f():\n    # one\n\n    return 1\n"),
    "docstrings": ('"""Add users."""\ndef f():\n    "Doc."\n    return 1\n',
                   '"""Add the users table."""\ndef f():\n    """Other doc."""\n    return 1\n'),
    "quotes and prefixes": ("op.execute('SELECT 1')\n", 'op.execute(u"SELECT 1")\n'),
    "escapes": ("s = 'a\\x62'\n", "s = 'ab'\n"),
    "implicit concatenation": ("s = ('SELECT 1 '\n     'FROM t')\n", "s = 'SELECT 1 FROM t'\n"),
    "number spelling": ("x = 0XFF + 1E3\n", "x = 255 + 1000.0\n"),
    "one-liners": ("if a: b; c\nelse: d\n", "if a:\n    b\n    c\nelse:\n    d\n"),
    "tab width": ("if a:\n\tb\n", "if a:\n  b\n"),
    "backslash continuation": ("x = 1 + \\\n    2\n", "x = 1 + 2\n"),
    "call trailing comma": ("f(a, b,)\n", "f(\n    a,\n    b\n)\n"),
    "single call argument trailing comma": ("f(a,)\n", "f(a)\n"),
    "pair trailing comma": ("t = (a, b,)\n", "t = (a, b)\n"),
    "value parentheses": ("x = (a + b)\n", "x = a + b\n"),
    "return parentheses": ("def f():\n    return (a)\n", "def f():\n    return a\n"),
    "if parentheses": ("if (a or b):\n    pass\n", "if a or b:\n    pass\n"),
    "for parentheses": ("for (a, b) in (c):\n    pass\n", "for a, b in c:\n    pass\n"),
    "empty class parentheses": ("class A():\n    pass\n", "class A:\n    pass\n"),
    "f-string quotes and field spaces": ("s = f'{ x }:{y!r}'\n", 's = f"{x}:{y!r}"\n'),
}

DIFFERENT = {
    "SQL text": ("op.execute('DROP TABLE a')\n", "op.execute('DROP TABLE b')\n"),
    "a number": ("x = 1\n", "x = 2\n"),
    "a name": ("op.drop_table(name)\n", "op.drop_table(names)\n"),
    "precedence parentheses": ("x = (a + b) * c\n", "x = a + b * c\n"),
    "a one-element tuple": ("x = f((1,))\n", "x = f((1))\n"),
    "a tuple index": ("x[1,]\n", "x[1]\n"),
    "assert with a tuple": ("assert (a, b)\n", "assert a, b\n"),
    "a loop's iterable": ("for x in a in (b or c):\n    pass\n", "for x in a in b or c:\n    pass\n"),
    "a tuple holding a lambda": ("x = f((lambda a, b: a,))\n", "x = f((lambda a, b: a))\n"),
    "indentation": ("if a:\n    b\n    c\n", "if a:\n    b\nc\n"),
    "a string that is not a docstring": ("x = 1\ny = 'a'\n", "x = 1\ny = 'b'\n"),
    "an f-string's text": ("s = f'DROP {t}'\n", "s = f'TRUNCATE {t}'\n"),
    "an f-string's field": ("s = f'{a}'\n", "s = f'{b}'\n"),
    "a self-documenting field's spacing": ("s = f'{x = }'\n", "s = f'{x=}'\n"),
    "bytes and text": ("x = b'a'\n", "x = 'a'\n"),
    "a keyword argument": ("op.add_column('t', c, schema=None)\n", "op.add_column('t', c)\n"),
}


@pytest.mark.parametrize("pair", SAME.values(), ids=SAME.keys())
def test_what_is_not_a_change(pair: tuple[str, str]) -> None:
    for text in pair:
        compile(text, "pair", "exec")
    assert checksum_of_text(pair[0]) == checksum_of_text(pair[1])


@pytest.mark.filterwarnings("ignore:assertion is always true")
@pytest.mark.parametrize("pair", DIFFERENT.values(), ids=DIFFERENT.keys())
def test_what_is_a_change(pair: tuple[str, str]) -> None:
    for text in pair:
        compile(text, "pair", "exec")
    assert checksum_of_text(pair[0]) != checksum_of_text(pair[1])


def test_an_f_string_with_nested_quotes_and_a_hash_is_one_token() -> None:
    """PEP 701 (Python 3.12) f-strings, read the same whatever Python runs the scanner: a `#` inside a nested
    string is no comment, so the code after the f-string still counts."""
    text = 's = f"{x["#"]}" + drop()\n'
    tokens = normalized(text)
    assert tokens[2].startswith("f:f:") and tokens[3:] == ["+", "drop", "(", ")", "NEWLINE"]
    assert checksum_of_text(text) != checksum_of_text(text.replace("drop", "keep"))


def test_the_checksum_is_stable() -> None:
    """The algorithm's output is part of every database's history: any change to it must come with a new
    algorithm name (ALGORITHM), never silently."""
    assert checksum(CORPUS.read_bytes()) == ("t1:7595f9b5d7f116666fb8bc2d17e4dc108624f296e43fb4e502dbfc4d38d0a316")


def test_encoding_cookie_and_newlines_are_read_as_python_reads_them() -> None:
    latin = "# -*- coding: latin-1 -*-\nx = 'caf\xe9'\r\n".encode("latin-1")
    assert checksum(latin) == checksum("x = 'café'\n".encode())
    assert checksum(b"\xef\xbb\xbfx = 1\n") == checksum(b"x = 1\n")
