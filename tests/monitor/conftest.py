"""These tests reuse the fault tests' fixtures (the TCP server, the fault proxy, a project with a base migration)."""

from tests.faults.conftest import *  # noqa: F403  (the fixtures its __all__ names)
