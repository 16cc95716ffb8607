"""Searching users and groups at once (RFC 7644 §3.4.3 POST /.search, §3.4.2 GET at the tenant root):
filters over attributes of one type or both, paging across the types, sorting merged, projection."""

from __future__ import annotations

from tests.conftest import Tenant, entra_user

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def seed(tenant: Tenant) -> dict[str, str]:
    """Three users (one with a title, displayNames b and d, one without) and two groups (a and c)."""
    ids = {}
    for name, extra in (
        ("ann@contoso.com", {"displayName": "b Ann", "title": "Engineer"}),
        ("ben@contoso.com", {"displayName": "D Ben"}),
        ("cal@contoso.com", {}),
    ):
        ids[name] = (await tenant.client.post("/Users", json=entra_user(name, **extra))).json()["id"]
    for name, members in (("a Admins", [ids["ann@contoso.com"]]), ("C Crew", [])):
        body = {"displayName": name, "members": [{"value": m} for m in members]}
        ids[name] = (await tenant.client.post("/Groups", json=body)).json()["id"]
    return ids


async def search(tenant: Tenant, **params: object) -> dict:
    answer = await tenant.client.post("/.search", json={"schemas": [SEARCH], **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def names(body: dict) -> list[str]:
    return [r.get("userName") or r.get("displayName") for r in body["Resources"]]


async def test_every_user_then_every_group_paged_across_the_boundary(tenant: Tenant) -> None:
    await seed(tenant)
    everything = await search(tenant)
    assert everything["totalResults"] == 5
    assert names(everything) == ["ann@contoso.com", "ben@contoso.com", "cal@contoso.com", "a Admins", "C Crew"]
    assert [r["meta"]["resourceType"] for r in everything["Resources"]] == ["User"] * 3 + ["Group"] * 2
    window = await search(tenant, startIndex=3, count=2)
    assert (window["totalResults"], window["startIndex"], window["itemsPerPage"]) == (5, 3, 2)
    assert names(window) == ["cal@contoso.com", "a Admins"]
    last = await search(tenant, startIndex=5, count=10)
    assert names(last) == ["C Crew"]
    beyond = await search(tenant, startIndex=9)
    assert (beyond["totalResults"], beyond["Resources"]) == (5, [])
    totals = await search(tenant, count=0)
    assert (totals["totalResults"], totals["Resources"]) == (5, [])


async def test_filters_on_attributes_of_one_type_or_both(tenant: Tenant) -> None:
    ids = await seed(tenant)
    assert names(await search(tenant, filter='userName sw "b"')) == ["ben@contoso.com"]
    # displayName is an attribute of both types.
    assert names(await search(tenant, filter='displayName sw "a" or displayName sw "b"')) == [
        "ann@contoso.com",
        "a Admins",
    ]
    # title is no group's: unassigned there, so `pr` is false and its negation true for every group.
    assert names(await search(tenant, filter="title pr")) == ["ann@contoso.com"]
    assert names(await search(tenant, filter="not (title pr)")) == [
        "ben@contoso.com",
        "cal@contoso.com",
        "a Admins",
        "C Crew",
    ]
    member = await search(tenant, filter=f'members.value eq "{ids["ann@contoso.com"]}"')
    assert names(member) == ["a Admins"]
    created = await search(tenant, filter='meta.resourceType eq "Group"')
    assert names(created) == ["a Admins", "C Crew"]


async def test_an_attribute_of_no_type_is_invalid_filter(tenant: Tenant) -> None:
    await seed(tenant)
    for text in ('nickname2 eq "x"', 'userName eq "a" or shoeSize gt 3', "emails[kind eq 1]"):
        answer = await tenant.client.post("/.search", json={"schemas": [SEARCH], "filter": text})
        assert answer.status_code == 400, text
        assert answer.json()["scimType"] == "invalidFilter"
        assert "no resource type searched (User, Group) has it" in answer.json()["detail"]
    typed = await tenant.client.post("/.search", json={"filter": 'active eq "yes"'})
    assert (typed.status_code, typed.json()["scimType"]) == (400, "invalidFilter")


async def test_sorted_results_merge_both_types(tenant: Tenant) -> None:
    await seed(tenant)
    ascending = await search(tenant, sortBy="displayName")
    # Letter case aside: a, b, C, D; the user without a displayName last.
    assert names(ascending) == ["a Admins", "ann@contoso.com", "C Crew", "ben@contoso.com", "cal@contoso.com"]
    descending = await search(tenant, sortBy="displayName", sortOrder="descending")
    assert names(descending) == ["ben@contoso.com", "C Crew", "ann@contoso.com", "a Admins", "cal@contoso.com"]
    window = await search(tenant, sortBy="displayName", startIndex=2, count=2)
    assert (window["totalResults"], names(window)) == (5, ["ann@contoso.com", "C Crew"])
    # userName is no group's: groups sort as absent, last, in creation order.
    by_user_name = await search(tenant, sortBy="userName", sortOrder="descending")
    assert names(by_user_name) == ["cal@contoso.com", "ben@contoso.com", "ann@contoso.com", "a Admins", "C Crew"]
    created = await search(tenant, sortBy="meta.created")
    assert names(created) == names(await search(tenant))
    nowhere = await tenant.client.post("/.search", json={"sortBy": "shoeSize"})
    assert (nowhere.status_code, nowhere.json()["scimType"]) == (400, "invalidValue")
    deep = await tenant.client.post("/.search", json={"sortBy": "displayName", "startIndex": 1990, "count": 20})
    assert (deep.status_code, deep.json()["scimType"]) == (400, "tooMany")


async def test_projection_and_the_root_get(tenant: Tenant) -> None:
    await seed(tenant)
    projected = await search(tenant, attributes=["userName", "displayName"], filter="displayName pr")
    for resource in projected["Resources"]:
        allowed = (
            {"id", "schemas", "userName", "displayName", "meta"}
            if "userName" in resource
            else {
                "id",
                "schemas",
                "displayName",
                "meta",
            }
        )
        assert set(resource) <= allowed
        assert "displayName" in resource
    excluded = await search(tenant, excludedAttributes="members,emails")
    assert all("members" not in r and "emails" not in r for r in excluded["Resources"])
    root = await tenant.client.get("", params={"filter": 'displayName sw "c"', "sortBy": "displayName"})
    assert root.status_code == 200
    assert root.headers["content-type"] == "application/scim+json"
    assert names(root.json()) == ["C Crew"]
    assert (await tenant.client.get("/", params={"count": "0"})).json()["totalResults"] == 5
    assert (await tenant.client.get("/.search")).status_code == 405
    assert (await tenant.client.delete("")).status_code == 405


async def test_bad_root_searches_get_scim_errors(tenant: Tenant) -> None:
    for listed in (["urn:x"], True, "urn:x", {"a": 1}):
        for path in ("/.search", "/Users/.search"):
            wrong_schema = await tenant.client.post(path, json={"schemas": listed})
            assert (wrong_schema.status_code, wrong_schema.json()["scimType"]) == (400, "invalidSyntax"), listed
    for body in ({"filter": 3}, {"sortOrder": "up"}, {"count": "many"}, {"startIndex": True}):
        answer = await tenant.client.post("/.search", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["detail"]
    unauthenticated = await tenant.client.get("", headers={"Authorization": "Bearer nope"})
    assert unauthenticated.status_code == 401
