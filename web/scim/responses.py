"""SCIM answers: a JSON body as application/scim+json."""

from __future__ import annotations

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
