"""A migrator whose standard error is a pipe the test controls: read as it comes, then blocked (a log collector
that stopped reading: the pipe is filled from the test's side, so every write of the migrator waits) or closed
(a reader that went away, as `migrator migrate 2>&1 | head -3` does).

Writes of the test's own go through a second, non-blocking open file description of the same pipe, so that the
migrator's stays blocking, as a real log pipe is.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import assert_no_secret, migrator_env
from tests.faults.helpers import FAST, LIVE
from tests.faults.proxy import wait_until

FILLER = b"#" * 1023 + b"\n"  # what the test writes to fill the pipe; dropped again when the output is read


class PipedMigrator:
    """`python -m migrator ARGS` with stderr on a pipe of the test's, stdout collected at the end."""

    def __init__(self, args: list[str], *, cwd: Path, url: str, termination: Path,
                 env: Mapping[str, str] | None = None) -> None:
        read, write = os.pipe()
        self.read_fd: int | None = read
        # The test's own way into the pipe, non-blocking (a separate open file description: /proc reopens it).
        self.fill_fd: int | None = os.open(f"/proc/self/fd/{write}", os.O_WRONLY | os.O_NONBLOCK)
        self.termination = termination
        self.proc = subprocess.Popen([sys.executable, "-m", "migrator", *args], cwd=cwd, text=True,
                                     stdout=subprocess.DEVNULL, stderr=write,
                                     env=migrator_env(url, MIGRATOR_TERMINATION_LOG=str(termination),
                                                      PYTHONFAULTHANDLER="1", **{**FAST, **(env or {})}))
        os.close(write)
        self.data = b""
        # Killed after the test if it is still running, like the fault tests' migrators (it has their kill()).
        LIVE.append(self)  # type: ignore[arg-type]

    def read_available(self) -> None:
        assert self.read_fd is not None
        while select.select([self.read_fd], [], [], 0)[0]:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return
            self.data += chunk

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            self.read_available()
            if text in self.err:
                return True
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {text!r}:\n{self.err}"
            return False

        wait_until(seen, timeout, f"the log line {text!r}", interval=0.02)

    def block(self) -> None:
        """Fill the pipe: from now on every write of the migrator to stderr waits for a reader."""
        assert self.fill_fd is not None
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(self.fill_fd, FILLER)

    def close_reader(self) -> None:
        """The reader goes away: the migrator's next write to stderr fails (EPIPE)."""
        assert self.read_fd is not None and self.fill_fd is not None
        os.close(self.fill_fd)
        self.fill_fd = None
        os.close(self.read_fd)
        self.read_fd = None

    def blocked_writing_stderr(self) -> bool:
        """The main thread is in write(2) on fd 2 (/proc/PID/syscall: the number 1, then the fd)."""
        try:
            return Path(f"/proc/{self.proc.pid}/syscall").read_text().startswith("1 0x2 ")
        except OSError:
            return False

    def finish(self, bound: float, since: float) -> int:
        """Wait (without reading stderr) until `since` + `bound`; past it, kill the process and fail."""
        try:
            code = self.proc.wait(timeout=max(since + bound - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the migrator did not exit within {bound:g}s of the signal (killed); "
                                 f"stderr:\n{self.drain()}") from None
        return code

    def drain(self) -> str:
        """Everything the migrator wrote to stderr, the test's filler left out."""
        if self.fill_fd is not None:
            os.close(self.fill_fd)
            self.fill_fd = None
        if self.read_fd is not None:
            while True:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    break
                self.data += chunk
            os.close(self.read_fd)
            self.read_fd = None
        text = self.err
        assert_no_secret(text)
        return text

    @property
    def err(self) -> str:
        return self.data.replace(FILLER, b"").decode(errors="replace")

    def termination_message(self) -> str:
        text = self.termination.read_text() if self.termination.exists() else ""
        assert_no_secret(text)
        return text.strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
