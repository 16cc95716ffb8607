"""The SCIM handlers, thin: parse -> scim/ -> storage -> render. scim/routes.py names each route's."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
from collections.abc import Awaitable, Callable

import orjson
from starlette.responses import Response

from scim import schemas
from scim.errors import ScimError, invalid_value, not_found, shown
from scim.operations import target_of
from scim.patch import MemberOp, apply_patch
from scim.project import Projection
from scim.resources import etag, etag_matches, parse_etags
from scim.schemas import ResourceType
from scim.validate import find_key, parse_members, server_unique, validate_resource
from settings import Settings
from storage import Change, ChangeFn, EventSource, Principal, ResourceStore, Row, UniqueValue
from web.request_body import BodyDeadlines, read_object
from web.scim.across import across_query, search_across
from web.scim.auth import BearerAuth
from web.scim.cursors import AFTER, BEFORE, Cursors, scope_of
from web.scim.params import page_query, projection
from web.scim.preconditions import precondition
from web.scim.render import Renderer, list_parts, list_response, loads_references
from web.scim.request import ScimRequest
from web.scim.responses import BIG_BODY_BYTES, ScimResponse, encoded_response, parts_response
from web.throttle import AuthThrottle

# A SCIM request's txn (RFC 9967): this process's random prefix and a counter. Unique without a
# system call per request: os.urandom (new_resource_id) hands the GIL over and waits to get it back,
# which cost a create with events 6% of its CPU under load (py-spy).
TXN_PREFIX = secrets.token_hex(8)
_txn_numbers = itertools.count(1)


def new_txn() -> str:
    return f"{TXN_PREFIX}-{next(_txn_numbers)}"


class ScimHandlers:
    """One method per route of scim/routes.py; the resource endpoints' take the resource type."""

    def __init__(self, store: ResourceStore, settings: Settings, cursor_key: Callable[[], Awaitable[str]]) -> None:
        self.store = store
        self.cursors = Cursors(settings.scim.cursor_timeout, cursor_key)
        self.scim_settings = settings.scim
        self.max_body = settings.server.max_body_bytes
        self.max_count = settings.scim.max_page_size
        self.max_members = settings.scim.max_members_per_patch
        self.max_operations = settings.scim.max_operations
        self.bulk_max_operations = settings.scim.bulk_max_operations
        self.bulk_max_payload = settings.scim.bulk_max_payload_bytes
        self.limits = settings.scim.limits
        self.limits_page_bytes = settings.scim.max_page_bytes
        self.body_deadlines = BodyDeadlines(settings.server.body_timeout)
        security = settings.security
        self.auth = BearerAuth(store, AuthThrottle(security.auth_failure_limit, security.auth_failure_window))
        self.render = Renderer(settings.base_url)
        # Called after a write that made events: the delivery worker (web/events/) starts at once.
        self.events_written: Callable[[], None] = lambda: None

    # --- discovery -------------------------------------------------------------------------------

    async def service_provider_config(self, request: ScimRequest) -> Response:
        self.auth.authenticate(request)
        return ScimResponse(
            schemas.service_provider_config(
                self.render.base_url(request),
                self.max_count,
                self.bulk_max_operations,
                self.bulk_max_payload,
                self.scim_settings.default_page_size,
                self.cursors.timeout,
            )
        )

    async def resource_types(self, request: ScimRequest) -> Response:
        types = self.auth.authenticate(request).schema.tenant.types
        base_url = self.render.base_url(request)
        items = [rtype.to_dict(base_url, self.limits) for rtype in types.values()]
        return ScimResponse(list_response(items, len(items), 1))

    async def resource_type(self, request: ScimRequest) -> Response:
        types = self.auth.authenticate(request).schema.tenant.types
        name = request.path_params["name"]
        for rtype in types.values():
            if rtype.name.lower() == name.lower():
                return ScimResponse(rtype.to_dict(self.render.base_url(request), self.limits))
        raise not_found(f"No resource type {shown(name)}; known: User, Group")

    async def schema_list(self, request: ScimRequest) -> Response:
        declared = self.auth.authenticate(request).schema.tenant.schemas
        base_url = self.render.base_url(request)
        items = [schema.to_dict(base_url, self.limits) for schema in declared]
        return ScimResponse(list_response(items, len(items), 1))

    async def schema(self, request: ScimRequest) -> Response:
        declared = self.auth.authenticate(request).schema.tenant.schemas
        urn = request.path_params["urn"]
        for schema in declared:
            if schema.id.lower() == urn.lower():
                return ScimResponse(schema.to_dict(self.render.base_url(request), self.limits))
        raise not_found(f"No schema {shown(urn)}")

    # --- resources -------------------------------------------------------------------------------

    async def list_or_create(self, request: ScimRequest, rtype: ResourceType) -> Response:
        if request.method == "POST":
            return await self.create(request, rtype)
        rtype = tenant_type(self.auth.authenticate(request), rtype)
        params = request.query_params
        return await self.query(request, rtype, {name: params.get(name) for name in QUERY_PARAMETERS})

    async def search(self, request: ScimRequest, rtype: ResourceType) -> Response:
        rtype = tenant_type(self.auth.authenticate(request), rtype)
        return await self.query(request, rtype, await self.search_body(request))

    async def search_body(self, request: ScimRequest) -> dict:
        """A SearchRequest's body (RFC 7644 §3.4.3): its parameters, as a query string gives them."""
        body = await read_object(request, self.max_body, self.body_deadlines)
        listed = body.get("schemas")
        if listed is not None and not isinstance(listed, list):
            raise ScimError(400, f'A search request\'s schemas must be ["{schemas.SEARCH_REQUEST}"]', "invalidSyntax")
        urns = [u.lower() for u in listed or [] if isinstance(u, str)]
        if urns and schemas.SEARCH_REQUEST.lower() not in urns:
            raise ScimError(400, f'A search request\'s schemas must be ["{schemas.SEARCH_REQUEST}"]', "invalidSyntax")
        return body

    async def search_all(self, request: ScimRequest) -> Response:
        """Users and groups in one search (RFC 7644 §3.4.3 POST /.search, §3.4.2 GET at the root)."""
        types = list(self.auth.authenticate(request).schema.tenant.types.values())
        if request.method == "POST":
            params = await self.search_body(request)
        else:
            params = {name: request.query_params.get(name) for name in QUERY_PARAMETERS}
        query = across_query(types, params, self.scim_settings)
        total, encoded = await search_across(self.store, self.render, request, query, self.limits_page_bytes)
        return page_response(encoded, total, query.start_index)

    async def me(self, request: ScimRequest) -> Response:
        """/Me (RFC 7644 §3.11) is the authenticated subject's own resource; scimlet's subject is an
        API key bound to an IdP, never a user, so there is none: 501, as §3.11 allows."""
        self.auth.authenticate(request)
        raise ScimError(
            501,
            "/Me is not supported: scimlet signs in API keys, not users, so no user resource is the "
            "subject of a request; read /Users/<id> instead",
        )

    async def query(self, request: ScimRequest, rtype: ResourceType, params: dict) -> Response:
        if params.get("cursor") is not None:
            return await self.walk(request, rtype, params)
        query, wanted = page_query(rtype, params, self.scim_settings)
        total, rows = await self.store.search(
            rtype.name, request.path_params["idp"], query, self.render.encoder(request, rtype, wanted)
        )
        # Row.encoded is None only for a read that was not asked to encode; search(encode=...) sets it on every row.
        encoded: list[bytes] = [row.encoded for row in rows]  # type: ignore[misc]
        rows.clear()
        return page_response(encoded, total, query.start_index)

    async def walk(self, request: ScimRequest, rtype: ResourceType, params: dict) -> Response:
        """A page of a cursor walk (RFC 9865): in creation order, from a keyset position, so a walk
        meets every resource that exists throughout it exactly once, and a deep page costs what
        the first does."""
        cursor = params.get("cursor")
        if not isinstance(cursor, str):
            raise invalid_value('cursor must be a text: "" for the first page, then a nextCursor or previousCursor')
        if params.get("startIndex") not in (None, ""):
            raise invalid_value("Send cursor or startIndex, not both: they are two ways of paging")
        if params.get("sortBy") not in (None, ""):
            raise invalid_value(
                "A cursor walk goes in the order resources were created; leave out sortBy, or page by startIndex"
            )
        query, wanted = page_query(rtype, params, self.scim_settings)
        idp_id = request.path_params["idp"]
        scope = scope_of(idp_id, rtype.name, params.get("filter"))
        at = await self.cursors.read(cursor, scope)
        keyset = dataclasses.replace(
            query,
            after=at.position if at is not None and at.direction == AFTER else None,
            before=at.position if at is not None and at.direction == BEFORE else None,
        )
        page = await self.store.walk(rtype.name, idp_id, keyset, self.render.encoder(request, rtype, wanted))
        rows = page.rows
        links = {}
        # An empty page names the position it was asked for: the walk goes on from there.
        if page.more_after:
            after = rows[-1].position if rows else (at.position - 1 if at is not None else 0)
            links["nextCursor"] = await self.cursors.make(AFTER, after or 0, scope)
        if page.more_before:
            before = rows[0].position if rows else (at.position + 1 if at is not None else 0)
            links["previousCursor"] = await self.cursors.make(BEFORE, before or 0, scope)
        encoded: list[bytes] = [row.encoded for row in rows]  # type: ignore[misc]
        rows.clear()
        return page_response(encoded, page.total, None, links)

    async def create(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.auth.authenticate(request, write=rtype)
        rtype = tenant_type(principal, rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        doc = validate_resource(rtype, body, limits=self.limits, ignored=request.ignored)
        members = None
        if rtype.name == "Group":
            members = parse_members(find_key(body, "members"))
            self.check_member_count(len(members))
        events = self.event_source(request, principal)
        row = await self.store.create(rtype.name, principal.idp_id, doc, members, unique_values(rtype, doc), events)
        if events is not None:
            self.events_written()
        return self.render.single(request, rtype, row, projection(request, rtype), status=201)

    async def one(self, request: ScimRequest, rtype: ResourceType) -> Response:
        method = request.method
        if method == "GET":
            return await self.get(request, rtype)
        if method == "DELETE":
            return await self.delete(request, rtype)
        if method == "PUT":
            return await self.replace(request, rtype)
        return await self.patch(request, rtype)

    async def get(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.auth.authenticate(request)
        rtype = tenant_type(principal, rtype)
        wanted = projection(request, rtype)
        resource_id = request.path_params["id"]
        loaded = loads_references(rtype, wanted)
        if loaded and rtype.name == "Group":
            return await self.get_group(request, rtype, principal.idp_id, resource_id, wanted)
        row = await self.store.get(
            rtype.name,
            principal.idp_id,
            resource_id,
            members=loaded,
            encode=self.render.encoder(request, rtype, wanted),
        )
        if row is None:
            raise not_found(f"{rtype.name} {shown(resource_id)} not found")
        if not_modified(request, row.version):
            return Response(status_code=304, headers={"ETag": etag(row.version)})
        assert row.encoded is not None, "get(encode=...) encodes the row"
        return encoded_response(row.encoded, {"ETag": etag(row.version)})

    async def get_group(
        self, request: ScimRequest, rtype: ResourceType, idp_id: str, group_id: str, wanted: Projection
    ) -> Response:
        """A group with its members: streamed from the store (a group of 100,000 members is 20 MB
        of JSON, never held whole), its ETag the version of the snapshot the members come from."""
        stream = await self.store.stream_members(idp_id, group_id, self.render.member_encoder(request, rtype, wanted))
        if stream is None:
            raise not_found(f"{rtype.name} {shown(group_id)} not found")
        try:
            if not_modified(request, stream.row.version):
                await stream.aclose()
                return Response(status_code=304, headers={"ETag": etag(stream.row.version)})
            return await self.render.group(request, rtype, stream, wanted)
        except BaseException:
            await stream.aclose()
            raise

    async def replace(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.auth.authenticate(request, write=rtype)
        rtype = tenant_type(principal, rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        resource_id = request.path_params["id"]
        if isinstance(body.get("id"), str) and body["id"] != resource_id:
            raise ScimError(
                400,
                f"id is immutable: the body says {shown(body['id'])} but the URL says {shown(resource_id)}",
                "mutability",
            )
        doc = validate_resource(rtype, body, limits=self.limits, ignored=request.ignored)
        member_ops = []
        if rtype.name == "Group":
            members = parse_members(find_key(body, "members"))
            self.check_member_count(len(members))
            member_ops = [MemberOp("replace", tuple(members))]
        check = precondition(request)
        conditional = "if-match" in request.headers

        unique = unique_values(rtype, doc)
        events = self.event_source(request, principal, "put")

        def change(row: Row) -> Change:
            check(row)
            request.changed = (row.doc, doc)
            request.member_delta = member_delta(member_ops)
            return Change(
                doc=doc,
                member_ops=member_ops,
                if_version=row.version if conditional else None,
                unique=unique,
                events=events,
            )

        wanted = projection(request, rtype)
        loaded = loads_references(rtype, wanted)
        row = await self.store.update(rtype.name, principal.idp_id, resource_id, change, members=loaded)
        if events is not None:
            self.events_written()
        return self.render.written(request, rtype, row, wanted, loaded)

    async def patch(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.auth.authenticate(request, write=rtype)
        rtype = tenant_type(principal, rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        operations = body.get("Operations")
        if isinstance(operations, list) and len(operations) > self.max_operations:
            raise invalid_value(
                f"A PATCH may carry at most {self.max_operations} operations; this one has {len(operations)}: split it"
            )
        check = precondition(request)
        conditional = "if-match" in request.headers
        patch_request = {"schemas": [schemas.PATCH_OP], "Operations": operations}
        events = self.event_source(request, principal, "patch", patch_request)

        def patched(row: Row) -> Change:
            check(row)
            # A change may run again (on a row changed meanwhile): the last run's names are the request's.
            request.ignored = []
            doc, member_ops = apply_patch(rtype, row.doc, body, self.limits, row.id, request.ignored)
            self.check_member_count(sum(len(op.members) for op in member_ops))
            request.changed = (row.doc, doc)
            request.member_delta = member_delta(member_ops)
            return Change(
                doc=doc,
                member_ops=member_ops,
                if_version=row.version if conditional else None,
                unique=unique_values(rtype, doc),
                events=events,
            )

        change: ChangeFn = patched
        if isinstance(operations, list) and patch_work(operations) > PRECOMPUTED_PATCH_WORK:
            change = await self.precomputed(rtype, principal.idp_id, request.path_params["id"], patched)
        asked = "attributes" in request.query_params or "excludedAttributes" in request.query_params
        wanted = projection(request, rtype)
        wants_body = rtype.name == "User" or asked
        loaded = wants_body and loads_references(rtype, wanted)
        row = await self.store.update(rtype.name, principal.idp_id, request.path_params["id"], change, members=loaded)
        if events is not None:
            self.events_written()
        if not wants_body:
            return Response(status_code=204, headers={"ETag": etag(row.version)})
        return self.render.written(request, rtype, row, wanted, loaded)

    async def delete(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.auth.authenticate(request, write=rtype)
        if_match = precondition(request)

        def named(row: Row) -> None:
            # The record names what was deleted: the log's search by name finds the deletion too.
            request.target_name = target_of(rtype.name, row.doc, None)
            if_match(row)
            request.changed = (row.doc, None)

        events = self.event_source(request, principal, "delete")
        await self.store.delete(rtype.name, principal.idp_id, request.path_params["id"], named, events)
        if events is not None:
            self.events_written()
        return Response(status_code=204)

    def event_source(
        self, request: ScimRequest, principal: Principal, kind: str = "create", patch: dict | None = None
    ) -> EventSource | None:
        """What the write needs to put its events in the outbox, when the IdP has subscriptions.
        The txn is the request's; a Bulk request's operations share the Bulk request's."""
        if not principal.events:
            return None
        return EventSource(request.bulk_request or new_txn(), kind, patch)

    async def precomputed(self, rtype: ResourceType, idp_id: str, resource_id: str, compute: ChangeFn) -> ChangeFn:
        """compute(row) run on the row as read now, on a worker thread; the change function returned
        gives that result when the row is still that version at the write, else computes again."""
        row = await self.store.get(rtype.name, idp_id, resource_id, members=False)
        if row is None:
            return compute  # the write answers the 404 (or the 401 of an IdP deleted meanwhile)
        result = await asyncio.to_thread(compute, row)
        version = row.version

        def change(current: Row) -> Change:
            return result if current.version == version else compute(current)

        return change

    def check_member_count(self, count: int) -> None:
        if count > self.max_members:
            raise invalid_value(
                f"At most {self.max_members} members may change in one request; "
                f"this one has {count}: send them in batches"
            )


# The parameters of a list or search (RFC 7644 §3.4.2), as a query string or a SearchRequest names them.
QUERY_PARAMETERS = (
    "filter",
    "sortBy",
    "sortOrder",
    "startIndex",
    "count",
    "cursor",
    "attributes",
    "excludedAttributes",
)


def page_response(encoded: list[bytes], total: int, start: int | None, cursors: dict | None = None) -> Response:
    """A ListResponse of encoded resources: an index page (`start`) or a cursor walk's (`cursors`)."""
    if sum(len(resource) for resource in encoded) < BIG_BODY_BYTES:
        # Entra's lookups (a page of one or none): one orjson call around the fragments, 2 µs
        # less than building the parts and joining them.
        return ScimResponse(list_response([orjson.Fragment(e) for e in encoded], total, start, cursors))
    return parts_response(list_parts(encoded, total, start, cursors))


# A PATCH of more operations and values than this is applied before the write, off the event loop:
# the single writer then compares a version and stores, instead of holding every tenant's writes
# for the tens of milliseconds that 1000 filtered operations on 100 emails take. Entra's PATCHes,
# a few operations each, stay one trip to the writer.
PRECOMPUTED_PATCH_WORK = 64


def member_delta(operations: list[MemberOp]) -> tuple[int, int] | None:
    """Members a write adds and removes, as its operations name them (a replace counts as added:
    the store knows what it drops); None when it names none."""
    if not operations:
        return None
    added = sum(len(op.members) for op in operations if op.op in ("add", "replace"))
    removed = sum(len(op.members) for op in operations if op.op == "remove")
    return added, removed


def patch_work(operations: list) -> int:
    """A PATCH's size as its work goes: its operations and the values they carry."""
    values = (op.get("value") for op in operations if isinstance(op, dict))
    return len(operations) + sum(len(value) for value in values if isinstance(value, list | dict))


def not_modified(request: ScimRequest, version: int) -> bool:
    """Whether the request's If-None-Match names this version (the answer is then 304)."""
    return "if-none-match" in request.headers and etag_matches(parse_etags(request.headers["if-none-match"]), version)


def unique_values(rtype: ResourceType, doc: dict) -> tuple[UniqueValue, ...]:
    """The document's values of declared `uniqueness: server` attributes, for the store to check."""
    if not rtype.unique:
        return ()
    return tuple(UniqueValue(where, detail) for where, detail in server_unique(rtype, doc))


def tenant_type(principal: Principal, route_type: ResourceType) -> ResourceType:
    """The IdP's own version of the route's resource type (the route table binds the default one)."""
    return principal.schema.tenant.type_named(route_type.name)
