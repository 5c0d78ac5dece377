"""`migrator new`: a revision file with a timestamp id on top of the single head, written from the project's
script.py.mako by Alembic, its message kept text (it can never end the docstring and become code).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command

from migrator import alembic_internals as internals
from migrator.errors import ConfigError, RevisionError
from migrator.logs import get_logger
from migrator.repos import Repo

TIMESTAMP = "%Y%m%d%H%M%S"


def new(repo: Repo, message: str) -> Path:
    """Write a revision file with a timestamp id (YYYYMMDDHHMMSS) on top of the single head."""
    message = " ".join(message.split())  # one line: the template may put it in a comment as well as a docstring
    if not message:
        raise ConfigError("new needs a message describing the change, e.g. migrator new \"add users.age\"")
    if not message.isprintable():
        raise ConfigError(f"new: the message must be printable text, not {message!r}")
    config = internals.alembic_config(repo)
    script = internals.load_script(config)
    current_heads = script.get_heads()
    if len(current_heads) > 1:
        raise RevisionError(f"the migrations have several heads ({', '.join(sorted(current_heads))}): merge them "
                            "first (alembic merge heads), then add the new revision")
    # Ids sort in creation order, as Ecto's do: a clock behind the newest existing id must not sort before it.
    stamps = [s.revision for s in script.walk_revisions() if len(s.revision) == 14 and s.revision.isdigit()]
    when = datetime.now(UTC).replace(microsecond=0)
    if stamps:
        newest = datetime.strptime(max(stamps), TIMESTAMP).replace(tzinfo=UTC)
        when = max(when, newest + timedelta(seconds=1))
    rev_id = when.strftime(TIMESTAMP)
    with internals.revision_errors():
        try:
            created = command.revision(config, message=source_text(message), rev_id=rev_id)
        except OSError as exc:
            raise ConfigError(f"cannot write {exc.filename or script.versions}: {exc.strerror or exc}") from None
    path = Path(created.path)  # type: ignore[union-attr]
    get_logger().info(f"Created {path} ({rev_id}, on top of {', '.join(current_heads) or 'base'})",
                      revision=rev_id, path=str(path))
    return path


def source_text(message: str) -> str:
    """`message` escaped for the inside of a Python string literal (the template's docstring): it reads back
    as `message` and cannot end the literal, so a message never becomes code. The file name's slug is made
    of the message's words, which escaping does not change."""
    return message.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
