"""Groups and membership over HTTP through the ASGI app, on a real SQLite file."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import GROUP_SCHEMA, Tenant, entra_user, patch_body

MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


async def user(tenant: Tenant, name: str) -> str:
    response = await tenant.client.post("/Users", json=entra_user(name))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def group(tenant: Tenant, name: str, **extra: object) -> dict:
    response = await tenant.client.post(
        "/Groups",
        json={
            "schemas": [GROUP_SCHEMA, MS_GROUP],
            "externalId": str(uuid.uuid4()),
            "displayName": name,
            "meta": {"resourceType": "Group"},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def member_ids(tenant: Tenant, group_id: str) -> set[str]:
    body = (await tenant.client.get(f"/Groups/{group_id}")).json()
    return {m["value"] for m in body.get("members", [])}


async def test_create_group_as_entra_does(tenant: Tenant) -> None:
    created = await group(tenant, "Sales")
    assert created["schemas"] == [GROUP_SCHEMA]
    assert created["displayName"] == "Sales"
    assert created["members"] == []
    assert created["meta"]["resourceType"] == "Group"


async def test_test_connection_probe_on_groups(tenant: Tenant) -> None:
    response = await tenant.client.get(f"/Groups?excludedAttributes=members&filter=displayName+eq+%22{uuid.uuid4()}%22")
    assert response.status_code == 200
    assert response.json()["totalResults"] == 0 and response.json()["Resources"] == []


async def test_duplicate_display_name_any_case_is_409(tenant: Tenant) -> None:
    await group(tenant, "Sales")
    response = await tenant.client.post("/Groups", json={"displayName": "SALES"})
    assert response.status_code == 409
    assert response.json()["scimType"] == "uniqueness"


async def test_missing_display_name_is_400(tenant: Tenant) -> None:
    response = await tenant.client.post("/Groups", json={"schemas": [GROUP_SCHEMA]})
    assert response.status_code == 400
    assert "displayName" in response.json()["detail"]


async def test_filter_by_display_name_other_case_without_members(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    sales = await group(tenant, "Sales", members=[{"value": alice}])
    response = await tenant.client.get(
        "/Groups", params={"filter": 'displayName eq "sALES"', "excludedAttributes": "members"}
    )
    body = response.json()
    assert body["totalResults"] == 1
    assert body["Resources"][0]["id"] == sales["id"]
    assert "members" not in body["Resources"][0]
    one = (await tenant.client.get(f"/Groups/{sales['id']}?excludedAttributes=members")).json()
    assert "members" not in one and one["displayName"] == "Sales"


async def test_membership_patch_shapes(tenant: Tenant) -> None:
    ids = [await user(tenant, f"u{i}") for i in range(4)]
    sales = (await group(tenant, "Sales"))["id"]
    add = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"$ref": None, "value": i} for i in ids]}),
    )
    assert add.status_code == 204
    assert await member_ids(tenant, sales) == set(ids)
    # legacy remove with a value array removes only the listed member
    legacy = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": ids[0]}]}),
    )
    assert legacy.status_code == 204
    assert await member_ids(tenant, sales) == set(ids[1:])
    # aadOptscim062020 remove by value filter
    rfc = await tenant.client.patch(
        f"/Groups/{sales}?aadOptscim062020", json=patch_body({"op": "remove", "path": f'members[value eq "{ids[1]}"]'})
    )
    assert rfc.status_code == 204
    assert await member_ids(tenant, sales) == set(ids[2:])
    # add and remove of the same member in one PATCH, applied in order
    both = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body(
            {"op": "add", "path": "members", "value": [{"value": ids[0]}]},
            {"op": "remove", "path": "members", "value": [{"value": ids[0]}]},
        ),
    )
    assert both.status_code == 204
    assert await member_ids(tenant, sales) == set(ids[2:])
    # idempotent: adding an existing member, removing a non-member
    again = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body(
            {"op": "add", "path": "members", "value": [{"value": ids[2]}]},
            {"op": "remove", "path": "members", "value": [{"value": ids[0]}]},
        ),
    )
    assert again.status_code == 204
    assert await member_ids(tenant, sales) == set(ids[2:])
    # replace members with a list, then remove all
    replaced = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body({"op": "replace", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}),
    )
    assert replaced.status_code == 204
    assert await member_ids(tenant, sales) == {ids[0], ids[1]}
    cleared = await tenant.client.patch(f"/Groups/{sales}", json=patch_body({"op": "remove", "path": "members"}))
    assert cleared.status_code == 204
    assert await member_ids(tenant, sales) == set()


async def test_pathless_replace_of_display_name_and_external_id(tenant: Tenant) -> None:
    sales = (await group(tenant, "Sales"))["id"]
    response = await tenant.client.patch(
        f"/Groups/{sales}",
        json=patch_body(
            {"op": "replace", "value": {"displayName": "Sales EMEA"}},
            {"op": "replace", "value": {"externalId": "ext-1"}},
        ),
    )
    assert response.status_code == 204
    body = (await tenant.client.get(f"/Groups/{sales}")).json()
    assert body["displayName"] == "Sales EMEA" and body["externalId"] == "ext-1"


async def test_patch_answers_200_when_attributes_are_asked(tenant: Tenant) -> None:
    sales = (await group(tenant, "Sales"))["id"]
    response = await tenant.client.patch(
        f"/Groups/{sales}?excludedAttributes=members",
        json=patch_body({"op": "replace", "path": "displayName", "value": "Sales 2"}),
    )
    assert response.status_code == 200
    assert response.json()["displayName"] == "Sales 2"
    assert "members" not in response.json()


async def test_unknown_member_changes_nothing(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    sales = await group(tenant, "Sales")
    response = await tenant.client.patch(
        f"/Groups/{sales['id']}",
        json=patch_body(
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "add", "path": "members", "value": [{"value": alice}, {"value": "no-such-id"}]},
        ),
    )
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    assert "no-such-id" in response.json()["detail"]
    after = (await tenant.client.get(f"/Groups/{sales['id']}")).json()
    assert after == sales


async def test_members_show_display_type_and_ref(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    inner = await group(tenant, "Inner")
    outer = await group(tenant, "Outer", members=[{"value": alice}, {"value": inner["id"]}])
    members = {m["value"]: m for m in outer["members"]}
    assert members[alice]["type"] == "User" and members[alice]["display"] == "alice"
    assert members[alice]["$ref"] == f"{tenant.url}/Users/{alice}"
    assert members[inner["id"]]["type"] == "Group" and members[inner["id"]]["display"] == "Inner"


async def test_nested_groups_show_indirect_membership_and_cycles_terminate(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    inner = (await group(tenant, "Inner", members=[{"value": alice}]))["id"]
    outer = (await group(tenant, "Outer", members=[{"value": inner}]))["id"]
    # make a cycle: Inner contains Outer
    cycle = await tenant.client.patch(
        f"/Groups/{inner}", json=patch_body({"op": "add", "path": "members", "value": [{"value": outer}]})
    )
    assert cycle.status_code == 204
    body = (await tenant.client.get(f"/Users/{alice}")).json()
    kinds = {g["value"]: g["type"] for g in body["groups"]}
    assert kinds == {inner: "direct", outer: "indirect"}
    via_filter = (await tenant.client.get("/Users", params={"filter": f'groups.value eq "{outer}"'})).json()
    assert [r["id"] for r in via_filter["Resources"]] == [alice]


async def test_deleting_a_user_removes_it_from_groups_and_bumps_version(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    bob = await user(tenant, "bob")
    sales = await group(tenant, "Sales", members=[{"value": alice}, {"value": bob}])
    assert (await tenant.client.delete(f"/Users/{alice}")).status_code == 204
    after = (await tenant.client.get(f"/Groups/{sales['id']}")).json()
    assert {m["value"] for m in after["members"]} == {bob}
    assert after["meta"]["version"] != sales["meta"]["version"]


async def test_deleting_a_group_removes_it_from_parent_groups(tenant: Tenant) -> None:
    inner = (await group(tenant, "Inner"))["id"]
    outer = await group(tenant, "Outer", members=[{"value": inner}])
    assert (await tenant.client.delete(f"/Groups/{inner}")).status_code == 204
    after = (await tenant.client.get(f"/Groups/{outer['id']}")).json()
    assert after["members"] == []
    assert after["meta"]["version"] != outer["meta"]["version"]
    assert (await tenant.client.delete(f"/Groups/{inner}")).status_code == 404


async def test_reference_filters(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    bob = await user(tenant, "bob")
    sales = (await group(tenant, "Sales", members=[{"value": alice}]))["id"]
    for text, expected in [
        (f'id eq "{sales}" and members eq "{alice}"', 1),
        (f'id eq "{sales}" and members eq "{bob}"', 0),
        (f'members.value eq "{alice}"', 1),
    ]:
        body = (await tenant.client.get("/Groups", params={"filter": text, "excludedAttributes": "members"})).json()
        assert body["totalResults"] == expected, text


async def test_concurrent_member_adds_lose_nothing(tenant: Tenant) -> None:
    ids = [await user(tenant, f"c{i}") for i in range(20)]
    sales = (await group(tenant, "Sales"))["id"]
    responses = await asyncio.gather(
        *[
            tenant.client.patch(
                f"/Groups/{sales}", json=patch_body({"op": "add", "path": "members", "value": [{"value": i}]})
            )
            for i in ids
        ]
    )
    assert all(r.status_code == 204 for r in responses)
    assert await member_ids(tenant, sales) == set(ids)


async def test_put_group_replaces_members(tenant: Tenant) -> None:
    alice = await user(tenant, "alice")
    bob = await user(tenant, "bob")
    sales = await group(tenant, "Sales", members=[{"value": alice}])
    response = await tenant.client.put(
        f"/Groups/{sales['id']}", json={"schemas": [GROUP_SCHEMA], "displayName": "Sales", "members": [{"value": bob}]}
    )
    assert response.status_code == 200
    assert {m["value"] for m in response.json()["members"]} == {bob}


async def test_group_writes_need_the_groups_privilege(tenant: Tenant) -> None:
    key, secret = await tenant.store.create_api_key("users-only", "", True, False)
    await tenant.store.set_idp_api_key(tenant.idp_id, key.id)
    response = await tenant.client.post(
        "/Groups", json={"displayName": "X"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 403
