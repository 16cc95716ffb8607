"""Whole member lists and list pages sent in parts (web/scim/render.py group and list_parts, the
store's stream_members): byte for byte the JSON the whole resource or page encodes to, whatever the
group's size and the projection, with the same ETag, 304 and 404; big answers go out without being
held whole (no Content-Length for a streamed group), small ones as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from scim.errors import ScimError
from scim.patch import Member
from scim.project import parse_projection, project
from scim.resources import to_resource
from scim.schemas import ResourceType
from scim.tenant import tenant as tenant_schemas
from storage import LogQuery, MemberEncoder, MemberStream, Row
from storage.records import MEMBER_CHUNK
from tests.conftest import Tenant
from tests.hardening.asgi import configured_tenant
from web.observe import MAX_LOGGED_BODY
from web.scim.render import STREAM_PAST_BYTES, list_response
from web.scim.responses import BIG_BODY_BYTES

# Group sizes: none, a few, past one store slice (streamed), and exactly two slices (streamed).
SIZES = (0, 3, MEMBER_CHUNK + 5, 2 * MEMBER_CHUNK)
PROJECTIONS = [
    {},
    {"attributes": "members"},
    {"attributes": "displayName,members.value"},
    {"attributes": "members.display"},
    {"excludedAttributes": "members.display"},
    {"excludedAttributes": "meta,externalId"},
    {"excludedAttributes": "members"},
]


async def types_of(tenant: Tenant) -> dict[str, ResourceType]:
    config = (await tenant.store.get_idp(tenant.idp_id)).schema
    schemas = tenant_schemas(config.profile, config.strict, config.extensions)
    return {name: schemas.type_named(name) for name in ("User", "Group")}


async def users(tenant: Tenant, count: int) -> list[Row]:
    made: list[Row] = []
    for start in range(0, count, 500):
        made += await asyncio.gather(
            *(
                tenant.store.create("User", tenant.idp_id, {"userName": f"u{i:05d}@contoso.com", "active": True})
                for i in range(start, min(count, start + 500))
            )
        )
    return made


def expected(rtype: ResourceType, row: Row, tenant: Tenant, params: dict) -> bytes:
    """The resource as it was answered before streaming: the whole of it, projected, in one orjson call."""
    resource = to_resource(
        rtype,
        row.id,
        row.doc,
        version=row.version,
        created=row.created,
        modified=row.modified,
        base_url=tenant.url,
        members=row.members,
        groups=row.groups,
    )
    projection = parse_projection(rtype, params.get("attributes"), params.get("excludedAttributes"))
    return orjson.dumps(project(rtype, resource, projection))


async def asgi_get(tenant: Tenant, path: str) -> list[dict]:
    """The messages the app sends for a GET of `path` under the tenant URL, called as a server calls it."""
    url = httpx.URL(f"{tenant.url}{path}")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": url.path,
        "raw_path": url.raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"scim.test"), (b"authorization", f"Bearer {tenant.secret}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("scim.test", 443),
    }
    sent: list[dict] = []
    done = asyncio.Event()

    async def receive() -> dict:
        if not sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await tenant.app(scope, receive, send)
    done.set()
    return sent


@pytest.fixture
async def groups(tenant: Tenant) -> dict[int, str]:
    """A group of each of SIZES (members: users, and a nested group in the non-empty ones), by size."""
    people = await users(tenant, max(SIZES))
    nested = await tenant.store.create("Group", tenant.idp_id, {"displayName": "Nested"})
    made = {}
    for size in SIZES:
        members = [Member(u.id, "User") for u in people[: max(0, size - 1)]]
        if size:
            members.append(Member(nested.id, "Group"))
        row = await tenant.store.create(
            "Group", tenant.idp_id, {"displayName": f"Group of {size}", "externalId": f"ext-{size}"}, members
        )
        made[size] = row.id
    return made


async def test_a_group_reads_byte_for_byte_as_the_whole_resource_encodes(
    tenant: Tenant, groups: dict[int, str]
) -> None:
    rtype = (await types_of(tenant))["Group"]
    streamed_any = False
    for size, group_id in groups.items():
        row = await tenant.store.get("Group", tenant.idp_id, group_id)
        assert row is not None and len(row.members or []) == size
        for params in PROJECTIONS:
            response = await tenant.client.get(f"/Groups/{group_id}", params=params)
            assert response.status_code == 200, (size, params, response.text)
            assert response.headers["etag"] == f'W/"{row.version}"'
            assert response.headers["content-type"] == "application/scim+json"
            assert response.content == expected(rtype, row, tenant, params), (size, params)
            # A big answer is streamed, without Content-Length (chunked on the wire); the others keep theirs.
            streamed = len(response.content) > STREAM_PAST_BYTES
            assert ("content-length" in response.headers) is not streamed, (size, params)
            streamed_any = streamed_any or streamed
    assert streamed_any


async def test_a_streamed_group_keeps_if_none_match_and_404(tenant: Tenant, groups: dict[int, str]) -> None:
    group_id = groups[2 * MEMBER_CHUNK]
    first = await tenant.client.get(f"/Groups/{group_id}")
    etag = first.headers["etag"]
    unchanged = await tenant.client.get(f"/Groups/{group_id}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    other = await tenant.client.get(f"/Groups/{group_id}", headers={"If-None-Match": 'W/"999"'})
    assert other.status_code == 200 and other.content == first.content
    # The 304 and the full reads gave their readers back: a change is seen by the next read.
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}],
    }
    assert (await tenant.client.patch(f"/Groups/{group_id}", json=patch)).status_code == 204
    again = await tenant.client.get(f"/Groups/{group_id}", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] == 'W/"2"'
    assert again.json()["displayName"] == "Renamed" and len(again.json()["members"]) == 2 * MEMBER_CHUNK
    missing = await tenant.client.get("/Groups/00000000-0000-7000-8000-000000000000")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]


async def test_list_pages_read_byte_for_byte_as_the_whole_page_encodes(tenant: Tenant, groups: dict[int, str]) -> None:
    types = await types_of(tenant)
    rows = [await tenant.store.get("Group", tenant.idp_id, group_id) for group_id in groups.values()]
    nested = (await tenant.client.get("/Groups", params={"filter": 'displayName eq "Nested"'})).json()
    nested_row = await tenant.store.get("Group", tenant.idp_id, nested["Resources"][0]["id"])
    every = [nested_row, *rows]  # in creation order
    sizes = []
    for params in [{}, {"attributes": "members.value"}, {"count": "2", "startIndex": "2"}]:
        response = await tenant.client.get("/Groups", params=params)
        assert response.status_code == 200, response.text
        start, count = int(params.get("startIndex", 1)), int(params.get("count", 100))
        page = every[start - 1 : start - 1 + count]
        resources = [orjson.Fragment(expected(types["Group"], row, tenant, params)) for row in page]  # type: ignore[arg-type]
        assert response.content == orjson.dumps(list_response(resources, len(every), start)), params
        assert int(response.headers["content-length"]) == len(response.content)
        sizes.append(len(response.content))
    assert sizes[0] > BIG_BODY_BYTES  # the whole first page went out in parts
    searched = await tenant.client.post(
        "/Groups/.search",
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "excludedAttributes": ["meta"]},
    )
    resources = [
        orjson.Fragment(expected(types["Group"], row, tenant, {"excludedAttributes": "meta"})) for row in every
    ]  # type: ignore[arg-type]
    assert searched.content == orjson.dumps(list_response(resources, len(every), 1))
    user_page = await tenant.client.get("/Users", params={"count": "3", "sortBy": "userName"})
    user_rows = [await tenant.store.get("User", tenant.idp_id, r["id"]) for r in user_page.json()["Resources"]]
    resources = [orjson.Fragment(expected(types["User"], row, tenant, {})) for row in user_rows]  # type: ignore[arg-type]
    assert user_page.content == orjson.dumps(list_response(resources, max(SIZES), 1))


async def test_the_provisioning_record_of_a_streamed_group_keeps_the_start_of_its_answer(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        people = await users(tenant, MEMBER_CHUNK + 5)
        group = await tenant.store.create(
            "Group", tenant.idp_id, {"displayName": "Logged"}, [Member(u.id, "User") for u in people]
        )
        response = await tenant.client.get(f"/Groups/{group.id}")
        assert response.status_code == 200 and "content-length" not in response.headers
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(idp_id=tenant.idp_id, operation="Get Group"))
    assert [(r.status, r.resource_id) for r in records] == [(200, group.id)]
    assert records[0].response_body == response.text[:MAX_LOGGED_BODY] + "…"


async def test_a_store_failure_mid_stream_cuts_the_answer_off_and_the_record_says_why(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        people = await users(tenant, 3 * MEMBER_CHUNK)
        group = await tenant.store.create(
            "Group", tenant.idp_id, {"displayName": "Failing"}, [Member(u.id, "User") for u in people]
        )
        real = tenant.store.stream_members
        closed: list[bool] = []

        async def failing(idp_id: str, group_id: str, encode: MemberEncoder) -> MemberStream | None:
            stream = await real(idp_id, group_id, encode)
            assert stream is not None

            async def chunks() -> AsyncIterator[bytes]:
                yield await anext(stream.chunks)
                yield await anext(stream.chunks)
                raise ScimError(503, "The database cannot be reached (ConnectionResetError); retry")

            async def release() -> None:
                closed.append(True)
                await stream.aclose()

            return MemberStream(stream.row, chunks(), release)

        tenant.store.stream_members = failing  # type: ignore[method-assign]
        sent = await asgi_get(tenant, f"/Groups/{group.id}")
        # The status line went out before the failure: the body is never ended (no last message
        # without more_body), so the server drops the connection and the client sees it cut off.
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
        assert b"content-length" not in dict(sent[0]["headers"])
        bodies = sent[1:]
        assert len(bodies) == 2 and all(m["type"] == "http.response.body" and m["more_body"] for m in bodies)
        assert bodies[0]["body"].startswith(b'{"schemas":')
        assert closed == [True]
        tenant.store.stream_members = real  # type: ignore[method-assign]
        whole = await tenant.client.get(f"/Groups/{group.id}")
        assert len(whole.json()["members"]) == 3 * MEMBER_CHUNK
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(idp_id=tenant.idp_id, operation="Get Group"))
    cut = records[-1]  # newest first: the failed read is the older one
    assert cut.status == 200 and cut.detail is not None and "cannot be reached" in cut.detail
    assert records[0].detail is None
