"""Resources as the client reads them: stored rows rendered as SCIM resources, projected, encoded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response

from scim import schemas
from scim.project import Projection, project
from scim.resources import etag, member_references, to_resource
from scim.schemas import ResourceType
from storage import Encoder, MemberEncoder, MemberStream, Row
from web.scim.request import ScimRequest
from web.scim.responses import ScimResponse, StreamedResponse, chained, encoded_response

ENCODE_SLICE = 5000  # members encoded in one orjson call: a few ms
# A group's answer held up to this size is sent whole, with its Content-Length; past it, the rest
# is streamed as the store reads it (a full slice of MEMBER_CHUNK members is about 400 KB).
STREAM_PAST_BYTES = 256 * 1024


class Renderer:
    """Renders rows under the server's public base URL (meta.location, Location)."""

    def __init__(self, base_url: str) -> None:
        self.public_url = base_url

    def base_url(self, request: ScimRequest) -> str:
        """The tenant URL of the request's IdP."""
        return f"{self.public_url}/v1/scim/{request.path_params['idp']}"

    def resource(self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection) -> dict:
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
        """resource() as JSON, for the store to run where it reads the rows: a page, or a group's
        full member list, is built and encoded on a reader thread, not on the event loop."""
        return lambda row: encode_resource(self.resource(request, rtype, row, projection))

    def member_encoder(self, request: ScimRequest, rtype: ResourceType, projection: Projection) -> MemberEncoder:
        """A slice of a group's members as its answer lists them: the JSON of the projected list's
        elements, without its brackets (b"" when the projection keeps none of them), for the
        store to run where it reads them."""
        base_url = self.base_url(request)

        def encode(members: list[dict]) -> bytes:
            kept = project(rtype, {"members": member_references(members, base_url)}, projection).get("members")
            return orjson.dumps(kept)[1:-1] if kept else b""

        return encode

    async def group(
        self, request: ScimRequest, rtype: ResourceType, stream: MemberStream, projection: Projection
    ) -> Response:
        """A group with its members as the answer, byte for byte what resource() encodes, without
        holding it whole: the parts up to STREAM_PAST_BYTES are held (a group of a few thousand
        members is answered whole, with its Content-Length), the rest is streamed as the store
        reads it. The answer owns the stream from then on (it closes it when sent); until then
        the caller closes it when this raises."""
        headers = {"ETag": etag(stream.row.version)}
        parts = framed_members(*self.member_frame(request, rtype, stream.row, projection), stream.chunks)
        held: list[bytes] = []
        size = 0
        async for part in parts:
            held.append(part)
            size += len(part)
            if size > STREAM_PAST_BYTES:
                return StreamedResponse(chained(held, parts), headers, close=stream.aclose)
        await stream.aclose()
        return encoded_response(b"".join(held), headers)

    def member_frame(
        self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection
    ) -> tuple[bytes, bytes, bytes]:
        """The group's JSON around its members' elements: what comes before the first, what comes
        after the last, and the whole answer when none is listed. Members come where to_resource
        puts them: after the document's attributes, before meta."""
        bare = self.resource(request, rtype, row, projection)  # row.members is None: no members key
        framed: dict = {}
        for key, value in bare.items():
            if key == "meta":
                framed["members"] = []
            framed[key] = value
        framed.setdefault("members", [])
        shell = orjson.dumps(framed)
        # The last '"members":[]' is the group's own (see encode_resource).
        at = shell.rindex(b'"members":[]') + len(b'"members":[')
        listed_empty = "members" in project(rtype, {"members": []}, projection)
        return shell[:at], shell[at:], shell if listed_empty else orjson.dumps(bare)

    def single(
        self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection, status: int = 200
    ) -> ScimResponse:
        """One resource as the answer, with its ETag, and its Location when it was just created."""
        headers = {"ETag": etag(row.version)}
        if status == 201:
            headers["Location"] = f"{self.base_url(request)}{rtype.endpoint}/{row.id}"
            request.resource_id = row.id
        return ScimResponse(self.resource(request, rtype, row, projection), status_code=status, headers=headers)

    def written(
        self, request: ScimRequest, rtype: ResourceType, row: Row, projection: Projection, loaded: bool
    ) -> Response:
        """The answer to a PUT or PATCH that was applied: the resource, or, for a user in more groups
        than an answer lists (scim.max_user_groups), no body (RFC 7644 §3.5.2) with its ETag."""
        if loaded and rtype.name == "User" and row.groups is None:
            return Response(status_code=204, headers={"ETag": etag(row.version)})
        return self.single(request, rtype, row, projection)


def loads_references(rtype: ResourceType, projection: Projection) -> bool:
    """Whether member rows (groups) or memberships (users) must be read for this answer."""
    return projection.wants("members" if rtype.name == "Group" else "groups")


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


async def framed_members(
    prefix: bytes, suffix: bytes, unlisted: bytes, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The group's answer in parts, around its members' encoded chunks (see member_frame); a chunk
    the projection left empty adds nothing."""
    started = False
    async for chunk in chunks:
        if chunk:
            yield (b"," if started else prefix) + chunk
            started = True
    yield suffix if started else unlisted


def list_parts(encoded: list[bytes], total: int, start: int | None, cursors: dict | None = None) -> list[bytes]:
    """A ListResponse (RFC 7644 §3.4.2) of encoded resources, as the parts of its JSON, in
    list_response's key order: nothing is joined into one body here."""
    head = orjson.dumps({"schemas": [schemas.LIST_RESPONSE], "totalResults": total, "Resources": []})
    parts = [head[:-2]]
    parts += [resource if not index else b"," + resource for index, resource in enumerate(encoded)]
    parts.append(b"]," + orjson.dumps(_page_tail(len(encoded), start, cursors))[1:])
    return parts


def list_response(resources: list, total: int, start: int | None, cursors: dict | None = None) -> dict:
    """A ListResponse (RFC 7644 §3.4.2) of one page: of an index walk (`start`, its startIndex), or
    of a cursor walk (`cursors`: its nextCursor and previousCursor, RFC 9865 §2.2)."""
    return {
        "schemas": [schemas.LIST_RESPONSE],
        "totalResults": total,
        "Resources": resources,
        **_page_tail(len(resources), start, cursors),
    }


def _page_tail(count: int, start: int | None, cursors: dict | None) -> dict:
    if start is not None:
        return {"startIndex": start, "itemsPerPage": count}
    return {"itemsPerPage": count, **(cursors or {})}
