"""The table tests reuse the fault tests' fixtures (the TCP server) where two migrators must meet."""

from tests.faults.conftest import _no_migrator_survives, url  # noqa: F401  (fixtures)
