"""Users over HTTP through the ASGI app, on a real SQLite file."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import ENTERPRISE, USER_SCHEMA, Tenant, entra_user, patch_body

SCIM_JSON = "application/scim+json"


async def create(tenant: Tenant, user_name: str, **extra: object) -> dict:
    response = await tenant.client.post("/Users", json=entra_user(user_name, **extra))
    assert response.status_code == 201, response.text
    return response.json()


async def test_test_connection_filter_returns_empty_list(tenant: Tenant) -> None:
    response = await tenant.client.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "Resources": [],
        "startIndex": 1,
        "itemsPerPage": 0,
    }


async def test_create_returns_resource_location_and_etag(tenant: Tenant) -> None:
    response = await tenant.client.post("/Users", json=entra_user("alice@contoso.com"))
    assert response.status_code == 201
    body = response.json()
    assert body["userName"] == "alice@contoso.com"
    assert body["schemas"] == [USER_SCHEMA]  # no enterprise data was sent, so no extension schema
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"] == f"{tenant.url}/Users/{body['id']}"
    assert response.headers["location"] == body["meta"]["location"]
    assert response.headers["etag"] == body["meta"]["version"]
    assert body["phoneNumbers"] == [{"type": "work", "value": "+16175551212"}]
    assert "password" not in body
    again = await tenant.client.get(f"/Users/{body['id']}")
    assert again.status_code == 200
    assert again.json() == body


async def test_duplicate_user_name_in_other_case_is_409_uniqueness(tenant: Tenant) -> None:
    await create(tenant, "Bob@Contoso.com")
    response = await tenant.client.post("/Users", json=entra_user("bob@CONTOSO.com"))
    assert response.status_code == 409
    body = response.json()
    assert body["scimType"] == "uniqueness"
    assert body["status"] == "409"
    assert "bob@CONTOSO.com" in body["detail"]


async def test_missing_required_attributes_name_the_attribute(tenant: Tenant) -> None:
    body = entra_user("carol")
    del body["name"]["familyName"]
    response = await tenant.client.post("/Users", json=body)
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    assert "familyName" in response.json()["detail"]
    listing = await tenant.client.get("/Users")
    assert listing.json()["totalResults"] == 0


async def test_work_phone_must_be_e164(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/Users", json=entra_user("dave", phoneNumbers=[{"type": "work", "value": "617-555-1212"}])
    )
    assert response.status_code == 400
    error = response.json()
    assert error["scimType"] == "invalidValue"
    assert "617-555-1212" in error["detail"] and "+16175551212" in error["detail"]


async def test_get_unknown_id_is_404_scim_error(tenant: Tenant) -> None:
    response = await tenant.client.get("/Users/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_filter_is_case_insensitive_and_finds_disabled_users(tenant: Tenant) -> None:
    user = await create(tenant, "Erin@Contoso.com", active=False)
    response = await tenant.client.get("/Users", params={"filter": 'userName eq "erin@contoso.COM"'})
    assert response.json()["totalResults"] == 1
    assert response.json()["Resources"][0]["id"] == user["id"]
    assert response.json()["Resources"][0]["active"] is False


async def test_bad_filter_is_invalid_filter_not_empty(tenant: Tenant) -> None:
    for text in ['nosuch eq "x"', "userName eq", 'userName zz "x"', "active gt true"]:
        response = await tenant.client.get("/Users", params={"filter": text})
        assert response.status_code == 400, text
        assert response.json()["scimType"] == "invalidFilter"


async def test_paging_sorting_and_count_zero(tenant: Tenant) -> None:
    for i in range(7):
        await create(tenant, f"user{i}", title=f"t{6 - i}")
    page = (await tenant.client.get("/Users?startIndex=3&count=2&sortBy=userName")).json()
    assert page["totalResults"] == 7
    assert page["startIndex"] == 3
    assert page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["user2", "user3"]
    ordered = (await tenant.client.get("/Users?sortBy=title&sortOrder=descending")).json()
    assert [r["title"] for r in ordered["Resources"]] == [f"t{i}" for i in range(6, -1, -1)]
    only_total = (await tenant.client.get("/Users?count=0")).json()
    assert only_total["totalResults"] == 7
    assert only_total["Resources"] == []
    bad = await tenant.client.get("/Users?count=abc")
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidValue"


async def test_attributes_and_excluded_attributes(tenant: Tenant) -> None:
    user = await create(tenant, "frank")
    only = (await tenant.client.get(f"/Users/{user['id']}?attributes=name.givenName,emails")).json()
    assert set(only) == {"schemas", "id", "userName", "name", "emails"}
    assert only["name"] == {"givenName": "givenName"}
    without = (await tenant.client.get(f"/Users/{user['id']}?excludedAttributes=emails,phoneNumbers")).json()
    assert "emails" not in without and "phoneNumbers" not in without
    assert without["userName"] == "frank"


async def test_put_replaces_and_ignores_read_only(tenant: Tenant) -> None:
    user = await create(tenant, "gina")
    body = entra_user("gina", title="Engineer")
    del body["phoneNumbers"]
    body["id"] = user["id"]
    body["meta"] = {"created": "2000-01-01T00:00:00Z"}
    response = await tenant.client.put(f"/Users/{user['id']}", json=body)
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "Engineer"
    assert "phoneNumbers" not in updated
    assert updated["meta"]["created"] == user["meta"]["created"]
    assert updated["meta"]["version"] != user["meta"]["version"]
    wrong_id = await tenant.client.put(f"/Users/{user['id']}", json={**body, "id": "other"})
    assert wrong_id.status_code == 400 and wrong_id.json()["scimType"] == "mutability"


async def test_legacy_patch_dialect(tenant: Tenant) -> None:
    user = await create(tenant, "hank")
    response = await tenant.client.patch(
        f"/Users/{user['id']}",
        json=patch_body(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@contoso.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+16175550000"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "nickName", "value": "Babs"},
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["emails"][0]["value"] == "updated@contoso.com"
    assert body["name"]["familyName"] == "updatedFamilyName"
    assert body["phoneNumbers"] == [{"type": "work", "value": "+16175550000"}]
    assert body["active"] is False
    assert body["nickName"] == "Babs"
    assert (await tenant.client.get(f"/Users/{user['id']}")).json() == body


async def test_aad_opt_patch_dialect(tenant: Tenant) -> None:
    user = await create(tenant, "ivy")
    response = await tenant.client.patch(
        f"/Users/{user['id']}?aadOptscim062020",
        json=patch_body(
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@contoso.com"},
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                    "active": False,
                    f"{ENTERPRISE}:employeeNumber": "Aklq",
                },
            },
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["displayName"] == "Bjfe"
    assert body["name"]["givenName"] == "Kkom" and body["name"]["familyName"] == "Unua"
    assert "name.givenName" not in body
    assert body["active"] is False
    assert body[ENTERPRISE]["employeeNumber"] == "Aklq"
    assert ENTERPRISE in body["schemas"]


async def test_invalid_patch_changes_nothing(tenant: Tenant) -> None:
    user = await create(tenant, "jack")
    response = await tenant.client.patch(
        f"/Users/{user['id']}",
        json=patch_body(
            {"op": "Replace", "path": "title", "value": "Boss"},
            {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "not a phone"},
        ),
    )
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    assert (await tenant.client.get(f"/Users/{user['id']}")).json() == user


async def test_etags_if_match_and_if_none_match(tenant: Tenant) -> None:
    user = await create(tenant, "kate")
    version = user["meta"]["version"]
    not_modified = await tenant.client.get(f"/Users/{user['id']}", headers={"If-None-Match": version})
    assert not_modified.status_code == 304
    replace = patch_body({"op": "replace", "path": "title", "value": "A"})
    ok = await tenant.client.patch(f"/Users/{user['id']}", json=replace, headers={"If-Match": version})
    assert ok.status_code == 200
    stale = await tenant.client.patch(f"/Users/{user['id']}", json=replace, headers={"If-Match": version})
    assert stale.status_code == 412
    stale_delete = await tenant.client.delete(f"/Users/{user['id']}", headers={"If-Match": version})
    assert stale_delete.status_code == 412
    assert (await tenant.client.get(f"/Users/{user['id']}")).status_code == 200


async def test_concurrent_large_patches_of_one_user_lose_nothing(tenant: Tenant) -> None:
    """Large PATCHes are applied before the write, to the row as read: one that finds the row
    changed by another at its write is applied again, so each of these concurrent ones lands."""
    user = await create(tenant, "many-hands")
    attributes = ("emails", "ims", "photos", "entitlements", "roles", "x509Certificates")

    def values(attribute: str) -> list[dict]:
        return [{"value": f"{attribute}-{i}@example.com"} for i in range(70)]

    answers = await asyncio.gather(
        *(
            tenant.client.patch(
                f"/Users/{user['id']}", json=patch_body({"op": "add", "path": attribute, "value": values(attribute)})
            )
            for attribute in attributes
        )
    )
    assert [answer.status_code for answer in answers] == [200] * len(attributes)
    after = (await tenant.client.get(f"/Users/{user['id']}")).json()
    added = {attribute: len(after.get(attribute, [])) - len(user.get(attribute, [])) for attribute in attributes}
    assert added == dict.fromkeys(attributes, 70)
    assert after["meta"]["version"] == f'W/"{1 + len(attributes)}"'


async def test_concurrent_large_patches_with_one_if_match_one_wins(tenant: Tenant) -> None:
    user = await create(tenant, "one-wins")
    headers = {"If-Match": user["meta"]["version"]}
    bodies = [
        patch_body({"op": "add", "path": "emails", "value": [{"value": f"{n}-{i}@example.com"} for i in range(70)]})
        for n in ("first", "second")
    ]
    answers = await asyncio.gather(
        *(tenant.client.patch(f"/Users/{user['id']}", json=body, headers=headers) for body in bodies)
    )
    assert sorted(answer.status_code for answer in answers) == [200, 412]
    after = (await tenant.client.get(f"/Users/{user['id']}")).json()
    assert len(after["emails"]) == 1 + 70 and after["meta"]["version"] == 'W/"2"'


async def test_delete_then_404(tenant: Tenant) -> None:
    user = await create(tenant, "liam")
    assert (await tenant.client.delete(f"/Users/{user['id']}")).status_code == 204
    assert (await tenant.client.delete(f"/Users/{user['id']}")).status_code == 404
    assert (await tenant.client.get(f"/Users/{user['id']}")).status_code == 404


async def test_search_endpoint_takes_parameters_in_the_body(tenant: Tenant) -> None:
    await create(tenant, "mona")
    await create(tenant, "mike")
    response = await tenant.client.post(
        "/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "m"',
            "sortBy": "userName",
            "attributes": ["userName"],
            "count": 10,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert [r["userName"] for r in body["Resources"]] == ["mike", "mona"]
    assert set(body["Resources"][0]) == {"schemas", "id", "userName"}


async def test_auth_failures(tenant: Tenant) -> None:
    wrong = await tenant.client.get("/Users", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    missing = await tenant.client.get("/Users", headers={"Authorization": ""})
    assert missing.status_code == 401
    other_idp = await tenant.client.get(tenant.url.replace(tenant.idp_id, "unknownidp") + "/Users")
    assert other_idp.status_code == 401
    assert other_idp.json() == wrong.json()


async def test_privileges_are_enforced(tenant: Tenant) -> None:
    key, secret = await tenant.store.create_api_key("read-only", "", False, True)
    await tenant.store.set_idp_api_key(tenant.idp_id, key.id)
    headers = {"Authorization": f"Bearer {secret}"}
    denied = await tenant.client.post("/Users", json=entra_user("nina"), headers=headers)
    assert denied.status_code == 403
    assert (await tenant.client.get("/Users", headers=headers)).status_code == 200
    group = await tenant.client.post("/Groups", json={"displayName": "G"}, headers=headers)
    assert group.status_code == 201
    old_key = await tenant.client.get("/Users")
    assert old_key.status_code == 401  # the IdP is now bound to the other key


async def test_revoked_key_stops_working_at_once(tenant: Tenant) -> None:
    assert (await tenant.client.get("/Users")).status_code == 200
    await tenant.store.revoke_api_key("test")
    assert (await tenant.client.get("/Users")).status_code == 401


async def test_bad_bodies_are_clear_errors(tenant: Tenant) -> None:
    malformed = await tenant.client.post("/Users", content=b'{"userName": ', headers={"Content-Type": SCIM_JSON})
    assert malformed.status_code == 400 and malformed.json()["scimType"] == "invalidSyntax"
    array = await tenant.client.post("/Users", json=[1, 2])
    assert array.status_code == 400 and array.json()["scimType"] == "invalidSyntax"
    huge = await tenant.client.post(
        "/Users", content=b"{" + b" " * 2_000_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    wrong_type = await tenant.client.post("/Users", json=entra_user("olga", active=[1]))
    assert wrong_type.status_code == 400 and wrong_type.json()["scimType"] == "invalidValue"


async def test_content_types_accepted(tenant: Tenant) -> None:
    import json as jsonlib

    for i, content_type in enumerate(
        [
            "application/scim+json; charset=utf-8",
            "application/scim+json",
            "application/json",
            "application/json; charset=utf-8",
        ]
    ):
        response = await tenant.client.post(
            "/Users",
            content=jsonlib.dumps(entra_user(f"ct{i}")),
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        assert response.status_code == 201, content_type
        assert response.headers["content-type"].startswith(SCIM_JSON)


async def test_method_and_path_errors(tenant: Tenant) -> None:
    wrong_method = await tenant.client.delete("/Users")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == "405"
    unknown = await tenant.client.get("/Nope")
    assert unknown.status_code == 404
    assert unknown.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_unknown_query_parameters_are_ignored(tenant: Tenant) -> None:
    response = await tenant.client.get("/Users?aadOptscim062020&filter=userName+eq+%22x%22")
    assert response.status_code == 200
    assert response.json()["totalResults"] == 0
