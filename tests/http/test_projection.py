"""attributes and excludedAttributes (RFC 7644 §3.4.2.5) on a user with the enterprise extension:
attributes inside the extension, the extension (or the core schema) named by its URN, sub-attributes
of multi-valued attributes, and the lists a .search body carries."""

from __future__ import annotations

import pytest

from tests.conftest import ENTERPRISE, USER_SCHEMA, Tenant, entra_user

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ALWAYS = {"schemas", "id", "userName"}  # returned=always, whatever the client asks for


@pytest.fixture
async def user(tenant: Tenant) -> dict:
    body = entra_user("projected@contoso.com", **{ENTERPRISE: {"employeeNumber": "42", "department": "Sales"}})
    body["emails"].append({"type": "home", "value": "home@example.com"})
    response = await tenant.client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def fetch(tenant: Tenant, user: dict, query: str) -> dict:
    response = await tenant.client.get(f"/Users/{user['id']}?{query}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_attribute_of_the_extension_by_its_full_path(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, f"attributes={ENTERPRISE}:employeeNumber")
    assert set(got) == ALWAYS | {ENTERPRISE}
    assert got[ENTERPRISE] == {"employeeNumber": "42"}


async def test_the_extension_by_its_urn_is_all_of_it(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, f"attributes={ENTERPRISE}")
    assert set(got) == ALWAYS | {ENTERPRISE}
    assert got[ENTERPRISE] == {"employeeNumber": "42", "department": "Sales"}


async def test_excluding_the_extension_by_its_urn_drops_it_and_keeps_the_rest(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, f"excludedAttributes={ENTERPRISE}")
    assert ENTERPRISE not in got
    assert got["emails"] == user["emails"] and got["name"] == user["name"] and got["meta"] == user["meta"]


async def test_excluding_one_attribute_of_the_extension_keeps_its_others(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, f"excludedAttributes={ENTERPRISE}:department")
    assert got[ENTERPRISE] == {"employeeNumber": "42"}
    assert got["emails"] == user["emails"]


async def test_the_core_schema_urn_selects_nothing_beyond_what_is_always_returned(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, f"attributes={USER_SCHEMA}")
    assert set(got) == ALWAYS and got["userName"] == "projected@contoso.com"


async def test_a_sub_attribute_of_a_multi_valued_attribute_is_kept_in_every_value(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, "attributes=emails.value")
    assert got["emails"] == [{"value": "projected@contoso.com@testuser.com"}, {"value": "home@example.com"}]
    excluded = await fetch(tenant, user, "excludedAttributes=emails.type")
    assert excluded["emails"] == [
        {"value": "projected@contoso.com@testuser.com", "primary": True},
        {"value": "home@example.com"},
    ]


async def test_a_sub_attribute_no_value_has_leaves_the_attribute_out(tenant: Tenant, user: dict) -> None:
    got = await fetch(tenant, user, "attributes=emails.display")
    assert set(got) == ALWAYS


async def test_search_lists_of_names_project_like_the_query_string(tenant: Tenant, user: dict) -> None:
    response = await tenant.client.post(
        "/Users/.search",
        json={"schemas": [SEARCH], "attributes": ["userName", f"{ENTERPRISE}:department"], "filter": 'userName eq "x"'},
    )
    assert response.status_code == 200 and response.json()["totalResults"] == 0
    response = await tenant.client.post(
        "/Users/.search", json={"schemas": [SEARCH], "attributes": ["userName", f"{ENTERPRISE}:department"]}
    )
    assert response.status_code == 200, response.text
    (found,) = response.json()["Resources"]
    assert set(found) == ALWAYS | {ENTERPRISE} and found[ENTERPRISE] == {"department": "Sales"}


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("attributes", ["userName", 3], "attributes and excludedAttributes must be lists of attribute names"),
        ("excludedAttributes", [None], "attributes and excludedAttributes must be lists of attribute names"),
        ("attributes", 5, "attributes and excludedAttributes must be comma-separated attribute names"),
        ("excludedAttributes", {"userName": True}, "must be comma-separated attribute names"),
    ],
)
async def test_search_names_that_are_not_strings_are_a_400_that_says_so(
    tenant: Tenant, user: dict, field: str, value: object, detail: str
) -> None:
    response = await tenant.client.post("/Users/.search", json={"schemas": [SEARCH], field: value})
    assert response.status_code == 400
    error = response.json()
    assert error["scimType"] == "invalidValue" and detail in error["detail"]


async def test_an_extension_left_out_by_the_projection_leaves_schemas_too(tenant) -> None:
    created = await tenant.client.post("/Users", json=entra_user("schemas@x", **{ENTERPRISE: {"department": "R&D"}}))
    assert created.status_code == 201 and ENTERPRISE in created.json()["schemas"]
    user_id = created.json()["id"]
    for params in ({"excludedAttributes": ENTERPRISE}, {"attributes": "userName"}):
        body = (await tenant.client.get(f"/Users/{user_id}", params=params)).json()
        assert ENTERPRISE not in body and body["schemas"] == [USER_SCHEMA], (params, body)
    kept = (await tenant.client.get(f"/Users/{user_id}", params={"attributes": f"{ENTERPRISE}:department"})).json()
    assert kept[ENTERPRISE] == {"department": "R&D"} and ENTERPRISE in kept["schemas"]
