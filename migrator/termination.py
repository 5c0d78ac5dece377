"""The one-line summary Kubernetes shows in `kubectl describe pod` after the container ends.

Written to MIGRATOR_TERMINATION_LOG when set, else to /dev/termination-log when that path is writable (it is
in every Kubernetes container). Best effort: failing to write it must never change the exit code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from migrator.redaction import redact

DEFAULT_PATH = "/dev/termination-log"
MAX_BYTES = 4096  # Kubernetes truncates the message beyond this


def path(env: Mapping[str, str] = os.environ) -> str | None:
    explicit = env.get("MIGRATOR_TERMINATION_LOG", "").strip()
    if explicit:
        return explicit
    return DEFAULT_PATH if os.access(DEFAULT_PATH, os.W_OK) else None


def write(message: str, env: Mapping[str, str] = os.environ) -> None:
    """Write `message`, redacted, on one line."""
    target = path(env)
    if target is None:
        return
    line = " ".join(redact(message).split()).encode()[: MAX_BYTES - 1].decode(errors="ignore")
    try:
        with open(target, "w") as f:
            f.write(line + "\n")
    except OSError:
        pass
