"""One log line and one metrics observation per HTTP request, for every route (pure ASGI).

Also the process's logging set-up: plain text for a terminal or the journal, or one JSON object
per line for log shippers. Request lines carry method, path, route, status, duration, IdP and
client address; never a header or a body, so no token or password can reach the log.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

import orjson
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scim.routes import ScimRoute
from storage.common import format_timestamp
from web.metrics import Metrics

log = logging.getLogger("scimlet.access")
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s), whatever their path
# Probes come every few seconds from a supervisor or Prometheus: logged only at debug level so
# that they do not bury the provisioning traffic.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
MAX_LOGGED_PATH = 256  # characters of a request line's path, IdP ID and client; "..." marks a cut path


class RequestMiddleware:
    """Times each request outside SCIM, counts it by route template, method and status, and logs it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.templates: dict[int, str] | None = None  # id(route) -> its full path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.templates is None:
            # Built on the first request, when every route is in place, and before the call: a mounted
            # Starlette app replaces scope["app"] with itself on the way in.
            self.templates = dict(_templates(getattr(scope.get("app"), "routes", ()), ""))
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            finish_request(
                self.metrics,
                scope,
                self.route_of(scope),
                status,
                time.perf_counter() - started,
                scope.get("path_params", {}).get("idp"),
            )

    def route_of(self, scope: Scope) -> str:
        """The template of the route that answered: a bounded label."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        templates = self.templates
        assert templates is not None, "built by the first request"
        template = templates.get(id(route))
        if template is None:
            template = templates[id(route)] = getattr(route, "path", UNMATCHED)
        return template


def finish_request(metrics: Metrics, scope: Scope, route: str, status: int, seconds: float, idp: str | None) -> None:
    """Count, time and log one answered request (SCIM requests come here from the SCIM entry)."""
    metrics.observe_request(route, scope["method"], status, seconds)
    level = logging.DEBUG if route in PROBE_PATHS else logging.INFO
    if log.isEnabledFor(level):
        _log_request(level, scope, route, status, seconds, idp)


def scim_route(route: ScimRoute | None) -> str:
    """The label of a SCIM request: the template of the route its path matched, or "unmatched"."""
    return route.template if route is not None else UNMATCHED


def _templates(routes: Iterable[BaseRoute], prefix: str) -> Iterable[tuple[int, str]]:
    """(id(route), full path template) for every route, mounted ones under their mount's path.

    Starlette leaves the innermost matched route in scope["route"], whose own path lacks the mount
    prefix. A mount whose inner routes all miss stays in scope["route"] itself: "{prefix}/{path}".
    """
    for route in routes:
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount):
            yield id(route), f"{path}/{{path}}"
            yield from _templates(route.routes, path)
        else:
            yield id(route), path


def _log_request(level: int, scope: Scope, route: str, status: int, seconds: float, idp: str | None) -> None:
    # raw_path is the request target as sent (percent-encoded): it cannot smuggle a line break
    # into a text log, which the decoded path could.
    # Both clipped: a client chooses them, and a line per request must not grow with what it sends.
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    if len(path) > MAX_LOGGED_PATH:
        path = path[:MAX_LOGGED_PATH] + "..."
    if idp is not None and len(idp) > MAX_LOGGED_PATH:
        idp = idp[:MAX_LOGGED_PATH] + "..."
    client = scope.get("client")
    address = client[0][:MAX_LOGGED_PATH] if client else None  # from X-Forwarded-For behind a proxy
    fields = {
        "method": scope["method"],
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "idp": idp,
        "client": address,
    }
    message = f"{fields['method']} {path} {status} {seconds * 1000:.1f}ms"
    if _handler is not None and _handler.owns_output():
        _handler.write_request_line(level, message, fields)
        return
    # makeRecord + handle rather than log.log: the same record minus findCaller's stack walk, which
    # costs about as much as formatting the line, and the caller is always this function anyway.
    log.handle(log.makeRecord(log.name, level, __file__, 0, "%s", (message,), None, extra={"request": fields}))


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
            line = self.formatter.line(time.time(), name, log.name, message, fields, None)
        else:
            line = TEXT_FORMAT % {"levelname": name, "name": log.name, "message": message}
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


_handler: LogHandler | None = None


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
    global _handler
    handler = _handler = LogHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
