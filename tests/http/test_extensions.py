"""Per-IdP schemas over HTTP, on each backend: a profile's rules, declared extension attributes
written in every form Entra sends them, read back, filtered, sorted, projected and advertised, a
strict tenant's refusals, server uniqueness, and a declaration changed under stored values."""

from __future__ import annotations

import json

from scim.extensions import parse_declarations
from storage import SchemaConfig
from tests.conftest import Tenant, entra_user, patch_body

ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
ACME_GROUP = "urn:ietf:params:scim:schemas:extension:Acme:2.0:Group"
DECLARED = [
    {
        "id": ACME,
        "attributes": [
            {"name": "costCenter"},
            {"name": "badge", "type": "integer", "uniqueness": "server"},
            {"name": "remote", "type": "boolean"},
            {"name": "hired", "type": "dateTime"},
            {"name": "pin", "returned": "never"},
        ],
    },
    {"id": ACME_GROUP, "resourceType": "Group", "attributes": [{"name": "budget", "type": "decimal"}]},
]


async def configure(
    tenant: Tenant, profile: str = "rfc7643", strict: bool = False, declared: list | None = None
) -> None:
    extensions = json.dumps(parse_declarations(DECLARED if declared is None else declared))
    await tenant.store.set_idp_schema(tenant.idp_id, SchemaConfig(profile, strict, extensions))


async def created(tenant: Tenant, body: dict) -> dict:
    response = await tenant.client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_rfc7643_takes_what_the_connector_refuses_and_says_so_in_schemas(tenant: Tenant) -> None:
    loose = {"userName": "loose@x", "phoneNumbers": [{"type": "work", "value": "312-320-0932"}]}
    refused = await tenant.client.post("/Users", json=loose)
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"  # meta-networks, the default
    core = (await tenant.client.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")).json()
    name = next(a for a in core["attributes"] if a["name"] == "name")
    assert {s["name"]: s["required"] for s in name["subAttributes"]}["familyName"] is True
    await configure(tenant, declared=[])
    user = await created(tenant, loose)
    assert user["phoneNumbers"] == [{"type": "work", "value": "312-320-0932"}] and "name" not in user
    core = (await tenant.client.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")).json()
    name = next(a for a in core["attributes"] if a["name"] == "name")
    assert not any(s["required"] for s in name["subAttributes"])
    assert [a["name"] for a in core["attributes"] if a["required"]] == ["userName"]


async def test_declared_attributes_in_every_entra_form_are_stored_and_read_back(tenant: Tenant) -> None:
    await configure(tenant)
    # A container, and Entra's path-less URN-qualified keys with strings for numbers and booleans.
    user = await created(
        tenant,
        {
            **entra_user("a@x"),
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ACME],
            f"{ACME}:costCenter": "42",
            f"{ACME}:badge": "7",
            f"{ACME}:remote": "True",
            ACME: {"hired": "2024-03-01T09:00:00+01:00", "pin": "1234"},
        },
    )
    assert user[ACME] == {"costCenter": "42", "badge": 7, "remote": True, "hired": "2024-03-01T08:00:00.000Z"}
    assert ACME in user["schemas"]
    # Both PATCH dialects: the legacy one names the path, aadOptscim062020 sends path-less values.
    legacy = patch_body({"op": "Replace", "path": f"{ACME}:costCenter", "value": "43"})
    assert (await tenant.client.patch(f"/Users/{user['id']}", json=legacy)).status_code in (200, 204)
    modern = patch_body({"op": "replace", "value": {f"{ACME}:remote": "False", f"{ACME}:badge": 8}})
    assert (await tenant.client.patch(f"/Users/{user['id']}", json=modern)).status_code in (200, 204)
    read = (await tenant.client.get(f"/Users/{user['id']}")).json()
    assert read[ACME] == {"costCenter": "43", "badge": 8, "remote": False, "hired": "2024-03-01T08:00:00.000Z"}
    only = (await tenant.client.get(f"/Users/{user['id']}", params={"attributes": f"{ACME}:badge"})).json()
    assert only[ACME] == {"badge": 8} and "name" not in only
    without = (await tenant.client.get(f"/Users/{user['id']}", params={"excludedAttributes": ACME})).json()
    assert ACME not in without and ACME not in without["schemas"]
    bad = await tenant.client.post("/Users", json={"userName": "b@x", f"{ACME}:badge": "seven"})
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidValue" and "badge" in bad.json()["detail"]


async def test_declared_attributes_filter_and_sort_in_the_database(tenant: Tenant) -> None:
    await configure(tenant)
    for name, center, badge in (("c@x", "200", 3), ("a@x", "100", 1), ("b@x", "300", 2), ("d@x", None, None)):
        extension = {k: v for k, v in (("costCenter", center), ("badge", badge)) if v is not None}
        await created(tenant, {"userName": name, **({ACME: extension} if extension else {})})
    page = (await tenant.client.get("/Users", params={"filter": f'{ACME}:costCenter ge "200"'})).json()
    assert sorted(r["userName"] for r in page["Resources"]) == ["b@x", "c@x"]
    page = (await tenant.client.get("/Users", params={"filter": "badge lt 3", "sortBy": f"{ACME}:badge"})).json()
    assert [r["userName"] for r in page["Resources"]] == ["a@x", "b@x"]  # an extension's attribute, unqualified
    page = (
        await tenant.client.get("/Users", params={"sortBy": f"{ACME}:costCenter", "sortOrder": "descending"})
    ).json()
    assert [r["userName"] for r in page["Resources"]] == ["b@x", "c@x", "a@x", "d@x"]  # absent last
    undeclared = await tenant.client.get("/Users", params={"filter": f'{ACME}:shoeSize eq "9"'})
    assert undeclared.status_code == 400 and undeclared.json()["scimType"] == "invalidFilter"


async def test_schemas_and_resource_types_advertise_the_declared_extensions(tenant: Tenant) -> None:
    await configure(tenant)
    listed = (await tenant.client.get("/Schemas")).json()
    assert ACME in [s["id"] for s in listed["Resources"]] and ACME_GROUP in [s["id"] for s in listed["Resources"]]
    acme = (await tenant.client.get(f"/Schemas/{ACME}")).json()
    badge = next(a for a in acme["attributes"] if a["name"] == "badge")
    assert (badge["type"], badge["uniqueness"], badge["multiValued"]) == ("integer", "server", False)
    user_type = (await tenant.client.get("/ResourceTypes/User")).json()
    assert {"schema": ACME, "required": False} in user_type["schemaExtensions"]
    group_type = (await tenant.client.get("/ResourceTypes/Group")).json()
    assert group_type["schemaExtensions"] == [{"schema": ACME_GROUP, "required": False}]
    group = await tenant.client.post("/Groups", json={"displayName": "g", ACME_GROUP: {"budget": "12.5"}})
    assert group.status_code == 201 and group.json()[ACME_GROUP] == {"budget": 12.5}


async def test_a_strict_tenant_refuses_what_it_does_not_keep_and_a_lenient_one_ignores_it(tenant: Tenant) -> None:
    await configure(tenant)
    body = {"userName": "s@x", "favouriteColour": "blue", "urn:example:other:1.0:User:shoeSize": "9"}
    lenient = await created(tenant, body)
    assert "favouriteColour" not in lenient
    await configure(tenant, strict=True)
    for sent, name in (("favouriteColour", "favouriteColour"), ("urn:example:other:1.0:User:shoeSize", "shoeSize")):
        strict = await tenant.client.post("/Users", json={"userName": "t@x", sent: "9"})
        assert strict.status_code == 400 and strict.json()["scimType"] == "invalidValue"
        assert name in strict.json()["detail"] and "strict" in strict.json()["detail"]
    patched = await tenant.client.patch(
        f"/Users/{lenient['id']}", json=patch_body({"op": "add", "path": "favouriteColour", "value": "red"})
    )
    assert patched.status_code == 400 and patched.json()["scimType"] == "invalidValue"
    assert (await tenant.client.get("/Users", params={"filter": 'userName eq "t@x"'})).json()["totalResults"] == 0


async def test_server_uniqueness_is_kept_per_idp_on_create_replace_and_patch(tenant: Tenant) -> None:
    await configure(tenant)
    first = await created(tenant, {"userName": "one@x", ACME: {"badge": 1}})
    second = await created(tenant, {"userName": "two@x", ACME: {"badge": 2}})
    taken = await tenant.client.post("/Users", json={"userName": "three@x", f"{ACME}:badge": "1"})
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    assert f"{ACME}:badge 1 is already another User's" in taken.json()["detail"]
    patch = patch_body({"op": "replace", "path": f"{ACME}:badge", "value": 1})
    refused = await tenant.client.patch(f"/Users/{second['id']}", json=patch)
    assert refused.status_code == 409 and refused.json()["scimType"] == "uniqueness"
    replaced = await tenant.client.put(f"/Users/{second['id']}", json={"userName": "two@x", ACME: {"badge": 1}})
    assert replaced.status_code == 409
    assert (await tenant.client.get(f"/Users/{second['id']}")).json()[ACME] == {"badge": 2}
    own = await tenant.client.put(f"/Users/{first['id']}", json={"userName": "one@x", "title": "T", ACME: {"badge": 1}})
    assert own.status_code == 200 and own.json()["title"] == "T"


async def test_a_changed_declaration_keeps_stored_values_out_of_answers_and_filters(tenant: Tenant) -> None:
    await configure(tenant)
    user = await created(tenant, {"userName": "k@x", ACME: {"costCenter": "9", "badge": 5}})
    await configure(tenant, declared=[{"id": ACME, "attributes": [{"name": "badge", "type": "integer"}]}])
    read = (await tenant.client.get(f"/Users/{user['id']}")).json()
    assert read[ACME] == {"badge": 5}  # costCenter is no longer declared: stored, not answered
    gone = await tenant.client.get("/Users", params={"filter": f'{ACME}:costCenter eq "9"'})
    assert gone.status_code == 400 and gone.json()["scimType"] == "invalidFilter"
    # A PATCH of something else keeps the stored value; declaring it again shows it as it was.
    patch = patch_body({"op": "replace", "path": "title", "value": "T"})
    assert (await tenant.client.patch(f"/Users/{user['id']}", json=patch)).status_code in (200, 204)
    await configure(tenant)
    assert (await tenant.client.get(f"/Users/{user['id']}")).json()[ACME] == {"costCenter": "9", "badge": 5}
    doc = (await tenant.store.get("User", tenant.idp_id, user["id"])).doc  # type: ignore[union-attr]
    assert doc["title"] == "T"
