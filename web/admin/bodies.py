"""Every request body the console and the admin API read: bounded while it streams, and due within
server.body_timeout, like a SCIM body.

A size check against Content-Length alone lets a chunked body through whole, and a form parsed
straight from the stream has no deadline: each body is read here, to at most MAX_BODY_BYTES, before
anything parses it.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.types import Message

from scim.errors import ScimError
from web.request_body import BodyDeadlines

MAX_BODY_BYTES = 64 * 1024  # a console form or an admin API call is a few hundred bytes
MAX_FORM_FIELDS = 50


class AdminBodies:
    """413 past MAX_BODY_BYTES (declared or streamed), 408 past the deadline, 400 for a client that
    went away before its body arrived (ScimError: both the console and the API answer those)."""

    def __init__(self, body_timeout: float) -> None:
        self.deadlines = BodyDeadlines(body_timeout)

    async def read(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ScimError(413, f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        return await self.deadlines.read(request.receive, MAX_BODY_BYTES)

    async def form(self, request: Request) -> dict[str, str]:
        """The form's text fields, parsed from the body once it is read whole."""
        raw = await self.read(request)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return {"type": "http.disconnect"}
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FORM_FIELDS)
        return {key: value for key, value in form.items() if isinstance(value, str)}

    async def json(self, request: Request) -> object:
        """The body as JSON, None when empty; orjson.JSONDecodeError when malformed."""
        raw = await self.read(request)
        return orjson.loads(raw) if raw.strip() else None
