"""Paging the way Entra's validator does it, and the discovery documents Entra reads."""

from __future__ import annotations

import httpx

from tests.conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA
from tests.entra.shapes import LIST_RESPONSE, create_user, unique

PAGE = 5


def test_paging_like_entras_validator(http: httpx.Client) -> None:
    prefix = unique("pager")
    mine = {create_user(http, f"{prefix}-{i}@contoso.com")["id"] for i in range(13)}
    seen: list[str] = []
    start, total = 1, None
    while True:
        response = http.get(f"/Users?startIndex={start}&count={PAGE}")
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["schemas"] == [LIST_RESPONSE]
        assert page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"]) <= PAGE
        total = page["totalResults"] if total is None else total
        assert page["totalResults"] == total
        seen += [resource["id"] for resource in page["Resources"]]
        start += len(page["Resources"])
        if not page["Resources"] or start > total:
            break
    assert len(seen) == len(set(seen)) == total  # no user twice, none skipped
    assert mine <= set(seen)


def test_paging_through_a_filter_and_past_the_end(http: httpx.Client) -> None:
    prefix = unique("filtered-pager")
    ids = [create_user(http, f"{prefix}-{i}@contoso.com")["id"] for i in range(7)]
    query = f"filter=userName+sw+%22{prefix}%22&sortBy=userName"
    first = http.get(f"/Users?{query}&startIndex=1&count=5").json()
    second = http.get(f"/Users?{query}&startIndex=6&count=5").json()
    assert first["totalResults"] == second["totalResults"] == 7
    assert (first["itemsPerPage"], second["itemsPerPage"]) == (5, 2)
    assert [r["id"] for r in first["Resources"] + second["Resources"]] == ids
    beyond = http.get(f"/Users?{query}&startIndex=50&count=5").json()
    assert beyond["startIndex"] == 50 and beyond["Resources"] == [] and beyond["totalResults"] == 7


def test_count_zero_returns_only_the_total(http: httpx.Client) -> None:
    prefix = unique("counted")
    for i in range(3):
        create_user(http, f"{prefix}-{i}@contoso.com")
    page = http.get(f"/Users?filter=userName+sw+%22{prefix}%22&count=0").json()
    assert page["totalResults"] == 3
    assert page.get("Resources", []) == [] and page["itemsPerPage"] == 0


def _attributes(schema: dict) -> dict[str, dict]:
    return {attribute["name"].lower(): attribute for attribute in schema["attributes"]}


def _no_nulls(value: object, where: str = "") -> None:
    assert value is not None, f"null at {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nulls(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nulls(item, f"{where}[{index}]")


def test_schemas_carry_every_mapped_attribute(http: httpx.Client, profile: str) -> None:
    response = http.get("/Schemas")
    assert response.status_code == 200
    listing = response.json()
    assert listing["schemas"] == [LIST_RESPONSE]
    _no_nulls(listing)
    schemas = {schema["id"]: schema for schema in listing["Resources"]}
    user, group = _attributes(schemas[USER_SCHEMA]), _attributes(schemas[GROUP_SCHEMA])
    # Entra matches names case-insensitively; its table spells the phone path "phonenumbers".
    assert user["username"]["required"] is True
    assert user["active"]["type"] == "boolean"
    assert {"value", "type"} <= {sub["name"].lower() for sub in user["phonenumbers"]["subAttributes"]}
    # The connector requires both names; RFC 7643 alone requires neither (each tenant says its own rules).
    connector = profile == "meta-networks"
    assert user["name"]["required"] is connector
    name = {sub["name"].lower(): sub for sub in user["name"]["subAttributes"]}
    assert name["givenname"]["required"] is connector and name["familyname"]["required"] is connector
    assert "emails" in user
    assert "manager" in _attributes(schemas[ENTERPRISE])
    assert group["displayname"]["required"] is True
    assert group["members"]["type"] == "complex"
    for urn in (USER_SCHEMA, ENTERPRISE, GROUP_SCHEMA):
        one = http.get(f"/Schemas/{urn}")
        assert one.status_code == 200 and one.json()["id"] == urn


def test_resource_types_and_service_provider_config_exist(http: httpx.Client) -> None:
    types = http.get("/ResourceTypes").json()
    _no_nulls(types)
    assert {t["name"]: t["endpoint"] for t in types["Resources"]} == {"User": "/Users", "Group": "/Groups"}
    config = http.get("/ServiceProviderConfig").json()
    _no_nulls(config)
    assert config["patch"]["supported"] is True and config["filter"]["supported"] is True
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
