"""Retries: every backoff the migrator uses, in one place, each bounded by a deadline.

Three things are retried, each for its own reason: connecting while the database comes up (Kubernetes often
starts the migrator first), polling the migration lock while another migrator holds it, and a migration that
hit `lock_timeout` and left nothing behind. Jitter keeps many replicas from retrying in step.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from migrator.shutdown import SHUTDOWN


@dataclass
class Backoff:
    """Delays growing from `first` by `factor` up to `cap`, each spread by +-`jitter` (a fraction)."""

    first: float
    factor: float
    cap: float
    jitter: float
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        """The next delay, with jitter; the one after grows."""
        value = self._next * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 (not cryptographic)
        self._next = min(self._next * self.factor, self.cap)
        return value

    def sleep(self, deadline: float | None = None) -> None:
        """Sleep the next delay, never past `deadline` (time.monotonic); a signal ends it (Interrupted)."""
        pause = self.delay()
        if deadline is not None:
            pause = min(pause, max(deadline - time.monotonic(), 0.0))
        SHUTDOWN.sleep(pause)


def connect_backoff() -> Backoff:
    """Waiting for a database that is not up yet: 0.1 s, doubling to 2 s."""
    return Backoff(first=0.1, factor=2.0, cap=2.0, jitter=0.2)


def lock_poll_backoff() -> Backoff:
    """Polling the migration lock: 50 ms, growing to 250 ms (a waiter notices a release quickly)."""
    return Backoff(first=0.05, factor=1.5, cap=0.25, jitter=0.5)


def ddl_retry_backoff() -> Backoff:
    """Retrying a migration after lock_timeout: 1 s, 2 s, 4 s ... up to 30 s."""
    return Backoff(first=1.0, factor=2.0, cap=30.0, jitter=0.25)
