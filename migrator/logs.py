"""Logging, configured once: structlog for our events, the stdlib (Alembic, SQLAlchemy) routed through it.

Console output follows Ecto's migrator (`19:37:51.517 [info] == Running ...`): the event text carries the
whole message, so keyword fields only show in JSON. Both renderers end every chain, and every chain redacts.
Logs go to stderr; command results (status, sql) go to stdout, so they can be piped.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from migrator.redaction import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Alembic and SQLAlchemy narrate every step at INFO; our own lines already say it in Ecto's words.
LIBRARY_LOGGERS = ("alembic", "sqlalchemy")


def add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("timestamp", time.time())
    return event_dict


def redact_values(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask secrets in every string field, whatever library produced it."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


@functools.lru_cache(maxsize=1)  # lines come many to a second while migrations run: format each second once
def _clock(second: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(second))


def render_console(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """`HH:MM:SS.mmm [level] event`, local time, as Ecto's Logger prints it."""
    when = event_dict.pop("timestamp")
    line = f"{_clock(int(when))}.{int(when % 1 * 1000):03d} [{event_dict.get('level', 'info')}] {event_dict['event']}"
    exception = event_dict.get("exception")
    return f"{line}\n{exception}" if exception else line


def jsonable(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    when = datetime.fromtimestamp(event_dict["timestamp"], UTC)
    event_dict["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def processors(log_format: str) -> list[Processor]:
    """The whole chain for one format: level, time, redaction, rendering."""
    # contextvars: the tenant a line is about (migrator.tenant_runs binds it), a field of every JSON line.
    common: list[Processor] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                               add_timestamp, structlog.processors.format_exc_info, redact_values]
    if log_format == "json":
        return [*common, jsonable, structlog.processors.JSONRenderer()]
    return [*common, render_console]


class _StdlibHandler(logging.Handler):
    """Feeds stdlib records (Alembic, SQLAlchemy, warnings) through our own processor chain."""

    def __init__(self, chain: list[Processor], stream: TextIO) -> None:
        super().__init__()
        self.chain = chain
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        event: Any = {"event": record.getMessage(), "logger": record.name, "level": record.levelname.lower()}
        if record.exc_info:
            event["exc_info"] = record.exc_info
        for processor in self.chain:
            event = processor(None, record.levelname.lower(), event)
        self.stream.write(event + "\n")
        self.stream.flush()


def configure(log_format: str = "console", log_level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger once for the process."""
    out = stream or sys.stderr
    chain = processors(log_format)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[log_level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [_StdlibHandler(chain, out)]
    root.setLevel(LEVELS[log_level])
    library_level = logging.INFO if log_level == "debug" else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(True)


def get_logger(**bindings: Any) -> Any:
    return structlog.get_logger("migrator", **bindings)
