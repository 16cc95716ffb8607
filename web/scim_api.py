"""The SCIM endpoints under /v1/scim/{idp}: thin handlers (parse -> scim/ -> storage -> respond)."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from scim import schemas
from scim.errors import ScimError, invalid_value, not_found, shown
from scim.filters import parse_filter
from scim.patch import MemberOp, apply_patch
from scim.paths import resolve_text
from scim.project import Projection, parse_projection, project
from scim.resources import etag, etag_matches, parse_etags, to_resource
from scim.routes import ROUTES, ScimRoute
from scim.schemas import GROUP_TYPE, USER_TYPE, Limits, ResourceType
from scim.validate import find_key, parse_members, validate_resource
from settings import Settings
from storage import Change, Encoder, Principal, Query, ResourceStore, Row
from web.metrics import Metrics
from web.observe import Listener, build_record
from web.request_log import finish_request, scim_route
from web.responses import (
    SCIM_JSON,
    BodyDeadlines,
    ScimRequest,
    ScimResponse,
    detached,
    error_response,
    internal_error,
    read_object,
    routing_error,
)
from web.throttle import AuthThrottle

Handler = Callable[[ScimRequest], Awaitable[Response]]
log = logging.getLogger("scimlet")
RESOURCE_TYPES = {"User": USER_TYPE, "Group": GROUP_TYPE}
MAX_SAFE_INTEGER = 2**53 - 1
ENCODE_SLICE = 5000  # members encoded in one orjson call: a few ms
BIG_BODY_BYTES = 1_048_576  # an encoded answer past this is not copied again into a ScimResponse


class Unauthorized(ScimError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "The bearer token is missing, unknown, revoked or not the key of this IdP; "
            "use the secret of the API key selected for this IdP",
        )


class ScimApi:
    def __init__(self, store: ResourceStore, settings: Settings, metrics: Metrics, listeners: list[Listener]) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.listeners = listeners  # each gets every provisioning log record
        self.max_body = settings.server.max_body_bytes
        self.default_count = settings.scim.default_page_size
        self.max_count = settings.scim.max_page_size
        self.max_page_bytes = settings.scim.max_page_bytes
        self.max_members = settings.scim.max_members_per_patch
        self.max_operations = settings.scim.max_operations
        self.limits = Limits(
            max_name_length=settings.scim.max_name_length,
            max_string_length=settings.scim.max_string_length,
            max_attribute_values=settings.scim.max_attribute_values,
            max_document_bytes=settings.scim.max_document_bytes,
        )
        self.body_deadlines = BodyDeadlines(settings.server.body_timeout)
        self.filter_limits = {
            "max_length": settings.scim.max_filter_length,
            "max_depth": settings.scim.max_filter_depth,
        }
        security = settings.security
        self.throttle = AuthThrottle(security.auth_failure_limit, security.auth_failure_window)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request under /v1/scim/, then count, log and record it.

        The hottest path of the server, so it is one plain ASGI call: routing by path segments (one
        dict lookup instead of trying a dozen route patterns), every error answered as SCIM, and the
        request's metrics, log line and provisioning record taken here rather than by middleware
        wrapping send and receive."""
        started = time.perf_counter()
        request = ScimRequest(scope, receive)
        method, path = request.method, scope["path"]
        headers: Mapping[str, str] | None = None
        try:
            response = await self.route(request)(request)
        except ScimError as exc:
            request.error = detached(exc)
        except HTTPException as exc:
            request.error, headers = routing_error(method, path, exc), exc.headers
        except Exception as exc:
            request.error = internal_error(method, path, exc)
        if request.error is not None:
            if request.body_unread:
                # The protocol ends such a connection after this answer (web/http_protocol.py): say so.
                headers = {**(headers or {}), "Connection": "close"}
            response = error_response(request.error, headers)
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
            await send({"type": "http.response.body", "body": response.body})
        finally:
            seconds = time.perf_counter() - started
            finish_request(
                self.metrics,
                scope,
                scim_route(request.route),
                response.status_code,
                seconds,
                request.path_params.get("idp"),
            )
            record = build_record(request, response.status_code, response.body, seconds * 1000)
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:
                    log.exception("a provisioning log listener failed")

    @functools.cached_property
    def routes(self) -> dict[str, list[tuple[Route, ScimRoute, Handler]]]:
        """The route table bound to this API: Starlette routes by the segment after the IdP ID, so
        a path is tried against its own endpoint's two or three routes, not the whole table."""
        by_endpoint: dict[str, list[tuple[Route, ScimRoute, Handler]]] = {}
        for spec in ROUTES:
            handler = getattr(self, spec.handler)
            if spec.resource is not None:
                handler = functools.partial(handler, rtype=RESOURCE_TYPES[spec.resource])
            route = Route(spec.template, handler, methods=spec.methods)
            by_endpoint.setdefault(spec.endpoint, []).append((route, spec, handler))
        return by_endpoint

    def route(self, request: ScimRequest) -> Handler:
        """The handler of the request's path; sets the request's route and path parameters.

        The methods checked are the table's own: a Starlette route would also let HEAD through."""
        segments = request.segments
        scope = request.scope
        if scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/")}
        for route, spec, handler in self.routes.get(segments[1], ()) if len(segments) > 1 else ():
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            request.route, request.path_params = spec, child["path_params"]
            if request.method not in spec.methods:
                raise HTTPException(405, headers={"Allow": ", ".join(spec.methods)})
            return handler
        raise HTTPException(404)

    # --- auth and helpers ----------------------------------------------------------------------

    def authenticate(self, request: ScimRequest, write: ResourceType | None = None) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        principal = (
            self.store.authenticate(request.path_params["idp"], token) if scheme.lower() == "bearer" and token else None
        )
        if principal is None:
            # A missing token, a wrong one and an unknown IdP take this same path: one answer for all.
            self.throttle.failed(request.client_host)
            raise Unauthorized()
        request.principal = principal
        if write is USER_TYPE and not principal.users_write:
            raise ScimError(403, "This API key does not have the Users write privilege; grant it to the key")
        if write is GROUP_TYPE and not principal.groups_write:
            raise ScimError(403, "This API key does not have the Groups write privilege; grant it to the key")
        return principal

    def base_url(self, request: ScimRequest) -> str:
        return f"{self.settings.base_url}/v1/scim/{request.path_params['idp']}"

    def render(self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection) -> dict:
        resource = to_resource(
            rtype,
            row.id,
            row.doc,
            version=row.version,
            created=row.created,
            modified=row.modified,
            base_url=self.base_url(request),
            members=row.members,
            groups=row.groups,
        )
        return project(rtype, resource, projection)

    def encoder(self, request: ScimRequest, rtype: ResourceType, projection: Projection) -> Encoder:
        """render() as JSON, for the store to run where it reads the rows: a page, or a group's
        full member list, is built and encoded on a reader thread, not on the event loop."""
        return lambda row: encode_resource(self.render(request, rtype, row, projection))

    def single(
        self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection, status: int = 200
    ) -> ScimResponse:
        headers = {"ETag": etag(row.version)}
        if status == 201:
            headers["Location"] = f"{self.base_url(request)}{rtype.endpoint}/{row.id}"
            request.resource_id = row.id
        return ScimResponse(self.render(request, rtype, row, projection), status_code=status, headers=headers)

    def written(
        self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection, loaded: bool
    ) -> Response:
        """The answer to a PUT or PATCH that was applied: the resource, or, for a user in more groups
        than an answer lists (scim.max_user_groups), no body (RFC 7644 §3.5.2) with its ETag."""
        if loaded and rtype is USER_TYPE and row.groups is None:
            return Response(status_code=204, headers={"ETag": etag(row.version)})
        return self.single(request, rtype, row, projection)

    @staticmethod
    def loads_references(rtype: ResourceType, projection: Projection) -> bool:
        """Whether member rows (groups) or memberships (users) must be read for this answer."""
        return projection.wants("members" if rtype is GROUP_TYPE else "groups")

    @staticmethod
    def precondition(request: ScimRequest) -> Callable[[Row], None]:
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

    # --- discovery -------------------------------------------------------------------------------

    async def service_provider_config(self, request: ScimRequest) -> Response:
        self.authenticate(request)
        return ScimResponse(
            schemas.service_provider_config(self.base_url(request), self.max_count, self.max_operations, self.max_body)
        )

    async def resource_types(self, request: ScimRequest) -> Response:
        self.authenticate(request)
        items = [rtype.to_dict(self.base_url(request), self.limits) for rtype in schemas.RESOURCE_TYPES.values()]
        return ScimResponse(_list_response(items, len(items), 1))

    async def resource_type(self, request: ScimRequest) -> Response:
        self.authenticate(request)
        name = request.path_params["name"]
        for rtype in schemas.RESOURCE_TYPES.values():
            if rtype.name.lower() == name.lower():
                return ScimResponse(rtype.to_dict(self.base_url(request), self.limits))
        raise not_found(f"No resource type {shown(name)}; known: User, Group")

    async def schema_list(self, request: ScimRequest) -> Response:
        self.authenticate(request)
        items = [schema.to_dict(self.base_url(request), self.limits) for schema in schemas.SCHEMAS.values()]
        return ScimResponse(_list_response(items, len(items), 1))

    async def schema(self, request: ScimRequest) -> Response:
        self.authenticate(request)
        urn = request.path_params["urn"]
        for schema in schemas.SCHEMAS.values():
            if schema.id.lower() == urn.lower():
                return ScimResponse(schema.to_dict(self.base_url(request), self.limits))
        raise not_found(f"No schema {shown(urn)}")

    # --- resources -------------------------------------------------------------------------------

    async def list_or_create(self, request: ScimRequest, rtype: ResourceType) -> Response:
        if request.method == "POST":
            return await self.create(request, rtype)
        self.authenticate(request)
        params = request.query_params
        return await self.query(
            request,
            rtype,
            {
                "filter": params.get("filter"),
                "sortBy": params.get("sortBy"),
                "sortOrder": params.get("sortOrder"),
                "startIndex": params.get("startIndex"),
                "count": params.get("count"),
                "attributes": params.get("attributes"),
                "excludedAttributes": params.get("excludedAttributes"),
            },
        )

    async def search(self, request: ScimRequest, rtype: ResourceType) -> Response:
        self.authenticate(request)
        body = await read_object(request, self.max_body, self.body_deadlines)
        urns = [u.lower() for u in body.get("schemas") or [] if isinstance(u, str)]
        if urns and schemas.SEARCH_REQUEST.lower() not in urns:
            raise ScimError(400, f'A search request\'s schemas must be ["{schemas.SEARCH_REQUEST}"]', "invalidSyntax")
        return await self.query(request, rtype, body)

    async def search_all(self, request: ScimRequest) -> Response:
        """POST /.search at the tenant root would search users and groups at once (RFC 7644 §3.4.3).

        We do not; RFC 7644 §3.12 names 501 for an operation the service provider does not support,
        and clients (scim2-tester among them) read it as exactly that.
        """
        self.authenticate(request)
        raise ScimError(
            501,
            "Searching several resource types at once is not supported; POST /Users/.search or /Groups/.search instead",
        )

    async def query(self, request: ScimRequest, rtype: ResourceType, params: dict) -> Response:
        projection = parse_projection(rtype, params.get("attributes"), params.get("excludedAttributes"))
        text = params.get("filter")
        if text is not None and not isinstance(text, str):
            raise ScimError(400, "filter must be a string", "invalidFilter")
        where = parse_filter(text, rtype, **self.filter_limits) if text is not None else None
        sort_by = params.get("sortBy")
        sort_ref = None
        if sort_by is not None:
            if not isinstance(sort_by, str):
                raise invalid_value("sortBy must be an attribute name")
            sort_ref = resolve_text(rtype, sort_by, error=invalid_value)
        order = params.get("sortOrder") or "ascending"
        if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
            raise invalid_value(f"sortOrder must be ascending or descending, not {shown(order)}")
        start = _integer(params.get("startIndex"), "startIndex", 1)
        count = _integer(params.get("count"), "count", self.default_count)
        start = max(start, 1)  # RFC 7644 §3.4.2.4: values below 1 are read as 1
        count = min(max(count, 0), self.max_count)
        query = Query(
            where=where,
            sort_by=sort_ref,
            descending=order.lower() == "descending",
            start_index=start,
            count=count,
            members=self.loads_references(rtype, projection),
            max_bytes=self.max_page_bytes,
        )
        total, rows = await self.store.search(
            rtype.name, request.path_params["idp"], query, self.encoder(request, rtype, projection)
        )
        # Row.encoded is None only for a read that was not asked to encode; search(encode=...) sets it on every row.
        fragments = [orjson.Fragment(row.encoded) for row in rows]  # type: ignore[arg-type]
        return ScimResponse(_list_response(fragments, total, start))

    async def create(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.authenticate(request, write=rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        doc = validate_resource(rtype, body, limits=self.limits)
        members = None
        if rtype is GROUP_TYPE:
            members = parse_members(find_key(body, "members"))
            self.check_member_count(len(members))
        row = await self.store.create(rtype.name, principal.idp_id, doc, members)
        projection = parse_projection(
            rtype, request.query_params.get("attributes"), request.query_params.get("excludedAttributes")
        )
        return self.single(request, rtype, row, projection, status=201)

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
        principal = self.authenticate(request)
        projection = self.projection(request, rtype)
        resource_id = request.path_params["id"]
        row = await self.store.get(
            rtype.name,
            principal.idp_id,
            resource_id,
            members=self.loads_references(rtype, projection),
            encode=self.encoder(request, rtype, projection),
        )
        if row is None:
            raise not_found(f"{rtype.name} {shown(resource_id)} not found")
        if "if-none-match" in request.headers and etag_matches(
            parse_etags(request.headers["if-none-match"]), row.version
        ):
            return Response(status_code=304, headers={"ETag": etag(row.version)})
        assert row.encoded is not None, "get(encode=...) encodes the row"
        return encoded_response(row.encoded, {"ETag": etag(row.version)})

    async def replace(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.authenticate(request, write=rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        resource_id = request.path_params["id"]
        if isinstance(body.get("id"), str) and body["id"] != resource_id:
            raise ScimError(
                400,
                f"id is immutable: the body says {shown(body['id'])} but the URL says {shown(resource_id)}",
                "mutability",
            )
        doc = validate_resource(rtype, body, limits=self.limits)
        member_ops = []
        if rtype is GROUP_TYPE:
            members = parse_members(find_key(body, "members"))
            self.check_member_count(len(members))
            member_ops = [MemberOp("replace", tuple(members))]
        check = self.precondition(request)

        def change(row: Row) -> Change:
            check(row)
            return Change(doc=doc, member_ops=member_ops)

        projection = self.projection(request, rtype)
        loaded = self.loads_references(rtype, projection)
        row = await self.store.update(rtype.name, principal.idp_id, resource_id, change, members=loaded)
        return self.written(request, rtype, row, projection, loaded)

    async def patch(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.authenticate(request, write=rtype)
        body = await read_object(request, self.max_body, self.body_deadlines)
        operations = body.get("Operations")
        if isinstance(operations, list) and len(operations) > self.max_operations:
            raise invalid_value(
                f"A PATCH may carry at most {self.max_operations} operations; this one has {len(operations)}: split it"
            )
        check = self.precondition(request)

        def change(row: Row) -> Change:
            check(row)
            doc, member_ops = apply_patch(rtype, row.doc, body, self.limits, row.id)
            self.check_member_count(sum(len(op.members) for op in member_ops))
            return Change(doc=doc, member_ops=member_ops)

        asked = "attributes" in request.query_params or "excludedAttributes" in request.query_params
        projection = self.projection(request, rtype)
        wants_body = rtype is USER_TYPE or asked
        loaded = wants_body and self.loads_references(rtype, projection)
        row = await self.store.update(rtype.name, principal.idp_id, request.path_params["id"], change, members=loaded)
        if not wants_body:
            return Response(status_code=204, headers={"ETag": etag(row.version)})
        return self.written(request, rtype, row, projection, loaded)

    async def delete(self, request: ScimRequest, rtype: ResourceType) -> Response:
        principal = self.authenticate(request, write=rtype)
        await self.store.delete(rtype.name, principal.idp_id, request.path_params["id"], self.precondition(request))
        return Response(status_code=204)

    def projection(self, request: ScimRequest, rtype: ResourceType) -> Projection:
        return parse_projection(
            rtype, request.query_params.get("attributes"), request.query_params.get("excludedAttributes")
        )

    def check_member_count(self, count: int) -> None:
        if count > self.max_members:
            raise invalid_value(
                f"At most {self.max_members} members may change in one request; "
                f"this one has {count}: send them in batches"
            )


def encode_resource(resource: dict) -> bytes:
    """The resource as JSON. orjson holds the GIL while it encodes, so a group's whole member list
    in one call (500,000 members: 97 MiB, a few hundred ms) would stop the event loop, though it
    runs on a reader thread: a long list is encoded a slice at a time, the GIL free between slices."""
    members = resource.get("members")
    if members is None or len(members) <= ENCODE_SLICE:
        return orjson.dumps(resource)
    # The resource with an empty list, split where the list's elements go. Members come after every
    # attribute of the document and before meta, whose values cannot hold a quote: the last
    # '"members":[' is the resource's own. The parts are joined once, in one copy.
    shell = orjson.dumps({**resource, "members": []})
    at = shell.rindex(b'"members":[]') + len(b'"members":[')
    parts = [shell[:at]]
    for start in range(0, len(members), ENCODE_SLICE):
        if start:
            parts.append(b",")
        parts.append(orjson.dumps(members[start : start + ENCODE_SLICE])[1:-1])
    parts.append(shell[at:])
    return b"".join(parts)


def encoded_response(body: bytes, headers: dict[str, str]) -> Response:
    """An encoded resource as the answer. A big one (a group's whole member list) goes to Starlette's
    Response as it is: ScimResponse would copy it once more, through orjson, on the event loop."""
    if len(body) < BIG_BODY_BYTES:
        return ScimResponse(orjson.Fragment(body), headers=headers)
    return Response(body, headers=headers, media_type=SCIM_JSON)


def _integer(value: object, name: str, default: int) -> int:
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


def _list_response(resources: list, total: int, start: int) -> dict:
    return {
        "schemas": [schemas.LIST_RESPONSE],
        "totalResults": total,
        "Resources": resources,
        "startIndex": start,
        "itemsPerPage": len(resources),
    }
