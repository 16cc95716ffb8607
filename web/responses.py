"""SCIM responses (application/scim+json, orjson) and request-body parsing."""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from scim.errors import ScimError, invalid_syntax

SCIM_JSON = "application/scim+json"
WWW_AUTHENTICATE = 'Bearer realm="scimlet"'
log = logging.getLogger("scimlet")


class ScimResponse(Response):
    media_type = SCIM_JSON

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def error_response(error: ScimError, headers: dict[str, str] | None = None) -> ScimResponse:
    """The SCIM error body, with the headers its status calls for (RFC 6750 §3, RFC 9110 §10.2.3)."""
    headers = dict(headers or {})
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if error.status in (429, 503):
        headers.setdefault("Retry-After", str(error.retry_after))
    return ScimResponse(error.to_dict(), status_code=error.status, headers=headers)


def http_error_response(method: str, path: str, exc: HTTPException) -> ScimResponse:
    """Routing errors (unknown path, wrong method) as SCIM error bodies."""
    if exc.status_code == 404:
        detail = f"No such endpoint: {path}; SCIM resources are under /v1/scim/<IdP ID>/Users and /Groups"
    elif exc.status_code == 405:
        detail = f"{method} is not allowed on {path}"
    else:
        detail = str(exc.detail)
    return error_response(ScimError(exc.status_code, detail), dict(exc.headers or {}))


def server_error_response(method: str, path: str, exc: BaseException) -> ScimResponse:
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(ScimError(500, "Internal server error; this is a bug in scimlet, please report it"))


async def read_json(request: Request, max_bytes: int, timeout: float | None = None) -> object:
    """The request body as JSON: 413 past the limit, 415 for non-JSON types, 400 invalidSyntax when malformed.

    A body that takes longer than `timeout` seconds to arrive gets 408: a client trickling bytes
    must not hold a request (and its memory) open for ever.
    """
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and not (media.endswith("/json") or media.endswith("+json")):
        raise ScimError(415, f"Send the body as application/scim+json or application/json, not {media}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ScimError(413, f"The request body is larger than the limit of {max_bytes} bytes")
    try:
        async with asyncio.timeout(timeout):
            raw = await _read_body(request, max_bytes)
    except TimeoutError:
        raise ScimError(408, f"The request body did not arrive within {timeout:g} seconds") from None
    if not raw.strip():
        raise invalid_syntax("The request has no body; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_syntax(f"The body is not valid JSON: {exc}") from None


async def _read_body(request: Request, max_bytes: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ScimError(413, f"The request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request, max_bytes: int, timeout: float | None = None) -> dict:
    body = await read_json(request, max_bytes, timeout)
    if not isinstance(body, dict):
        raise invalid_syntax(f"The body must be a JSON object, not {type(body).__name__}")
    return body
