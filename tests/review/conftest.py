"""The adversarial review's tests reuse the fault tests' fixtures (real PostgreSQL, the fault proxy, PgBouncer)."""

from tests.faults.conftest import (  # noqa: F401  (fixtures)
    _no_migrator_survives,
    fault_project,
    own_server,
    pgbouncer,
    proxied,
    proxy,
    url,
)
