"""Request bodies: read within a deadline (the sweeper that enforces it) and parsed as JSON."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Receive

from scim.errors import ScimError, invalid_syntax, shown
from web.scim.request import ScimRequest


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
