"""The access log and the request metrics: one log line and one metrics observation per HTTP request,
for every route (pure ASGI middleware outside SCIM; the SCIM entry calls finish_request itself).

Request lines carry method, path, route, status, duration, IdP and client address; never a header
or a body, so no token or password can reach the log. web/log_setup.py writes them out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scim.routes import ScimRoute
from web import log_setup
from web.metrics import Metrics

log = logging.getLogger(log_setup.ACCESS_LOGGER)
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s), whatever their path
# Probes come every few seconds from a supervisor or Prometheus: logged only at debug level so
# that they do not bury the provisioning traffic.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
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
            # A route of an app mounted lazily (the admin console and API, web/admin/__init__.py) was not
            # there to walk: its mount put its own path in root_path on the way in.
            template = templates[id(route)] = scope.get("root_path", "") + getattr(route, "path", UNMATCHED)
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
    handler = log_setup.handler
    if handler is not None and handler.owns_output():
        handler.write_request_line(level, message, fields)
        return
    # makeRecord + handle rather than log.log: the same record minus findCaller's stack walk, which
    # costs about as much as formatting the line, and the caller is always this function anyway.
    log.handle(log.makeRecord(log.name, level, __file__, 0, "%s", (message,), None, extra={"request": fields}))
