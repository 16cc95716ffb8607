"""Cursor paging (RFC 9865) from the outside: walks forward and back, cursors bound to their IdP and query,
tampered and expired cursors refused, a walk under concurrent writes, and what /ServiceProviderConfig says."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Tenant, entra_user
from tests.hardening.asgi import configured_tenant

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def create_users(tenant: Tenant, names: list[str], **extra: object) -> dict[str, str]:
    ids = {}
    for name in names:
        answer = await tenant.client.post("/Users", json=entra_user(name, **extra))
        assert answer.status_code == 201
        ids[name] = answer.json()["id"]
    return ids


async def walk(client: httpx.AsyncClient, count: int, **params: str) -> list[list[str]]:
    """Every page, following nextCursor from the empty cursor."""
    pages: list[list[str]] = []
    cursor = ""
    while True:
        answer = await client.get("/Users", params={"cursor": cursor, "count": str(count), **params})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "startIndex" not in body
        assert body["itemsPerPage"] == len(body["Resources"])
        pages.append([r["userName"] for r in body["Resources"]])
        if "nextCursor" not in body:
            return pages
        cursor = body["nextCursor"]


async def test_a_walk_goes_forward_and_back(tenant: Tenant) -> None:
    names = [f"walker{n:02}@contoso.com" for n in range(25)]
    await create_users(tenant, names)
    assert await walk(tenant.client, 10) == [names[:10], names[10:20], names[20:]]
    first = (await tenant.client.get("/Users", params={"cursor": "", "count": "10"})).json()
    assert first["totalResults"] == 25 and "previousCursor" not in first
    second = (await tenant.client.get("/Users", params={"cursor": first["nextCursor"], "count": "10"})).json()
    assert [r["userName"] for r in second["Resources"]] == names[10:20]
    back = (await tenant.client.get("/Users", params={"cursor": second["previousCursor"], "count": "10"})).json()
    assert [r["userName"] for r in back["Resources"]] == names[:10]
    assert "previousCursor" not in back and back["nextCursor"]
    # A search body takes the cursor too; the count may change between pages.
    searched = await tenant.client.post(
        "/Users/.search", json={"schemas": [SEARCH], "cursor": first["nextCursor"], "count": 3}
    )
    assert [r["userName"] for r in searched.json()["Resources"]] == names[10:13]


async def test_a_filtered_walk_and_groups(tenant: Tenant) -> None:
    await create_users(tenant, [f"a{n}@contoso.com" for n in range(5)], title="Keep")
    await create_users(tenant, [f"b{n}@contoso.com" for n in range(5)])
    pages = await walk(tenant.client, 2, filter='title eq "keep"', attributes="userName")
    assert pages == [["a0@contoso.com", "a1@contoso.com"], ["a2@contoso.com", "a3@contoso.com"], ["a4@contoso.com"]]
    for n in range(3):
        assert (await tenant.client.post("/Groups", json={"displayName": f"G{n}"})).status_code == 201
    groups = (await tenant.client.get("/Groups", params={"cursor": "", "count": "2"})).json()
    assert [g["displayName"] for g in groups["Resources"]] == ["G0", "G1"]
    rest = (await tenant.client.get("/Groups", params={"cursor": groups["nextCursor"], "count": "2"})).json()
    assert [g["displayName"] for g in rest["Resources"]] == ["G2"] and "nextCursor" not in rest


async def test_a_cursor_works_only_for_its_own_walk(tenant: Tenant) -> None:
    await create_users(tenant, [f"c{n}@contoso.com" for n in range(4)], title="x")
    page = (await tenant.client.get("/Users", params={"cursor": "", "count": "2", "filter": 'title eq "x"'})).json()
    cursor = page["nextCursor"]
    refusals = [
        ("/Users", {"cursor": cursor, "filter": 'title eq "y"'}),  # another filter
        ("/Users", {"cursor": cursor}),  # no filter
        ("/Groups", {"cursor": cursor}),  # another resource type
        # A character of the payload changed, then one of the signature (not its last: base64's spare bits).
        ("/Users", {"cursor": cursor[:3] + ("x" if cursor[3] != "x" else "y") + cursor[4:], "filter": 'title eq "x"'}),
        (
            "/Users",
            {"cursor": cursor[:-3] + ("x" if cursor[-3] != "x" else "y") + cursor[-2:], "filter": 'title eq "x"'},
        ),
        ("/Users", {"cursor": "not-a-cursor"}),
    ]
    for path, params in refusals:
        answer = await tenant.client.get(path, params=params)
        assert answer.status_code == 400, (path, params, answer.text)
        assert answer.json()["scimType"] == "invalidCursor", answer.json()
    key, secret = await tenant.store.create_api_key("other", "", True, True)
    other = await tenant.store.create_idp("other", "key", key.id)
    foreign = await tenant.client.get(
        f"https://scim.test/v1/scim/{other.id}/Users",
        params={"cursor": cursor, "filter": 'title eq "x"'},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert (foreign.status_code, foreign.json()["scimType"]) == (400, "invalidCursor")


async def test_cursor_requests_that_mix_paging_styles_are_refused(tenant: Tenant) -> None:
    for params in ({"cursor": "", "startIndex": "2"}, {"cursor": "", "sortBy": "userName"}):
        answer = await tenant.client.get("/Users", params=params)
        assert (answer.status_code, answer.json()["scimType"]) == (400, "invalidValue"), params
    number = await tenant.client.post("/Users/.search", json={"cursor": 5})
    assert (number.status_code, number.json()["scimType"]) == (400, "invalidValue")
    across = await tenant.client.post("/.search", json={"cursor": ""})
    assert (across.status_code, across.json()["scimType"]) == (400, "invalidValue")


async def test_an_expired_cursor_is_refused(database_url: str) -> None:
    async with configured_tenant(database_url, scim_cursor_timeout=1) as tenant:
        await create_users(tenant, ["e1@contoso.com", "e2@contoso.com"])
        page = (await tenant.client.get("/Users", params={"cursor": "", "count": "1"})).json()
        config = (await tenant.client.get("/ServiceProviderConfig")).json()
        assert config["pagination"]["cursorTimeout"] == 1
        await asyncio.sleep(2.2)
        answer = await tenant.client.get("/Users", params={"cursor": page["nextCursor"], "count": "1"})
        assert (answer.status_code, answer.json()["scimType"]) == (400, "expiredCursor")
        assert "cursor_timeout" in answer.json()["detail"]


async def test_a_walk_under_writes_meets_each_stable_user_once(tenant: Tenant) -> None:
    stable = await create_users(tenant, [f"s{n:02}@contoso.com" for n in range(30)])
    doomed = await create_users(tenant, [f"d{n:02}@contoso.com" for n in range(10)])
    seen: list[str] = []
    cursor = ""
    round_ = 0
    while True:
        body = (await tenant.client.get("/Users", params={"cursor": cursor, "count": "7"})).json()
        seen += [r["userName"] for r in body["Resources"]]
        # Between pages: create some, delete some not yet seen, and rename nothing.
        await create_users(tenant, [f"new{round_}-{n}@contoso.com" for n in range(3)])
        for name in list(doomed)[round_ * 2 : round_ * 2 + 2]:
            assert (await tenant.client.delete(f"/Users/{doomed[name]}")).status_code == 204
        round_ += 1
        if "nextCursor" not in body:
            break
        cursor = body["nextCursor"]
    assert len(seen) == len(set(seen))
    assert set(stable) <= set(seen)


async def test_service_provider_config_advertises_both_paging_methods(tenant: Tenant) -> None:
    config = (await tenant.client.get("/ServiceProviderConfig")).json()
    assert config["pagination"] == {
        "cursor": True,
        "index": True,
        "defaultPaginationMethod": "index",
        "defaultPageSize": 100,
        "maxPageSize": 1000,
        "cursorTimeout": 3600,
    }
