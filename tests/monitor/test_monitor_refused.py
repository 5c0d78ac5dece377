"""A monitor whose reconnect the server refuses leaves a healthy migration alone.

When the monitoring connection is lost and the server refuses a new one (the role's CONNECTION LIMIT or
max_connections reached by the application), the server has answered: that is no stall. The migration session,
running normally, finishes (exit 0) instead of being shut down after MIGRATOR_STALL_TIMEOUT with "no answer from
the server for Ns (the monitoring connection got none either)": a long index build is not thrown away for that.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import add_revision, dbname, query
from tests.faults.helpers import BASE, Migrator, at_base, sleeping_backend, terminate, versions
from tests.urls import as_role

REV = "20240101000001"
LONG = """
op.execute("SELECT pg_sleep(8)")
op.execute("INSERT INTO ran_log (what) VALUES ('long done')")
"""


def test_a_refused_monitor_reconnect_does_not_kill_a_healthy_migration(fault_project: Path, url: str) -> None:
    add_revision(fault_project, REV, BASE, LONG, name="long")
    at_base(url)
    role = "mig_" + uuid.uuid4().hex[:8]
    query(url, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' CONNECTION LIMIT 2")
    query(url, f'GRANT ALL ON DATABASE "{dbname(url)}" TO {role}')
    query(url, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    query(url, f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    mine = as_role(url, role, f"pw-{role}")
    try:
        run = Migrator(["migrate"], cwd=fault_project, url=mine, MIGRATOR_STALL_TIMEOUT="2")
        session = sleeping_backend(url)
        rows = query(url, "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> %s", role, session.pid)
        assert len(rows) == 1, rows
        # The application fills the role's connections (the limit is checked only when a connection starts),
        # and a DBA's script ends the mostly idle monitoring session.
        query(url, f"ALTER ROLE {role} CONNECTION LIMIT 1")
        terminate(url, int(str(rows[0][0])))
        result = run.finish(30)
        assert "no answer from the server" not in result.err, result.err
        assert result.code == 0, result.err
        assert REV in versions(url)
    finally:
        query(url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        query(url, f"REASSIGN OWNED BY {role} TO postgres")
        query(url, f"DROP OWNED BY {role}")
        query(url, f"DROP ROLE {role}")
