"""The query parameters of SCIM reads: the page a list or search asks for (RFC 7644 §3.4.2) and the
attributes it wants back (§3.4.2.5), as a storage Query and a Projection."""

from __future__ import annotations

import contextlib

from scim.errors import ScimError, invalid_value, shown
from scim.filters import parse_filter
from scim.paths import resolve_text
from scim.project import Projection, parse_projection
from scim.schemas import ResourceType
from settings import ScimSettings
from storage import Query
from web.scim.render import loads_references
from web.scim.request import ScimRequest

MAX_SAFE_INTEGER = 2**53 - 1


def page_query(rtype: ResourceType, params: dict, limits: ScimSettings) -> tuple[Query, Projection]:
    """The page asked for by a list's query string or a search's body, within the configured limits."""
    projection = parse_projection(rtype, params.get("attributes"), params.get("excludedAttributes"))
    text = params.get("filter")
    if text is not None and not isinstance(text, str):
        raise ScimError(400, "filter must be a string", "invalidFilter")
    where = (
        parse_filter(text, rtype, max_length=limits.max_filter_length, max_depth=limits.max_filter_depth)
        if text is not None
        else None
    )
    sort_by = params.get("sortBy")
    sort_ref = None
    if sort_by is not None:
        if not isinstance(sort_by, str):
            raise invalid_value("sortBy must be an attribute name")
        sort_ref = resolve_text(rtype, sort_by, error=invalid_value)
    order = params.get("sortOrder") or "ascending"
    if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
        raise invalid_value(f"sortOrder must be ascending or descending, not {shown(order)}")
    start = integer(params.get("startIndex"), "startIndex", 1)
    count = integer(params.get("count"), "count", limits.default_page_size)
    query = Query(
        where=where,
        sort_by=sort_ref,
        descending=order.lower() == "descending",
        start_index=max(start, 1),  # RFC 7644 §3.4.2.4: values below 1 are read as 1
        count=min(max(count, 0), limits.max_page_size),
        members=loads_references(rtype, projection),
        max_bytes=limits.max_page_bytes,
    )
    return query, projection


def projection(request: ScimRequest, rtype: ResourceType) -> Projection:
    """The attributes the query string asks for in the answer to a single resource."""
    return parse_projection(
        rtype, request.query_params.get("attributes"), request.query_params.get("excludedAttributes")
    )


def integer(value: object, name: str, default: int) -> int:
    """A whole-number parameter, from a query string (text) or a search body (JSON number)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid_value(f"{name} must be a whole number")
    number = value if isinstance(value, int) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value)
    if number is None:
        raise invalid_value(f"{name} must be a whole number, not {shown(value)}")
    # Beyond any real page, and kept within what JSON clients (and SQLite) read exactly: it is echoed.
    return max(-MAX_SAFE_INTEGER, min(number, MAX_SAFE_INTEGER))
