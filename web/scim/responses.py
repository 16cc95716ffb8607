"""SCIM answers: a JSON body as application/scim+json."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import orjson
from starlette.responses import Response

SCIM_JSON = "application/scim+json"
SCIM_JSON_BYTES = SCIM_JSON.encode()
BIG_BODY_BYTES = 1_048_576  # an encoded answer past this is not copied again into a ScimResponse


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


def encoded_response(body: bytes, headers: dict[str, str]) -> Response:
    """An encoded resource as the answer. A big one (a group's whole member list) goes to Starlette's
    Response as it is: ScimResponse would copy it once more, through orjson, on the event loop."""
    if len(body) < BIG_BODY_BYTES:
        return ScimResponse(orjson.Fragment(body), headers=headers)
    return Response(body, headers=headers, media_type=SCIM_JSON)


class StreamedResponse(Response):
    """An answer whose body is sent a part at a time, as `parts` gives them, and never held whole:
    ScimApi (web/scim/entry.py) sends it, then calls `close` (also when the client left before the
    end, or a part failed). With Content-Length when the whole size is known before the first part
    (`length`), else chunked."""

    media_type = SCIM_JSON

    def __init__(
        self,
        parts: AsyncIterator[bytes],
        headers: dict[str, str],
        *,
        length: int | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status_code = 200
        self.body = b""  # the parts are the body
        self.background = None
        self.parts = parts
        self.closer = close
        self.raw_headers = [(b"content-type", SCIM_JSON_BYTES)]
        if length is not None:
            self.raw_headers.append((b"content-length", str(length).encode()))
        self.raw_headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]

    async def close(self) -> None:
        if self.closer is not None:
            await self.closer()


def parts_response(parts: list[bytes]) -> Response:
    """A big answer made of encoded parts (a ListResponse around its resources' JSON), sent part by
    part with its Content-Length, each part let go once it is sent."""
    return StreamedResponse(_taken(parts), {}, length=sum(len(part) for part in parts))


async def _taken(parts: list[bytes]) -> AsyncIterator[bytes]:
    """The parts in order, each dropped from the list as it is given."""
    parts.reverse()
    while parts:
        yield parts.pop()


def chained(first: Iterable[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first`'s parts, then `rest`'s."""

    async def parts() -> AsyncIterator[bytes]:
        for part in first:
            yield part
        async for part in rest:
            yield part

    return parts()
