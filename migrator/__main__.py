"""`python -m migrator`: the same as the `migrator` console script."""

from migrator.cli import entrypoint

entrypoint()
