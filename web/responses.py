"""SCIM requests and responses: the request as handlers read it, body parsing, application/scim+json out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope

from scim.errors import ScimError, invalid_syntax, shown
from scim.routes import SCIM_PREFIX, ScimRoute
from storage import Principal

SCIM_JSON = "application/scim+json"
SCIM_JSON_BYTES = SCIM_JSON.encode()
WWW_AUTHENTICATE = 'Bearer realm="scimlet"'
log = logging.getLogger("scimlet")


class ScimResponse(Response):
    """A JSON body as application/scim+json. Built directly rather than through Response.__init__,
    whose general header handling cost a few percent of a SCIM request."""

    media_type = SCIM_JSON

    def __init__(self, content: object, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.body = orjson.dumps(content)
        self.background = None
        self.raw_headers = [(b"content-length", str(len(self.body)).encode()), (b"content-type", SCIM_JSON_BYTES)]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
            ]


def error_response(error: ScimError, headers: Mapping[str, str] | None = None) -> ScimResponse:
    """The SCIM error body, with the headers its status calls for (RFC 6750 §3, RFC 9110 §10.2.3)."""
    headers = dict(headers or {})
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if error.status in (429, 503):
        headers.setdefault("Retry-After", str(error.retry_after))
    return ScimResponse(error.to_dict(), status_code=error.status, headers=headers)


def detached(error: ScimError) -> ScimError:
    """The error without its traceback and the exceptions chained to it, for keeping past the except
    block: their frames hold the request and its body, so a request that kept its error whole would
    sit in a reference cycle until the cyclic collector ran, which app.py makes rare."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def routing_error(method: str, path: str, exc: HTTPException) -> ScimError:
    """A routing error (unknown path, wrong method) as a SCIM error."""
    if exc.status_code == 404:
        detail = f"No such endpoint: {shown(path)}; SCIM resources are under /v1/scim/<IdP ID>/Users and /Groups"
    elif exc.status_code == 405:
        detail = f"{method} is not allowed on {shown(path)}"
    else:
        detail = str(exc.detail)
    return ScimError(exc.status_code, detail)


def internal_error(method: str, path: str, exc: BaseException) -> ScimError:
    """What the client sees of a bug; the traceback goes to the log."""
    log.error("unhandled error on %s %s", method, shown(path), exc_info=exc)
    return ScimError(500, "Internal server error; this is a bug in scimlet, please report it")


def http_error_response(method: str, path: str, exc: HTTPException) -> ScimResponse:
    return error_response(routing_error(method, path, exc), dict(exc.headers or {}))


def server_error_response(method: str, path: str, exc: BaseException) -> ScimResponse:
    return error_response(internal_error(method, path, exc))


class ScimRequest:
    """One SCIM request as the handlers read it.

    A lighter stand-in for Starlette's Request on the server's hottest path: headers and query are
    plain dicts built once, and what the provisioning log needs (the principal, the body as read,
    the resource created, the error answered) is kept here for it instead of being parsed again.
    """

    __slots__ = (
        "scope",
        "receive",
        "method",
        "segments",
        "route",
        "path_params",
        "headers",
        "query_params",
        "principal",
        "raw_body",
        "body",
        "resource_id",
        "error",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        # The path after /v1/scim/, split once for routing, the metrics label and the record.
        self.segments: list[str] = scope["path"][len(SCIM_PREFIX) :].rstrip("/").split("/")
        self.route: ScimRoute | None = None  # the route the path matched, whatever the method
        self.path_params: dict[str, str] = {}
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get.
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self.headers = headers
        query = scope.get("query_string", b"")
        self.query_params: dict[str, str] = (
            dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
        )
        self.principal: Principal | None = None
        self.raw_body = b""
        self.body: object = None  # the parsed body, when it was valid JSON
        self.resource_id: str | None = None  # the id of a resource this request created
        self.error: ScimError | None = None

    @property
    def body_unread(self) -> bool:
        """Whether the client sent, or is still sending, a body that was not read to its end."""
        headers = self.headers
        return not self.raw_body and (headers.get("content-length", "0") != "0" or "transfer-encoding" in headers)

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""


class BodyDeadlines:
    """A body that takes longer than `seconds` to arrive gets 408: a client trickling bytes must not
    hold a request (and its memory) open for ever.

    One sweep a few times a second cancels the reads past their deadline, instead of a timer per
    request: asyncio.timeout's set-up and tear-down cost about a tenth of a small request's CPU,
    and a body timeout needs no finer grain than the sweep's.
    """

    SWEEP_SECONDS = 0.25

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reading: dict[asyncio.Task, float] = {}  # task -> deadline (loop time)
        self.expired: set[asyncio.Task] = set()
        self.sweeper: asyncio.Task | None = None

    async def read(self, receive: Receive, max_bytes: int) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        if self.sweeper is None or self.sweeper.get_loop() is not loop:
            self.sweeper = loop.create_task(self._sweep())
        self.reading[task] = loop.time() + self.seconds
        try:
            return await _read_body(receive, max_bytes)
        except asyncio.CancelledError:
            if task not in self.expired:
                raise
            self.expired.discard(task)
            task.uncancel()
            raise ScimError(408, f"The request body did not arrive within {self.seconds:g} seconds") from None
        finally:
            self.reading.pop(task, None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            now = loop.time()
            for task, deadline in list(self.reading.items()):
                if deadline <= now:
                    del self.reading[task]
                    self.expired.add(task)
                    task.cancel()


async def read_json(request: ScimRequest, max_bytes: int, deadlines: BodyDeadlines) -> object:
    """The request body as JSON: 413 past the limit, 415 for non-JSON types, 400 invalidSyntax when
    malformed, 408 when it arrives too slowly."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and not (media.endswith("/json") or media.endswith("+json")):
        raise ScimError(415, f"Send the body as application/scim+json or application/json, not {shown(media)}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ScimError(413, f"The request body is larger than the limit of {max_bytes} bytes")
    raw = request.raw_body = await deadlines.read(request.receive, max_bytes)
    if not raw.strip():
        raise invalid_syntax("The request has no body; send a JSON object")
    try:
        request.body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_syntax(f"The body is not valid JSON: {exc}") from None
    return request.body


async def _read_body(receive: Receive, max_bytes: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # Nobody will read the answer; the provisioning log will.
            raise invalid_syntax("The client closed the connection before the whole body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise ScimError(413, f"The request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_object(request: ScimRequest, max_bytes: int, deadlines: BodyDeadlines) -> dict:
    body = await read_json(request, max_bytes, deadlines)
    if not isinstance(body, dict):
        raise invalid_syntax(f"The body must be a JSON object, not {type(body).__name__}")
    return body
