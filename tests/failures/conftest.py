"""The failure tests reuse the fault tests' fixtures (the TCP server, a project with a base migration)."""

from tests.faults.conftest import _no_migrator_survives, fault_project, url  # noqa: F401  (fixtures)
