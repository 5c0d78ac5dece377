"""The table tests reuse the fault tests' fixtures (the TCP server) where two migrators must meet."""

from tests.faults.conftest import *  # noqa: F403  (the fixtures its __all__ names)
