"""migrator: Alembic migrations for PostgreSQL apps on Kubernetes, run from a release image."""

__version__ = "0.1.0"
