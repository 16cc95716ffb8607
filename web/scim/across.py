"""Search across resource types (RFC 7644 §3.4.3 `POST /.search`, §3.4.2 `GET` at the tenant root):
users and groups in one ListResponse, each type's part queried in SQL as a search of that type is.

Without sortBy the answer is every matching user, then every matching group, and a page is a window
on that sequence: each type is asked only for its part of the window. With sortBy each type gives
its first startIndex + count - 1 resources in that order (at most MAX_SORTED_ACROSS), merged here by
the keys the backends sort on: absent values last, text without ASCII letter case unless the
attribute is caseExact, numbers before text, ties in each type's creation order, users first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scim.errors import ScimError, invalid_value, shown
from scim.filters import Node, fold, parse_filter_across
from scim.paths import AttrRef, resolve_text
from scim.project import Projection, parse_projection
from scim.schemas import ResourceType
from settings import ScimSettings
from storage import Query, ResourceStore, Row
from web.scim.params import integer
from web.scim.render import Renderer, loads_references
from web.scim.request import ScimRequest

# A sorted search across types reads this many resources of each type at most (startIndex + count - 1).
MAX_SORTED_ACROSS = 2000


@dataclass(frozen=True)
class TypeSearch:
    """One resource type's part of a search across types."""

    rtype: ResourceType
    where: Node | None  # None: every resource of the type
    sort_by: AttrRef | None  # None: the type lacks the sortBy attribute (or none was asked): creation order
    projection: Projection


@dataclass(frozen=True)
class AcrossQuery:
    searches: list[TypeSearch]  # the types whose resources may match, in answer order
    sorted: bool
    descending: bool
    start_index: int
    count: int


def across_query(types: list[ResourceType], params: dict, limits: ScimSettings) -> AcrossQuery:
    """The search a query string or a search body asks for, over `types`; 400 as a search of one type."""
    if params.get("cursor") is not None:
        raise invalid_value("A search across resource types pages by startIndex; cursors walk /Users or /Groups")
    text = params.get("filter")
    if text is not None and not isinstance(text, str):
        raise ScimError(400, "filter must be a string", "invalidFilter")
    filters: dict[str, Node | bool] = (
        parse_filter_across(text, types, max_length=limits.max_filter_length, max_depth=limits.max_filter_depth)
        if text is not None
        else dict.fromkeys((rtype.name for rtype in types), True)
    )
    sort_by = params.get("sortBy")
    sort_refs: dict[str, AttrRef | None] = dict.fromkeys((rtype.name for rtype in types), None)
    if sort_by is not None:
        if not isinstance(sort_by, str):
            raise invalid_value("sortBy must be an attribute name")
        for rtype in types:
            try:
                sort_refs[rtype.name] = resolve_text(rtype, sort_by, error=invalid_value)
            except ScimError:
                continue  # not this type's: its resources sort as if the value were absent
        if not any(sort_refs.values()):
            names = ", ".join(rtype.name for rtype in types)
            raise invalid_value(f"sortBy {shown(sort_by)} is an attribute of none of the types searched ({names})")
    order = params.get("sortOrder") or "ascending"
    if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
        raise invalid_value(f"sortOrder must be ascending or descending, not {shown(order)}")
    start = max(integer(params.get("startIndex"), "startIndex", 1), 1)
    count = min(max(integer(params.get("count"), "count", limits.default_page_size), 0), limits.max_page_size)
    if sort_by is not None and count and start + count - 1 > MAX_SORTED_ACROSS:
        raise ScimError(
            400,
            f"A search across resource types sorted by {shown(sort_by)} reaches its first {MAX_SORTED_ACROSS} "
            f"results only (startIndex + count - 1 is {start + count - 1}): search /Users or /Groups to go further",
            "tooMany",
        )
    attributes, excluded = params.get("attributes"), params.get("excludedAttributes")
    searches = [
        # A filter folded to True matches every resource of the type (no condition); to False, none (not asked).
        TypeSearch(
            rtype,
            None if where is True else where,
            sort_refs[rtype.name],
            parse_projection(rtype, attributes, excluded),
        )
        for rtype in types
        if not isinstance(where := filters[rtype.name], bool) or where
    ]
    return AcrossQuery(searches, sort_by is not None, order.lower() == "descending", start, count)


async def search_across(
    store: ResourceStore, render: Renderer, request: ScimRequest, query: AcrossQuery, max_bytes: int
) -> tuple[int, list[bytes]]:
    """The total over every type and the page's resources, encoded."""
    if query.sorted and query.count:
        return await _sorted(store, render, request, query, max_bytes)
    idp_id = request.path_params["idp"]
    total = 0
    page: list[bytes] = []
    cut = False  # the page ended early (max_bytes): no later type adds to it
    for search in query.searches:
        local_start = max(1, query.start_index - total)
        wanted = 0 if cut else query.count - len(page)
        found, rows = await store.search(
            search.rtype.name,
            idp_id,
            Query(
                where=search.where,
                start_index=local_start,
                count=wanted,
                members=loads_references(search.rtype, search.projection),
                max_bytes=max(0, max_bytes - sum(map(len, page))) if max_bytes else 0,
            ),
            render.encoder(request, search.rtype, search.projection),
        )
        total += found
        page += _encoded(rows)
        cut = cut or (wanted > 0 and len(rows) < min(wanted, max(0, found - local_start + 1)))
    return total, page


async def _sorted(
    store: ResourceStore, render: Renderer, request: ScimRequest, query: AcrossQuery, max_bytes: int
) -> tuple[int, list[bytes]]:
    idp_id = request.path_params["idp"]
    prefix = query.start_index + query.count - 1
    total = 0
    keyed: list[tuple[tuple, bytes]] = []
    absent: list[bytes] = []
    for search in query.searches:
        found, rows = await store.search(
            search.rtype.name,
            idp_id,
            Query(
                where=search.where,
                sort_by=search.sort_by,
                descending=query.descending,
                count=prefix,
                members=loads_references(search.rtype, search.projection),
                max_bytes=max_bytes,
            ),
            render.encoder(request, search.rtype, search.projection),
        )
        if len(rows) < min(prefix, found):
            raise ScimError(
                400,
                f"The first {prefix} {search.rtype.name} resources in this order are larger than one answer may be "
                "(scim.max_page_bytes): ask for a smaller startIndex + count, or fewer attributes",
                "tooMany",
            )
        total += found
        value = _sort_value(search.sort_by, search.rtype)
        for row, encoded in zip(rows, _encoded(rows), strict=True):
            key = value(row)
            if key is None:
                absent.append(encoded)
            else:
                keyed.append((key, encoded))
    # Stable sorts: equal keys keep each type's own order (its creation order), users first.
    keyed.sort(key=lambda item: item[0], reverse=query.descending)
    merged = [encoded for _, encoded in keyed] + absent
    window = merged[query.start_index - 1 : prefix]
    page: list[bytes] = []
    size = 0
    for encoded in window:
        size += len(encoded)
        if page and max_bytes and size > max_bytes:
            break
        page.append(encoded)
    return total, page


def _encoded(rows: list[Row]) -> list[bytes]:
    # Row.encoded is set on every row a search(encode=...) returns.
    return [row.encoded for row in rows if row.encoded is not None]


def _sort_value(ref: AttrRef | None, rtype: ResourceType) -> Callable[[Row], tuple | None]:
    """A row's key as the backends sort on `ref` (storage/sql.py order_clause), or None when absent."""
    if ref is None:
        return lambda row: None
    name = ref.name.lower()
    if name == "id":
        return lambda row: _key(row.id, True)
    if name == "meta.created":
        return lambda row: _key(row.created, True)
    if name == "meta.lastmodified":
        return lambda row: _key(row.modified, True)
    if name == "meta.resourcetype":
        return lambda row: _key(rtype.name, True)
    exact = ref.leaf.case_exact
    if ref.attr.multi_valued:
        sub = ref.sub.name if ref.sub else "value"

        def first_element(row: Row) -> tuple | None:
            elements = [e for e in ref.values_of_attr(row.doc) if isinstance(e, dict)]
            elements.sort(key=lambda e: e.get("primary") is not True)  # the primary one, else the first
            return _key(elements[0].get(sub), exact) if elements else None

        return first_element
    return lambda row: _key(next(iter(ref.leaf_values(row.doc)), None), exact)


def _key(value: object, exact: bool) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value if exact else fold(value))
    return None
