"""The shutdown tests reuse the fault tests' fixtures (the TCP server, the fault proxy, a project)."""

from tests.faults.conftest import (  # noqa: F401  (fixtures)
    _no_migrator_survives,
    fault_project,
    proxied,
    proxy,
    url,
)
