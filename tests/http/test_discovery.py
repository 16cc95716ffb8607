"""Discovery endpoints: generated from the same schema definitions that validation uses."""

from __future__ import annotations

from tests.conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA, Tenant


def _no_nulls(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return True


async def test_service_provider_config_is_honest(tenant: Tenant) -> None:
    body = (await tenant.client.get("/ServiceProviderConfig")).json()
    assert body["patch"]["supported"] is True
    assert body["filter"] == {"supported": True, "maxResults": 1000}
    assert body["bulk"] == {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1048576}
    assert body["etag"]["supported"] is True
    assert body["sort"]["supported"] is True
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert _no_nulls(body)


async def test_schemas_list_marks_connector_required_attributes(tenant: Tenant) -> None:
    body = (await tenant.client.get("/Schemas")).json()
    assert body["totalResults"] == 3
    assert _no_nulls(body)
    by_id = {schema["id"]: schema for schema in body["Resources"]}
    assert set(by_id) == {USER_SCHEMA, ENTERPRISE, GROUP_SCHEMA}
    user = {attr["name"].lower(): attr for attr in by_id[USER_SCHEMA]["attributes"]}
    assert user["username"]["required"] is True
    assert user["name"]["required"] is True
    names = {sub["name"]: sub for sub in user["name"]["subAttributes"]}
    assert names["givenName"]["required"] and names["familyName"]["required"]
    for mapped in ("active", "phonenumbers", "emails"):
        assert mapped in user
    group = {attr["name"]: attr for attr in by_id[GROUP_SCHEMA]["attributes"]}
    assert group["displayName"]["required"] is True
    one = await tenant.client.get(f"/Schemas/{ENTERPRISE}")
    assert one.status_code == 200 and one.json()["id"] == ENTERPRISE
    assert (await tenant.client.get("/Schemas/urn:nope")).status_code == 404


async def test_resource_types(tenant: Tenant) -> None:
    body = (await tenant.client.get("/ResourceTypes")).json()
    assert {r["name"]: r["endpoint"] for r in body["Resources"]} == {"User": "/Users", "Group": "/Groups"}
    user = (await tenant.client.get("/ResourceTypes/User")).json()
    assert user["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert (await tenant.client.get("/ResourceTypes/Nope")).status_code == 404


async def test_discovery_needs_the_token(tenant: Tenant) -> None:
    response = await tenant.client.get("/Schemas", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
