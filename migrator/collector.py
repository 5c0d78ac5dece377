"""The garbage collector, tuned for what a `migrator` process is: one short run that allocates steadily.

CPython collects its youngest generation every 700 net allocations of container objects. An apply run
allocates mostly short-lived objects (SQLAlchemy's DDL constructs and compiled statements, the tokens of each
statement's description, log events) while the heap holds everything Alembic, SQLAlchemy and the revision
modules imported: each collection that reaches an older generation walks all of that again. On 200 revisions
the default thresholds made 228, 21 and 2 collections of the three generations (158 ms, about a tenth of the
client CPU); with a young generation of 20,000 there are 73, 6 and 0, most of them while migrator.cli is
imported, before this is set (gc.callbacks; the README's Benchmarks section has callgrind's counts).
Reference counting still frees almost everything at once; only cycles wait longer, and 20,000 objects are a
few megabytes at most.

Only the console script sets it (cli.entrypoint): a process that imports migrator as a library (tests, a
user's own tooling) keeps its own collector settings.
"""

from __future__ import annotations

import gc

YOUNG = 20_000  # allocations between collections of the youngest generation (CPython's default: 700)


def tune_for_one_run() -> None:
    """Collect the youngest generation every YOUNG allocations; the older generations keep their ratios."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)
