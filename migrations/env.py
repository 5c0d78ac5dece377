"""Alembic environment for the example app: delegates to migrator, so `migrator` and plain `alembic` agree.

To autogenerate from your models, pass their metadata: run_migrations(target_metadata=Base.metadata).
"""

from migrator.alembic_env import run_migrations

run_migrations(target_metadata=None)
