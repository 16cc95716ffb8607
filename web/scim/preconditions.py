"""ETag preconditions (RFC 7644 §3.14): If-Match on writes."""

from __future__ import annotations

from collections.abc import Callable

from scim.errors import ScimError
from scim.resources import etag, etag_matches, parse_etags
from storage import Row
from web.scim.request import ScimRequest


def precondition(request: ScimRequest) -> Callable[[Row], None]:
    """The If-Match check of a write, for the store to run on the current row inside the write's
    transaction: 412 when the row's version is not one the client named."""
    conditional = "if-match" in request.headers
    tags = parse_etags(request.headers["if-match"]) if conditional else None

    def check(row: Row) -> None:
        if conditional and not etag_matches(tags, row.version):
            raise ScimError(
                412,
                f"The resource has changed (it is now version {etag(row.version)}); "
                "read it again and retry with the new ETag",
            )

    return check
