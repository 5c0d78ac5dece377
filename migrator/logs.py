"""Logging, configured once: structlog for our events, the stdlib (Alembic, SQLAlchemy, psycopg) routed through
the same processors by structlog's ProcessorFormatter.

Console output follows Ecto's migrator (`19:37:51.517 [info] == Running ...`): the event text carries the
whole message, so keyword fields only show in JSON. Both renderers end every chain, and every chain redacts.
Logs go to stderr; command results (status, sql) go to stdout, so they can be piped.

Logging never changes what a run does: a reader of stderr that went away (`migrator migrate 2>&1 | head -3`)
ends the log there, quietly, and the run goes on. A reader that stopped reading blocks the line being written,
as any pipe does; the bound after a signal (migrator.shutdown) does not wait for it: its own last line goes
through `emergency`, which takes no lock and gives up instead of blocking.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from migrator.redaction import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Alembic and SQLAlchemy narrate every step at INFO; our own lines already say it in Ecto's words.
LIBRARY_LOGGERS = ("alembic", "sqlalchemy")
EMERGENCY_WAIT = 0.2  # how long the last-resort line may take to be written before the process ends anyway


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
    return event_dict


def _prepare(log_format: str) -> list[Processor]:
    """Level, time, redaction: what every event goes through before it is rendered."""
    # contextvars: the tenant a line is about (migrator.tenant_runs binds it), a field of every JSON line.
    steps: list[Processor] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                              add_timestamp, structlog.processors.format_exc_info, redact_values]
    return [*steps, jsonable] if log_format == "json" else steps


def _renderer(log_format: str) -> Processor:
    return structlog.processors.JSONRenderer() if log_format == "json" else render_console


def processors(log_format: str) -> list[Processor]:
    """The whole chain for one format: level, time, redaction, rendering."""
    return [*_prepare(log_format), _renderer(log_format)]


class Stderr:
    """Where log lines go: one line per write, flushed at once, never an exception.

    A reader that went away (EPIPE) ends the log: later lines are dropped, and the file descriptor is pointed at
    /dev/null so that nothing else (a flush at exit, a library's warning) trips over the closed pipe again.
    Also structlog's logger (msg, info, ...), so that our events and the stdlib's share it.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()
            except (OSError, ValueError):  # ValueError: the stream was closed
                self.gone = True

    def flush(self) -> None:  # logging.StreamHandler calls it; write() flushed already
        return

    def msg(self, message: str) -> None:
        self.write(message + "\n")

    debug = info = warning = warn = error = critical = exception = log = msg

    def _reader_gone(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            return


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stdlib's records into the same stream; a failed write is never reported on stderr itself."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (the stdlib's name)
        return


_configured: dict[str, Any] = {}


def configure(log_format: str = "console", log_level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger once for the process."""
    sink = Stderr(stream or sys.stderr)
    structlog.configure(
        processors=processors(log_format),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[log_level]),
        logger_factory=lambda *_: sink,
        cache_logger_on_first_use=True,
    )
    handler = _Handler(sink)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_prepare(log_format)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(log_format)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[log_level])
    library_level = logging.INFO if log_level == "debug" else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(True)
    _configured.update(format=log_format, stream=sink.stream)


def get_logger(**bindings: Any) -> Any:
    return structlog.get_logger("migrator", **bindings)


def render(level: str, message: str, log_format: str | None = None) -> str:
    """One line as the configured renderer writes it, made without structlog (no lock taken)."""
    fmt = log_format or _configured.get("format", "console")
    event: Any = {"event": message}
    chain: Sequence[Processor] = processors(fmt)
    for processor in chain:
        event = processor(None, level, event)
    return str(event)


def emergency(level: str, message: str) -> None:
    """Write one line to stderr as a last resort: never takes a lock that a blocked writer holds, and gives up
    after EMERGENCY_WAIT seconds instead of blocking (the caller is about to end the process)."""
    stream: TextIO = _configured.get("stream") or sys.stderr
    try:
        data = (render(level, message) + "\n").encode("utf-8", "backslashreplace")
        fd = stream.fileno()
    except Exception:
        return
    writer = threading.Thread(target=_write_all, args=(fd, data), name="migrator-last-line", daemon=True)
    writer.start()
    writer.join(EMERGENCY_WAIT)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        return
