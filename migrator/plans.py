"""Which steps a rollback takes: the destination of `rollback REV` (Alembic's `downgrade REV`: REV stays
applied) or `rollback --steps N` (`downgrade -N`), refused when it is not below the current revision, and the
same plan logged by `--dry-run`.
"""

from __future__ import annotations

import time

from alembic.script import ScriptDirectory

from migrator import alembic_internals as internals
from migrator import scripts
from migrator.errors import RevisionError
from migrator.logs import get_logger
from migrator.steps import BACKWARD
from migrator.tables import versions
from migrator.targets import Outcome, Target


def rollback_plan(target: Target, script: ScriptDirectory, state: versions.DbState, *, to: str | None,
                   steps: int | None, started: float, dry_run: bool = False) -> tuple[str | None, Outcome]:
    """(absolute destination, outcome so far): None as destination when there is nothing to do."""
    current = state.versions
    known = scripts.known_from(script)
    if known.unknown(current):
        raise RevisionError(f"{target.db.description} is at revision {', '.join(known.unknown(current))}, which "
                            "these migrations do not have: roll back with the image that has it")
    nothing = Outcome(target.repo.name, "rollback", current, current, [], time.monotonic() - started)
    destination = rollback_destination(script, current, to, steps)
    if destination is None:
        get_logger().info(f"Nothing to roll back: {target.db.description} is at {to}", repo=target.repo.name)
        return None, nothing
    plan = internals.downgrade_plan(script, destination, current)
    if destination.startswith("-"):  # fixed now, so that a retry after a lock timeout does not walk further
        last = plan[-1] if plan else None
        below = internals.step_destination(last) if last is not None else current
        destination = below[0] if len(below) == 1 else "base" if not below else ",".join(below)
    if dry_run:
        for step in plan:
            script_ = internals.step_script(step)
            get_logger().info(f"== Would run {script_.revision} {internals.module_name(script_)}.downgrade {BACKWARD}",
                              revision=script_.revision, direction=BACKWARD, dry_run=True)
        get_logger().info(f"Dry run: {len(plan)} migration(s) would be reverted; nothing was changed",
                          repo=target.repo.name)
        return None, nothing
    return destination, nothing


def rollback_destination(script: ScriptDirectory, current: tuple[str, ...], to: str | None,
                          steps: int | None) -> str | None:
    """The downgrade destination (`-N` for steps), or None when already there; RevisionError when the target
    is not below current."""
    applied = [s.revision for s in script.iterate_revisions(current, "base")] if current else []
    if steps is not None:
        if steps > len(applied):
            raise RevisionError(f"cannot roll back {steps} migration(s): only {len(applied)} applied")
        return f"-{steps}"
    assert to is not None
    target = internals.resolve(script, to)
    if (target == "base" and not current) or (len(current) == 1 and target == current[0]):
        return None
    if target == "base" or target in applied[1:] or (target in applied and len(current) > 1):
        return target
    raise RevisionError(f"rollback target {target} is not below the current revision "
                        f"{', '.join(current) or 'base'} (it is not applied); use migrate --to {target} to go forward")
