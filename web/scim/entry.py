"""The ASGI entry of the SCIM endpoints: routing by scim/routes.py, every error answered as SCIM,
and each request's timing, access-log line, metrics and provisioning record."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from scim.errors import ScimError
from scim.routes import ROUTES, ScimRoute
from scim.schemas import GROUP_TYPE, USER_TYPE
from settings import Settings
from storage import ResourceStore
from web.access_log import finish_request, scim_route
from web.faults import CLOSED_UNANSWERED, Faults, closer, fault_error
from web.metrics import Metrics
from web.observe import MAX_LOGGED_BODY, Listener, build_record
from web.scim.bulk import BulkEndpoint
from web.scim.error_responses import detached, error_response, internal_error, routing_error
from web.scim.handlers import ScimHandlers
from web.scim.request import ScimRequest
from web.scim.responses import StreamedResponse

Handler = Callable[[ScimRequest], Awaitable[Response]]
log = logging.getLogger("scimlet")
RESOURCE_TYPES = {"User": USER_TYPE, "Group": GROUP_TYPE}


# What a streamed answer keeps for its provisioning record: logged_response_body's bytes, and one
# more to tell that the answer went on.
LOGGED_HEAD_BYTES = MAX_LOGGED_BODY * 4 + 1


async def client_gone(receive: Receive) -> None:
    """Returns once the client has disconnected (uvicorn's receive says so once the request's body is read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class ScimApi:
    """The ASGI app app.py hands every request under /v1/scim/ to."""

    def __init__(
        self,
        store: ResourceStore,
        settings: Settings,
        metrics: Metrics,
        listeners: list[Listener],
        faults: Faults | None = None,
        *,
        cursor_key: Callable[[], Awaitable[str]],
    ) -> None:
        self.metrics = metrics
        self.listeners = listeners  # each gets every provisioning log record
        self.handlers = ScimHandlers(store, settings, cursor_key)
        self.limits = self.handlers.limits
        self.faults = faults
        self.bulk = BulkEndpoint(self.handlers, self.route, self.record)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request under /v1/scim/, then count, log and record it.

        The hottest path of the server, so it is one plain ASGI call: routing by path segments (one
        dict lookup instead of trying a dozen route patterns), every error answered as SCIM, and the
        request's metrics, log line and provisioning record taken here rather than by middleware
        wrapping send and receive."""
        started = time.perf_counter()
        request = ScimRequest(scope, receive)
        method, path = request.method, scope["path"]
        headers: Mapping[str, str] | None = None
        try:
            handler = self.route(request)
            if self.faults is not None and self.faults.active and await self.inject(request):
                # Closed unanswered: recorded as 444, nginx's "no response" (a failure).
                self.finish(request, CLOSED_UNANSWERED, b"", time.perf_counter() - started)
                return
            response = await handler(request)
        except ScimError as exc:
            request.error = detached(exc)
        except HTTPException as exc:
            request.error, headers = routing_error(method, path, exc), exc.headers
        except Exception as exc:
            request.error = internal_error(method, path, exc)
        if request.error is not None:
            if request.body_unread:
                # The protocol ends such a connection after this answer (web/http_protocol.py): say so.
                headers = {**(headers or {}), "Connection": "close"}
            response = error_response(request.error, headers)
        sent: bytes | bytearray | memoryview = response.body  # what the provisioning record keeps the start of
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
            if isinstance(response, StreamedResponse):
                sent = bytearray()
                await self.send_parts(request, response, send, sent)
            else:
                await send({"type": "http.response.body", "body": response.body})
        finally:
            self.finish(request, response.status_code, sent, time.perf_counter() - started)

    def finish(self, request: ScimRequest, status: int, sent: bytes | bytearray | memoryview, seconds: float) -> None:
        """Count and log the answered request, and hand its provisioning record to every listener.
        A Bulk request that ran operations is recorded as them (BulkEndpoint records each)."""
        finish_request(
            self.metrics, request.scope, scim_route(request.route), status, seconds, request.path_params.get("idp")
        )
        route = request.route
        if route is None or route.handler != "bulk" or request.bulk_request is None or request.error is not None:
            self.record(request, status, sent, seconds)

    def record(self, request: ScimRequest, status: int, sent: bytes | bytearray | memoryview, seconds: float) -> None:
        """Hand the request's provisioning record to every listener (the log, the operation metrics)."""
        record = build_record(request, status, sent, seconds * 1000)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                log.exception("a provisioning log listener failed")

    async def inject(self, request: ScimRequest) -> bool:
        """Apply the IdP's fault rule whose turn this request is, if any (web/faults.py), after the
        request is signed in (a bad token still gets its 401) and before its handler runs: an
        error is raised as the answer (the write does not happen), a delay is slept, and a close
        ends the connection unanswered (True)."""
        assert self.faults is not None
        idp_id, route = request.path_params.get("idp"), request.route
        if route is None or idp_id not in self.faults.active:
            return False
        self.handlers.auth.authenticate(request)
        rule = self.faults.pick(idp_id, request.method, route)
        if rule is None:
            return False
        request.injected = rule.kind
        if rule.kind == "delay":
            await asyncio.sleep((rule.delay_ms or 0) / 1000)
            return False
        close = closer(request.scope) if rule.kind == "close" else None
        if close is None:
            raise fault_error(rule)
        close()
        request.log_detail = f"connection closed without an answer: injected by fault rule {rule.id}"
        return True

    async def send_parts(self, request: ScimRequest, response: StreamedResponse, send: Send, head: bytearray) -> None:
        """Send a streamed answer's body part by part, keeping in `head` only what the provisioning
        record keeps of it; stop reading it as soon as the client is gone, and close it in any case.

        A part that fails cannot change the status line already sent: the answer is cut off (its
        connection ends without the body's end, which the client sees) and the record says why."""
        gone = asyncio.ensure_future(client_gone(request.receive))
        try:
            async for part in response.parts:
                if gone.done():
                    return
                if len(head) < LOGGED_HEAD_BYTES:
                    head += part[: LOGGED_HEAD_BYTES - len(head)]
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except ScimError as exc:
            log.warning("%s %s: answer cut off after its status line: %s", request.method, request.scope["path"], exc)
            request.error = detached(exc)
        except Exception as exc:
            request.error = internal_error(request.method, request.scope["path"], exc)
        finally:
            gone.cancel()
            await response.close()

    @functools.cached_property
    def routes(self) -> dict[str, list[tuple[Route, ScimRoute, Handler]]]:
        """The route table bound to the handlers: Starlette routes by the segment after the IdP ID, so
        a path is tried against its own endpoint's two or three routes, not the whole table."""
        by_endpoint: dict[str, list[tuple[Route, ScimRoute, Handler]]] = {}
        for spec in ROUTES:
            # The handlers' methods; /Bulk's handler runs the others, so it lives here (self.bulk).
            handler = getattr(self.handlers, spec.handler, None) or getattr(self, spec.handler)
            if spec.resource is not None:
                handler = functools.partial(handler, rtype=RESOURCE_TYPES[spec.resource])
            route = Route(spec.template, handler, methods=spec.methods)
            by_endpoint.setdefault(spec.endpoint, []).append((route, spec, handler))
        return by_endpoint

    def route(self, request: ScimRequest) -> Handler:
        """The handler of the request's path; sets the request's route and path parameters.

        The methods checked are the table's own: a Starlette route would also let HEAD through."""
        segments = request.segments
        scope = request.scope
        if scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/")}
        for route, spec, handler in self.routes.get(segments[1] if len(segments) > 1 else "", ()):
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            request.route, request.path_params = spec, child["path_params"]
            if request.method not in spec.methods:
                raise HTTPException(405, headers={"Allow": ", ".join(spec.methods)})
            return handler
        raise HTTPException(404)
