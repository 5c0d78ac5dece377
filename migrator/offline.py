"""What needs no database: the SQL of a range of migrations rendered by Alembic's offline mode (`sql`),
and each migration's SQL checked by squawk (`lint`).
"""

from __future__ import annotations

import io
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory

from migrator import alembic_internals as internals
from migrator import linting
from migrator.errors import MigratorError, RevisionError
from migrator.repos import Repo


def sql(repo: Repo, start: str = "base", end: str = "heads") -> str:
    """The SQL that migrating from `start` to `end` would run, rendered by Alembic offline.

    Backwards (a rollback) when `end` is below `start`. Nothing connects to a database.
    """
    config = internals.alembic_config(repo)
    script = internals.load_script(config)
    return render_sql(config, script, internals.resolve(script, start), internals.resolve(script, end))


def render_sql(config: Config, script: ScriptDirectory, start: str, end: str) -> str:
    """Offline rendering of `start` -> `end` (resolved ids, `base` or `heads`)."""
    with internals.revision_errors():
        if start in ("head", "heads"):
            heads_now = script.get_heads()
            if len(heads_now) > 1:
                raise RevisionError(f"--from {start} is ambiguous with several heads ({', '.join(heads_now)})")
            start = heads_now[0]
        below = {s.revision for s in script.iterate_revisions(start, "base")} - {start} if start != "base" else set()
        backward = (end == "base" and start != "base") or end in below
        buffer = io.StringIO()

        def plan(current: Any, _context: Any) -> Any:
            return internals.downgrade_plan(script, end, current) if backward else \
                internals.upgrade_plan(script, end, current)

        try:
            internals.run_env(config, script, None, plan, as_sql=True, output_buffer=buffer,
                               starting_rev=None if start == "base" else start, destination_rev=end)
        except (MigratorError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the migration's own code: it reads the database, or fails without one
            running = [line for line in buffer.getvalue().splitlines() if line.startswith("-- Running ")]
            where = running[-1].removeprefix("-- Running ") if running else "a migration"
            raise RevisionError(f"{where} cannot be rendered offline ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}): it needs a database (it reads data, or "
                                "branches on what it finds); review it in the migration file instead") from None
    return buffer.getvalue()


def lint(repo: Repo, start: str = "base") -> str:
    """Run squawk on the SQL of each migration after `start`; returns its report, LintFailed on findings."""
    config = internals.alembic_config(repo)
    script = internals.load_script(config)
    start = internals.resolve(script, start)
    after = {s.revision for s in script.iterate_revisions(start, "base")} if start != "base" else set()
    files: list[tuple[str, str]] = []
    for revision in reversed(list(script.walk_revisions())):
        if revision.revision in after or len(internals.parents(revision)) > 1:
            continue  # already linted, or a merge point (it runs no SQL of its own)
        parent = revision.down_revision if isinstance(revision.down_revision, str) else "base"
        rendered = render_sql(config, script, parent or "base", revision.revision)
        name = f"{len(files) + 1:04d}_{revision.revision}_{internals.module_name(revision)}.sql"
        files.append((name, linting.without_version_table(rendered, repo.version_table)))
    return linting.squawk(files, repo.project_dir)
