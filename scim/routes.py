"""The SCIM URL grammar, declared once: every endpoint under /v1/scim/{idp}/.

web/scim/entry.py binds each route to its handler (web/scim/handlers.py) and matches requests with
Starlette routes built from this table; the metrics route label, the operation name and the
provisioning record read the route that matched. Order matters: the first route whose template
matches a path wins, so a literal segment (".search") comes before a parameter ("{id}") in the
same place.
"""

from __future__ import annotations

from dataclasses import dataclass

SCIM_PREFIX = "/v1/scim/"
COLLECTION = "collection"  # the endpoint itself: list or create
SEARCH = "search"  # POST .../.search
ITEM = "item"  # one resource under the endpoint, by its parameter
DISCOVERY = "discovery"  # the endpoints of no resource type: discovery, the root .search, /Bulk, /Me


@dataclass(frozen=True, slots=True)
class ScimRoute:
    """One endpoint: its template (also its metrics label), the methods it answers, the name of the
    ScimHandlers method that answers, and what the operation naming reads (resource type and kind)."""

    template: str  # the full path template, e.g. "/v1/scim/{idp}/Users/{id}"
    methods: tuple[str, ...]
    handler: str
    resource: str | None  # "User" or "Group" for the resource endpoints
    kind: str  # COLLECTION, SEARCH, ITEM or DISCOVERY
    endpoint: str  # the segment after the IdP ID: "Users", "Schemas", ".search"..., "" for the tenant root
    param: str | None  # the parameter of the last segment ("id", "urn", "name"), if any


def _route(rest: str, methods: tuple[str, ...], handler: str, resource: str | None = None) -> ScimRoute:
    endpoint, _, last = rest.partition("/")
    param = last[1:-1] if last.startswith("{") else None
    if resource is None:
        kind = DISCOVERY
    elif param is not None:
        kind = ITEM
    else:
        kind = SEARCH if last == ".search" else COLLECTION
    template = f"{SCIM_PREFIX}{{idp}}/{rest}" if rest else f"{SCIM_PREFIX}{{idp}}"
    return ScimRoute(template, methods, handler, resource, kind, endpoint, param)


ITEM_METHODS = ("GET", "PUT", "PATCH", "DELETE")
ROUTES: tuple[ScimRoute, ...] = (
    _route("Users", ("GET", "POST"), "list_or_create", "User"),
    _route("Users/.search", ("POST",), "search", "User"),
    _route("Users/{id}", ITEM_METHODS, "one", "User"),
    _route("Groups", ("GET", "POST"), "list_or_create", "Group"),
    _route("Groups/.search", ("POST",), "search", "Group"),
    _route("Groups/{id}", ITEM_METHODS, "one", "Group"),
    _route(".search", ("POST",), "search_all"),
    _route("", ("GET",), "search_all"),  # the tenant root: a search across types by query string
    _route("Bulk", ("POST",), "bulk"),
    _route("Me", ITEM_METHODS + ("POST",), "me"),
    _route("ServiceProviderConfig", ("GET",), "service_provider_config"),
    _route("ResourceTypes", ("GET",), "resource_types"),
    _route("ResourceTypes/{name}", ("GET",), "resource_type"),
    _route("Schemas", ("GET",), "schema_list"),
    _route("Schemas/{urn}", ("GET",), "schema"),
)
