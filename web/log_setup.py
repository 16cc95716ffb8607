"""The process's log output: every logger (uvicorn's too) to stderr, as plain text for a terminal or
the journal, or one JSON object per line for log shippers; request lines written without `logging`."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import TextIO

import orjson

from storage.common import format_timestamp

ACCESS_LOGGER = "scimlet.access"  # the logger of request lines (web/access_log.py)
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class LogHandler(logging.StreamHandler):
    """The process's log handler (stderr), which also writes request lines without the logging module.

    A request line written here is the line its LogRecord would give, for about a third of the
    cost: going through logging cost ~45 us of server CPU per SCIM request (~10%; both variants
    pinned to one core at once). Used only while this handler is the root logger's only one, so
    that anything else listening (pytest's caplog, a handler added at run time) gets real records.

    Request lines are written out together at the end of the event loop's step, one write for all
    the requests answered in it; any other record, and flush, writes them out first, so the output
    keeps its order and nothing is left behind at exit.
    """

    lock: threading.RLock  # made by Handler.__init__ (createLock); typeshed allows None for Handler itself

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] = []

    def owns_output(self) -> bool:
        handlers = logging.root.handlers
        return len(handlers) == 1 and handlers[0] is self

    def write_request_line(self, level: int, message: str, fields: dict) -> None:
        name = logging.getLevelName(level)
        if isinstance(self.formatter, JsonFormatter):
            line = self.formatter.line(time.time(), name, ACCESS_LOGGER, message, fields, None)
        else:
            line = TEXT_FORMAT % {"levelname": name, "name": ACCESS_LOGGER, "message": message}
        with self.lock:
            self.pending.append(line)
            first = len(self.pending) == 1
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.write_pending)
            except RuntimeError:  # no event loop to wait for: write it now
                self.write_pending()

    def write_pending(self) -> None:
        with self.lock:
            if self.pending:
                self.stream.write("\n".join(self.pending) + "\n")
                self.pending.clear()
                self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self.write_pending()
        super().emit(record)

    def flush(self) -> None:
        self.write_pending()
        super().flush()


handler: LogHandler | None = None  # the handler configure_logging installed


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        exception = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            request if isinstance(request, dict) else None,
            exception,
        )

    def line(
        self, created: float, level: str, logger: str, message: str, request: dict | None, exception: str | None
    ) -> str:
        entry: dict[str, object] = {
            "time": format_timestamp(created),
            "level": level.lower(),
            "logger": logger,
            "message": message,
        }
        if request is not None:
            entry.update(request)
        if exception:
            entry["exception"] = exception
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger (uvicorn's too) to stderr in the configured format and level."""
    global handler
    installed = handler = LogHandler(sys.stderr)
    installed.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(installed)
    root.setLevel(level.upper())
