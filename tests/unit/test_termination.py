"""The termination message: written once, redacted, truncated, and never blocking or raising."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from migrator import termination


def write(target: Path | str, message: str) -> float:
    """termination.write to `target`; how long it took."""
    started = time.monotonic()
    termination.write(message, {"MIGRATOR_TERMINATION_LOG": str(target)})
    return time.monotonic() - started


def test_one_redacted_line_replaces_the_previous_message(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("an older, longer message from a previous container\n")
    write(log, "migrate failed (exit 3):\n  cannot connect to postgres://app:hunter2@db/app")
    assert log.read_text() == "migrate failed (exit 3): cannot connect to postgres://app:***@db/app\n"


def test_truncated_to_the_kubernetes_limit_on_a_character_boundary(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    write(log, "\u00e9" * 5000)
    data = log.read_bytes()
    assert len(data) <= termination.MAX_BYTES and data.endswith(b"\n")
    assert data.decode() == "\u00e9" * ((termination.MAX_BYTES - 1) // 2) + "\n"


def test_undecodable_text_is_escaped_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    write(log, "migrations directory /srv/\udcff not found")
    assert log.read_text() == "migrations directory /srv/\\udcff not found\n"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_fifo_without_a_reader_does_not_block(fifo: Path) -> None:
    assert write(fifo, "migrate: ok") < 1


def test_a_fifo_with_a_reader_gets_the_line(fifo: Path) -> None:
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert write(fifo, "migrate: ok") < 1
        assert os.read(reader, 100) == b"migrate: ok\n"
    finally:
        os.close(reader)


def test_a_full_fifo_does_not_block(fifo: Path) -> None:
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                os.write(filler, b"x" * 65536)
            except BlockingIOError:
                break
        assert write(fifo, "migrate: ok") < 1
    finally:
        os.close(filler)
        os.close(reader)


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    link = tmp_path / "termination-log"
    link.symlink_to(precious)
    write(link, "migrate: ok")
    assert precious.read_text() == "keep me\n"


@pytest.mark.parametrize("target", ["", "/nonexistent/dir/log", "/dev/full", "bad\0path", "."])
def test_unwritable_targets_are_ignored(target: str) -> None:
    assert write(target, "migrate: ok") < 1  # and nothing raised


def test_default_path_only_when_writable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(termination, "DEFAULT_PATH", str(tmp_path / "absent" / "termination-log"))
    assert termination.path({}) is None
    monkeypatch.setattr(termination, "DEFAULT_PATH", str(tmp_path / "termination-log"))
    (tmp_path / "termination-log").write_text("")
    assert termination.path({}) == str(tmp_path / "termination-log")
    assert termination.path({"MIGRATOR_TERMINATION_LOG": "/x"}) == "/x"
