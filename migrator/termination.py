"""The one-line summary Kubernetes shows in `kubectl describe pod` after the container ends.

Written to MIGRATOR_TERMINATION_LOG when set, else to /dev/termination-log when that path is writable (it is
in every Kubernetes container). Best effort: failing to write it must never change the exit code, and
writing it must never block: the file is opened non-blocking (a FIFO without a reader fails at once instead
of waiting for one) and written once. A symlink is not followed: Kubernetes mounts a regular file there, and
following a link would truncate whatever file it points to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import suppress

from migrator.redaction import redact

DEFAULT_PATH = "/dev/termination-log"
MAX_BYTES = 4096  # Kubernetes truncates the message beyond this
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def path(env: Mapping[str, str] = os.environ) -> str | None:
    explicit = env.get("MIGRATOR_TERMINATION_LOG", "").strip()
    if explicit:
        return explicit
    return DEFAULT_PATH if os.access(DEFAULT_PATH, os.W_OK) else None


def line(message: str) -> bytes:
    """`message` redacted, on one line, newline included, at most MAX_BYTES bytes of UTF-8."""
    text = " ".join(redact(message).split())
    # Undecodable file names reach messages as surrogates: print them escaped rather than fail.
    data = text.encode("utf-8", "backslashreplace")[: MAX_BYTES - 1]
    return data.decode("utf-8", "ignore").encode() + b"\n"  # a character cut in half is dropped whole


def write(message: str, env: Mapping[str, str] = os.environ) -> None:
    """Write `message`, redacted, on one line; never raises, never blocks."""
    try:
        target = path(env)
        if target is None:
            return
        data = line(message)
        fd = os.open(target, _FLAGS, 0o644)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return
    with suppress(OSError):  # EAGAIN (a full pipe), EPIPE, ENOSPC, ...
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
