"""A seed cannot commit half of itself through its session's connection.

README: "A seed cannot end the transaction it runs in: COMMIT or ROLLBACK is refused before it is sent, and
`session.commit()` only releases a savepoint." That holds for `session.connection().commit()` too: the seed
fails (exit 1) with a line that names the commit it attempted, and nothing it wrote stays.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import query
from tests.faults.helpers import Migrator, at_base

SEED = '''
import sqlalchemy as sa


def run(session):
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed first half')"))
    session.connection().commit()
    session.execute(sa.text("INSERT INTO ran_log (what) VALUES ('seed second half')"))
    raise RuntimeError("boom after half")
'''


def test_a_seed_cannot_commit_half_of_itself(fault_project: Path, url: str) -> None:
    at_base(url)
    (fault_project / "seeds" / "01_half.py").write_text(SEED)
    result = Migrator(["seed"], cwd=fault_project, url=url).finish(60)
    assert result.code == 1, result.err
    assert "seed 01_half.py failed and was rolled back: seed 01_half.py commits the transaction it runs in through " \
           "SQLAlchemy (it was not committed)" in result.one_clean_error()
    assert [row[0] for row in query(url, "SELECT what FROM ran_log")] == []
