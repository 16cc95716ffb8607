"""Console: Administration -> API Keys and Settings -> IdP, through their forms."""

from __future__ import annotations

import html
import json
import re

import httpx
import pytest
from markupsafe import escape

from scim.profiles import PROFILES
from tests.admin.conftest import BASE, Admin
from tests.conftest import GROUP_SCHEMA, USER_SCHEMA, entra_user
from tests.unit.test_tenant_schemas import DECLARATIONS
from web.admin import service as service_module


def scim_client(admin: Admin, idp_id: str, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=admin.client._transport,
        base_url=f"{BASE}/v1/scim/{idp_id}",
        headers={"Authorization": f"Bearer {secret}"},
    )


def shown_secret(html: str) -> str:
    match = re.search(r'<code id="secret">([^<]+)</code>', html)
    assert match, "the secret is not on the page"
    return match.group(1)


async def create_key(admin: Admin, name: str, users: bool = True, groups: bool = True) -> tuple[str, str]:
    data = {"name": name, "description": f"{name} description"}
    if users:
        data["users_write"] = "on"
    if groups:
        data["groups_write"] = "on"
    response = await admin.post("/admin/keys", data)
    assert response.status_code == 200, response.text
    key = next(k for k in await admin.store.list_api_keys() if k.name == name)
    return key.id, shown_secret(response.text)


async def create_idp(admin: Admin, name: str, icon: str, key_id: str) -> str:
    response = await admin.post("/admin/idps", {"name": name, "icon": icon, "api_key": key_id})
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/admin/idps/([0-9a-f]{32})\?notice=idp-created", response.headers["location"])
    assert match
    return match.group(1)


async def test_add_key_shows_the_secret_once_and_it_works(signed_in: Admin) -> None:
    response = await signed_in.post(
        "/admin/keys",
        {"name": "Entra prod", "description": "tenant contoso", "users_write": "on", "groups_write": "on"},
    )
    assert response.status_code == 200
    secret = shown_secret(response.text)
    assert "will not be shown again" in response.text
    assert 'data-copy="secret"' in response.text
    key = (await signed_in.store.list_api_keys())[0]
    assert (key.name, key.description, key.users_write, key.groups_write) == (
        "Entra prod",
        "tenant contoso",
        True,
        True,
    )
    listing = await signed_in.client.get("/admin/keys")
    assert "Entra prod" in listing.text and "tenant contoso" in listing.text
    assert "Users: write" in listing.text and "Groups: write" in listing.text
    assert secret not in listing.text
    idp = await signed_in.store.create_idp("Entra", "key", key.id)
    async with scim_client(signed_in, idp.id, secret) as scim:
        assert (await scim.post("/Users", json=entra_user("alice"))).status_code == 201


async def test_write_toggles_are_separate_privileges(signed_in: Admin) -> None:
    key_id, secret = await create_key(signed_in, "users only", users=True, groups=False)
    idp = await signed_in.store.create_idp("Users only", "key", key_id)
    async with scim_client(signed_in, idp.id, secret) as scim:
        assert (await scim.post("/Users", json=entra_user("bob"))).status_code == 201
        assert (await scim.post("/Groups", json={"displayName": "Sales"})).status_code == 403
    listing = await signed_in.client.get("/admin/keys")
    row = re.search(r'<tr data-key="' + key_id + r'">(.*?)</tr>', listing.text, re.S).group(1)
    assert "Users: write" in row and "Groups: write" not in row


async def test_add_key_refuses_bad_input_and_changes_nothing(signed_in: Admin) -> None:
    await create_key(signed_in, "taken")
    for data, message in (
        ({"name": "  "}, "needs a name"),
        ({"name": "TAKEN"}, "already exists"),
        ({"name": "n" * 101}, "limit is 100"),
    ):
        response = await signed_in.post("/admin/keys", data)
        assert response.status_code == 400
        assert message in response.text
        assert 'id="secret"' not in response.text
    assert [k.name for k in await signed_in.store.list_api_keys()] == ["taken"]


async def test_revoke_asks_first_then_the_secret_stops_working(signed_in: Admin) -> None:
    key_id, secret = await create_key(signed_in, "doomed")
    idp_id = await create_idp(signed_in, "Entra", "cloud", key_id)
    confirm = await signed_in.client.get(f"/admin/keys/{key_id}/revoke")
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.text and "Entra" in confirm.text  # names the IdP that uses it
    assert not (await signed_in.store.find_api_key(key_id)).revoked
    response = await signed_in.post(f"/admin/keys/{key_id}/revoke")
    assert response.status_code == 303 and response.headers["location"] == "/admin/keys?notice=key-revoked"
    listing = await signed_in.client.get(response.headers["location"])
    assert "Revoked" in listing.text and "now get 401" in listing.text
    assert (await signed_in.store.find_api_key(key_id)).revoked
    async with scim_client(signed_in, idp_id, secret) as scim:
        assert (await scim.get("/Users")).status_code == 401


async def test_revoke_unknown_key_is_404(signed_in: Admin) -> None:
    assert (await signed_in.client.get("/admin/keys/nope/revoke")).status_code == 404
    response = await signed_in.post("/admin/keys/nope/revoke")
    assert response.status_code == 404 and "No API key" in response.text


async def test_create_idp_with_icon_and_key_shows_what_to_paste_into_entra(signed_in: Admin) -> None:
    key_id, secret = await create_key(signed_in, "Entra key")
    form = await signed_in.client.get("/admin/idps/new")
    for icon in ("key", "cloud", "shield", "windows"):
        assert f'value="{icon}"' in form.text
    assert "Entra key" in form.text
    idp_id = await create_idp(signed_in, "Contoso Entra", "windows", key_id)
    page = await signed_in.client.get(f"/admin/idps/{idp_id}?notice=idp-created")
    assert page.status_code == 200
    tenant_url = f"{BASE}/v1/scim/{idp_id}"
    assert f'<code id="tenant-url">{tenant_url}</code>' in page.text
    assert f'<code id="idp-id">{idp_id}</code>' in page.text
    assert 'data-copy="tenant-url"' in page.text and 'data-copy="idp-id"' in page.text
    for mapping in (
        "userPrincipalName",
        "phoneNumbers[type eq &#34;work&#34;].value",
        "name.givenName",
        "name.familyName",
        "displayName",
        "members",
    ):
        assert mapping in page.text
    assert "IdP created" in page.text
    idp = (await signed_in.store.list_idps())[0]
    assert (idp.name, idp.icon, idp.api_key_id) == ("Contoso Entra", "windows", key_id)
    async with httpx.AsyncClient(
        transport=signed_in.client._transport, base_url=tenant_url, headers={"Authorization": f"Bearer {secret}"}
    ) as scim:
        assert (await scim.get("/Users", params={"filter": 'userName eq "x"'})).status_code == 200
    listing = await signed_in.client.get("/admin/idps")
    assert "Contoso Entra" in listing.text and idp_id in listing.text


async def test_create_idp_refuses_bad_input(signed_in: Admin) -> None:
    key_id, _ = await create_key(signed_in, "k")
    await create_idp(signed_in, "Taken", "key", key_id)
    for data, message in (
        ({"name": "x", "icon": "skull"}, "Unknown icon"),
        ({"name": "", "icon": "key"}, "needs a name"),
        ({"name": "taken", "icon": "key"}, "already exists"),
        ({"name": "y", "icon": "key", "api_key": "missing"}, "No API key"),
    ):
        response = await signed_in.post("/admin/idps", data)
        assert response.status_code == 400, data
        assert message in response.text
    assert [i.name for i in await signed_in.store.list_idps()] == ["Taken"]


async def test_idp_without_key_until_configure_scim_selects_one(signed_in: Admin) -> None:
    idp_id = await create_idp(signed_in, "Later", "globe", "")
    page = await signed_in.client.get(f"/admin/idps/{idp_id}")
    assert "No API key selected yet" in page.text
    key_id, secret = await create_key(signed_in, "chosen")
    async with scim_client(signed_in, idp_id, secret) as scim:
        assert (await scim.get("/Users")).status_code == 401
        response = await signed_in.post(f"/admin/idps/{idp_id}/scim", {"api_key": key_id})
        assert response.status_code == 303
        assert response.headers["location"] == f"/admin/idps/{idp_id}?notice=scim-configured"
        assert (await scim.get("/Users")).status_code == 200


async def test_configure_scim_switches_keys(signed_in: Admin) -> None:
    old_id, old_secret = await create_key(signed_in, "old")
    new_id, new_secret = await create_key(signed_in, "new")
    idp_id = await create_idp(signed_in, "Entra", "key", old_id)
    assert (await signed_in.post(f"/admin/idps/{idp_id}/scim", {"api_key": new_id})).status_code == 303
    async with scim_client(signed_in, idp_id, old_secret) as old, scim_client(signed_in, idp_id, new_secret) as new:
        assert (await old.get("/Users")).status_code == 401
        assert (await new.get("/Users")).status_code == 200
    page = await signed_in.client.get(f"/admin/idps/{idp_id}")
    assert re.search(r"API key: <strong>new</strong>", page.text)


async def test_configure_scim_refuses_revoked_unknown_or_no_key(signed_in: Admin) -> None:
    key_id, _ = await create_key(signed_in, "good")
    revoked_id, _ = await create_key(signed_in, "revoked")
    await signed_in.store.revoke_api_key(revoked_id)
    idp_id = await create_idp(signed_in, "Entra", "key", key_id)
    for choice, status, message in (
        (revoked_id, 400, "is revoked"),
        ("nope", 404, "No API key"),
        ("", 400, "Select an API key"),
    ):
        response = await signed_in.post(f"/admin/idps/{idp_id}/scim", {"api_key": choice})
        assert response.status_code == status
        assert message in response.text
    assert (await signed_in.store.get_idp(idp_id)).api_key_id == key_id


async def test_idp_page_warns_about_a_key_without_write_privileges(signed_in: Admin) -> None:
    key_id, _ = await create_key(signed_in, "read only", users=False, groups=False)
    idp_id = await create_idp(signed_in, "Entra", "key", key_id)
    page = await signed_in.client.get(f"/admin/idps/{idp_id}")
    assert "Entra needs Write on both Users and Groups" in page.text


async def test_delete_idp_asks_first_and_removes_its_directory(signed_in: Admin) -> None:
    key_id, secret = await create_key(signed_in, "k")
    idp_id = await create_idp(signed_in, "Doomed", "lock", key_id)
    async with scim_client(signed_in, idp_id, secret) as scim:
        assert (await scim.post("/Users", json=entra_user("carol"))).status_code == 201
        confirm = await signed_in.client.get(f"/admin/idps/{idp_id}/delete")
        assert "1 users" in confirm.text and "cannot be undone" in confirm.text
        response = await signed_in.post(f"/admin/idps/{idp_id}/delete")
        assert response.status_code == 303 and response.headers["location"] == "/admin/idps?notice=idp-deleted"
        assert await signed_in.store.list_idps() == []
        assert (await scim.get("/Users")).status_code == 401
    assert await signed_in.store.counts(idp_id) == {"users": 0, "groups": 0}
    assert (await signed_in.client.get(f"/admin/idps/{idp_id}")).status_code == 404


async def test_unknown_idp_pages_are_404(signed_in: Admin) -> None:
    for path in (
        "/admin/idps/nope",
        "/admin/idps/nope/users",
        "/admin/idps/nope/groups",
        "/admin/idps/nope/delete",
        "/admin/idps/nope/users/x",
    ):
        response = await signed_in.client.get(path)
        assert response.status_code == 404, path
        assert "No IdP" in response.text
    assert (await signed_in.post("/admin/idps/nope/delete")).status_code == 404
    assert (await signed_in.post("/admin/idps/nope/scim", {"api_key": "x"})).status_code == 404


async def test_overview_shows_each_idp_with_its_counters(signed_in: Admin) -> None:
    empty = await signed_in.client.get("/admin/")
    assert "Connect your first identity provider" in empty.text
    tenant = await signed_in.idp_with_key("Contoso")
    await tenant.scim.post("/Users", json=entra_user("dave"))
    await tenant.scim.post("/Users", json=entra_user("dave"))  # 409: a failure
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/")
    assert "Contoso" in page.text and "Recent failures" in page.text
    stats = dict(re.findall(r"<dt>(\w+)</dt><dd[^>]*>(\d+)</dd>", page.text))
    assert stats == {"Operations": "2", "Failures": "1", "Users": "1", "Groups": "0"}


# --- schema: profile, strict, extension schemas ------------------------------------------------------

ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
ACME_GROUP = "urn:ietf:params:scim:schemas:extension:Acme:2.0:Group"


def attribute_form(**fields: str) -> dict:
    """The add-attribute form as a browser posts it (unchecked boxes are left out)."""
    data = {
        "action": "add-attribute",
        "urn": ACME,
        "resource_type": "User",
        "name": "costCenter",
        "type": "string",
        "sub_attributes": "",
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
        "canonical_values": "",
        "description": "",
    }
    data.update(fields)
    return data


async def declared(admin: Admin, idp_id: str) -> list[dict]:
    return json.loads((await admin.store.get_idp(idp_id)).schema.extensions)


async def test_new_idp_form_chooses_the_profile_and_strict(signed_in: Admin) -> None:
    form = await signed_in.client.get("/admin/idps/new")
    for rules in PROFILES.values():
        assert f'value="{rules.name}"' in form.text and str(escape(rules.summary)) in form.text
    assert re.search(r'value="meta-networks" id="profile-meta-networks" checked', form.text)
    assert 'name="strict"' in form.text
    response = await signed_in.post(
        "/admin/idps", {"name": "Any app", "icon": "key", "api_key": "", "profile": "rfc7643", "strict": "on"}
    )
    assert response.status_code == 303
    idp = (await signed_in.store.list_idps())[0]
    assert (idp.schema.profile, idp.schema.strict) == ("rfc7643", True)
    page = await signed_in.client.get(response.headers["location"])
    assert '<strong id="schema-profile">rfc7643</strong>' in page.text
    assert '<strong id="schema-strict">on</strong>' in page.text
    # Without a choice (an older form), the default profile and strict off.
    assert (await signed_in.post("/admin/idps", {"name": "Old form", "icon": "key"})).status_code == 303
    old = next(i for i in await signed_in.store.list_idps() if i.name == "Old form")
    assert (old.schema.profile, old.schema.strict) == ("meta-networks", False)


async def test_new_idp_form_refuses_an_unknown_profile_and_keeps_what_was_typed(signed_in: Admin) -> None:
    response = await signed_in.post("/admin/idps", {"name": "Okta app", "icon": "key", "profile": "okta"})
    assert response.status_code == 400
    assert "Unknown schema profile &#39;okta&#39;; choose one of meta-networks, rfc7643" in response.text
    assert 'value="Okta app"' in response.text
    assert await signed_in.store.list_idps() == []


async def test_rules_form_switches_profile_and_strict_and_says_what_changed(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    assert (await tenant.scim.post("/Users", json={"userName": "nameless@x"})).status_code == 400
    response = await signed_in.post(
        f"/admin/idps/{tenant.idp_id}/schema", {"action": "rules", "profile": "rfc7643", "strict": "on"}
    )
    assert response.status_code == 200, response.text
    changes = re.search(r'<div class="notice" role="status" id="schema-changes">(.*?)</div>', response.text, re.S)
    assert changes and "Schema profile meta-networks → rfc7643" in changes.group(1)
    assert "Strict on: a request that sends an attribute this IdP does not keep is refused" in changes.group(1)
    assert "0 of 0 stored users would not pass these rules" in changes.group(1)
    idp = await signed_in.store.get_idp(tenant.idp_id)
    assert (idp.schema.profile, idp.schema.strict) == ("rfc7643", True)
    # What Entra observes: names are optional now, and an attribute the IdP does not keep is refused.
    assert (await tenant.scim.post("/Users", json={"userName": "nameless@x"})).status_code == 201
    refused = await tenant.scim.post("/Users", json={"userName": "x@x", f"{ACME}:costCenter": "1"})
    assert refused.status_code == 400
    # Unchecking strict (the box is left out of the post) switches it off; the same again changes nothing.
    off = await signed_in.post(f"/admin/idps/{tenant.idp_id}/schema", {"action": "rules", "profile": "rfc7643"})
    assert "Strict off" in off.text and not (await signed_in.store.get_idp(tenant.idp_id)).schema.strict
    again = await signed_in.post(f"/admin/idps/{tenant.idp_id}/schema", {"action": "rules", "profile": "rfc7643"})
    assert "Nothing changed" in again.text
    # Reloading the answer page's address leads back to the IdP page.
    reload = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/schema")
    assert reload.status_code == 303 and reload.headers["location"] == f"/admin/idps/{tenant.idp_id}"


async def test_rules_form_refuses_an_unknown_profile_and_changes_nothing(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    response = await signed_in.post(
        f"/admin/idps/{tenant.idp_id}/schema", {"action": "rules", "profile": "okta", "strict": "on"}
    )
    assert response.status_code == 400
    assert 'id="schema-error">Unknown schema profile &#39;okta&#39;' in response.text
    idp = await signed_in.store.get_idp(tenant.idp_id)
    assert (idp.schema.profile, idp.schema.strict) == ("meta-networks", False)
    unknown = await signed_in.post(f"/admin/idps/{tenant.idp_id}/schema", {"action": "explode"})
    assert unknown.status_code == 400 and "Unknown schema form action" in unknown.text
    assert (await signed_in.post("/admin/idps/nope/schema", {"action": "rules"})).status_code == 404


async def test_schema_forms_need_the_csrf_token(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    for data in ({"action": "rules", "profile": "rfc7643"}, attribute_form()):
        response = await signed_in.post(f"/admin/idps/{tenant.idp_id}/schema", data, csrf="forged")
        assert response.status_code == 403 and "Form expired" in response.text
    idp = await signed_in.store.get_idp(tenant.idp_id)
    assert (idp.schema.profile, idp.schema.extensions) == ("meta-networks", "[]")


async def test_add_attribute_form_declares_schemas_and_attributes(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    first = await signed_in.post(path, attribute_form(description="Where the cost is booked"))
    assert first.status_code == 200, first.text
    assert f"Declared {ACME} (User): costCenter." in first.text
    complex_attr = attribute_form(
        urn=ACME.upper().replace("URN:", "urn:"),  # a declared schema's URN in any letter case
        name="office",
        type="complex",
        sub_attributes="building, floor:integer",
        multi_valued="on",
    )
    second = await signed_in.post(path, complex_attr)
    assert second.status_code == 200, second.text
    assert f"{ACME}: attribute office added (complex, multi-valued)." in second.text
    third = await signed_in.post(
        path,
        attribute_form(
            name="region",
            canonical_values="north, south",
            required="on",
            case_exact="on",
            returned="always",
            uniqueness="server",
        ),
    )
    assert third.status_code == 200, third.text
    group = await signed_in.post(
        path, attribute_form(urn=ACME_GROUP, resource_type="Group", name="budget", type="integer")
    )
    assert group.status_code == 200 and f"Declared {ACME_GROUP} (Group): budget." in group.text
    schemas = await declared(signed_in, tenant.idp_id)
    assert [(s["id"], s["resourceType"]) for s in schemas] == [(ACME, "User"), (ACME_GROUP, "Group")]
    attrs = {a["name"]: a for a in schemas[0]["attributes"]}
    assert attrs["costCenter"]["description"] == "Where the cost is booked"
    assert attrs["office"]["multiValued"] and [(s["name"], s["type"]) for s in attrs["office"]["subAttributes"]] == [
        ("building", "string"),
        ("floor", "integer"),
    ]
    region = attrs["region"]
    assert (region["canonicalValues"], region["required"], region["caseExact"]) == (["north", "south"], True, True)
    assert (region["returned"], region["uniqueness"]) == ("always", "server")
    # The page lists them as a table.
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    table = re.search(rf'<div class="extension" data-urn="{re.escape(ACME)}">(.*?)</table>', page.text, re.S)
    assert table
    row = re.search(r'<tr data-attribute="office">(.*?)</tr>', table.group(1), re.S).group(1)
    assert "complex" in row and "building: string, floor: integer" in row
    row = re.search(r'<tr data-attribute="region">(.*?)</tr>', table.group(1), re.S).group(1)
    assert "north, south" in row and "always" in row and "server" in row
    # Entra's values now arrive and are answered.
    body = entra_user("ann@x", schemas=[USER_SCHEMA, ACME], **{ACME: {"costCenter": "CC-7", "region": "north"}})
    created = await tenant.scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    assert created.json()[ACME] == {"costCenter": "CC-7", "region": "north"}


async def test_add_attribute_form_refuses_bad_input_and_changes_nothing(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    assert (await signed_in.post(path, attribute_form())).status_code == 200
    before = await declared(signed_in, tenant.idp_id)
    for fields, message in (
        ({"urn": "acme-attributes"}, "is not a schema URN"),
        ({"urn": "urn:ietf:params:scim:schemas:core:2.0:User"}, "one of the server&#39;s own schemas"),
        ({"name": "CostCenter"}, "CostCenter is declared twice"),
        ({"name": "rate", "type": "float"}, "type must be one of string, boolean"),
        ({"name": "2fast"}, "is not an attribute name"),
        ({"name": "office", "type": "complex"}, "a complex attribute needs"),
        ({"name": "office", "type": "complex", "sub_attributes": "a:b:c"}, "Write each sub-attribute as name"),
        ({"name": "flag", "type": "boolean", "sub_attributes": "a"}, "only a complex attribute has subAttributes"),
        ({"name": "flag", "type": "boolean", "canonical_values": "yes"}, "canonicalValues apply to strings only"),
        ({"name": "budget", "resource_type": "Group"}, f"{ACME} extends User, not &#39;Group&#39;"),
    ):
        response = await signed_in.post(path, attribute_form(**fields))
        assert response.status_code == 400, fields
        error = re.search(r'<div class="error" role="alert" id="schema-error">(.*?)</div>', response.text, re.S)
        assert error and message in error.group(1), (fields, error and error.group(1))
        # The form keeps what was typed.
        for field, value in fields.items():
            if field in ("urn", "name", "sub_attributes", "canonical_values"):
                assert f'value="{html.escape(value)}"' in response.text, field
        assert await declared(signed_in, tenant.idp_id) == before


async def test_remove_buttons_take_out_an_attribute_or_a_whole_schema(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    for data in (
        attribute_form(),
        attribute_form(name="badge", type="integer"),
        attribute_form(urn=ACME_GROUP, resource_type="Group", name="budget", type="integer"),
    ):
        assert (await signed_in.post(path, data)).status_code == 200
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert 'id="remove-1-badge"' in page.text and 'id="remove-schema-2"' in page.text
    one = await signed_in.post(path, {"action": "remove", "urn": ACME, "attribute": "badge"})
    assert one.status_code == 200 and f"{ACME}: attribute badge removed" in one.text
    assert [a["name"] for a in (await declared(signed_in, tenant.idp_id))[0]["attributes"]] == ["costCenter"]
    # The last attribute of a schema takes the schema with it.
    last = await signed_in.post(path, {"action": "remove", "urn": ACME, "attribute": "costCenter"})
    assert last.status_code == 200 and f"Removed {ACME}" in last.text
    whole = await signed_in.post(path, {"action": "remove", "urn": ACME_GROUP})
    assert whole.status_code == 200 and f"Removed {ACME_GROUP}" in whole.text
    assert await declared(signed_in, tenant.idp_id) == []
    assert 'id="no-extensions"' in whole.text
    for data, message in (
        ({"action": "remove", "urn": ACME}, f"This IdP declares no extension schema &#39;{ACME}&#39;"),
        ({"action": "remove", "urn": ""}, "declares no extension schema"),
    ):
        response = await signed_in.post(path, data)
        assert response.status_code == 400 and message in response.text
    assert (await signed_in.post(path, attribute_form())).status_code == 200
    missing = await signed_in.post(path, {"action": "remove", "urn": ACME, "attribute": "nope"})
    assert missing.status_code == 400 and "declares no attribute &#39;nope&#39;" in missing.text
    assert [a["name"] for a in (await declared(signed_in, tenant.idp_id))[0]["attributes"]] == ["costCenter"]


async def test_declarations_textarea_replaces_the_whole_list(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    pasted = json.dumps(DECLARATIONS)
    response = await signed_in.post(path, {"action": "declarations", "declarations": pasted})
    assert response.status_code == 200, response.text
    assert [s["id"] for s in await declared(signed_in, tenant.idp_id)] == [d["id"] for d in DECLARATIONS]
    assert f"Declared {ACME} (User): costCenter, badge, remote, rate, hired, skills, office." in response.text
    # The textarea shows the canonical declarations, ready to edit.
    textarea = re.search(r'<textarea id="declarations"[^>]*>(.*?)</textarea>', response.text, re.S)
    assert textarea and json.loads(html.unescape(textarea.group(1))) == await declared(signed_in, tenant.idp_id)
    before = await declared(signed_in, tenant.idp_id)
    for text, message in (
        ("[{", "The extension schemas are not valid JSON"),
        ('{"id": "x"}', "Extension schemas are a JSON array of schema declarations"),
        (json.dumps([DECLARATIONS[0], DECLARATIONS[0]]), "is declared twice"),
    ):
        refused = await signed_in.post(path, {"action": "declarations", "declarations": text})
        assert refused.status_code == 400 and message in refused.text, text
        textarea = re.search(r'<textarea id="declarations"[^>]*>(.*?)</textarea>', refused.text, re.S)
        assert textarea and html.unescape(textarea.group(1)) == text  # what was pasted, to fix it
        assert await declared(signed_in, tenant.idp_id) == before
    cleared = await signed_in.post(path, {"action": "declarations", "declarations": "[]"})
    assert cleared.status_code == 200 and await declared(signed_in, tenant.idp_id) == []


async def test_idp_page_shows_failing_users_and_what_entra_sent_that_is_not_kept(
    signed_in: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    assert (await signed_in.post(path, {"action": "rules", "profile": "rfc7643"})).status_code == 200
    empty = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert "Entra has sent nothing this IdP does not keep" in empty.text
    nameless = await tenant.scim.post("/Users", json={"userName": "nameless@x"})
    assert nameless.status_code == 201
    sent = entra_user("cost@x", **{f"{ACME}:costCenter": "CC-1"})
    assert (await tenant.scim.post("/Users", json=sent)).status_code == 201
    await signed_in.flush_logs()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert "<strong>0 of 2</strong> stored users would not pass these rules" in page.text
    ignored = re.search(r'<table id="ignored-attributes".*?</table>', page.text, re.S)
    assert ignored, "no ignored attributes on the page"
    cell = rf"<td class=\"mono id\"[^>]*>{re.escape(ACME)}:costCenter</td>"
    row = re.search(rf"<tr>\s*{cell}(.*?)</tr>", ignored.group(0), re.S)
    assert row and '<td class="num" data-label="Requests">1</td>' in row.group(1)
    assert "declare it as an extension attribute" in page.text and "switch strict on" in page.text
    # Declare… fills the add-attribute form in with the URN and the name.
    link = re.search(r'href="(/admin/idps/[^"]+\?declare=[^"#]+)#add-attribute"', ignored.group(0))
    assert link
    prefilled = await signed_in.client.get(html.unescape(link.group(1)))
    assert f'id="ext-urn" name="urn" required list="declared-urns" value="{ACME}"' in prefilled.text
    assert 'id="ext-name" name="name" required value="costCenter"' in prefilled.text
    # A stricter profile: the page counts who would not pass, with an example.
    stricter = await signed_in.post(path, {"action": "rules", "profile": "meta-networks"})
    assert "1 of 2 stored users would not pass these rules." in stricter.text
    examples = re.search(r'<table id="failing-examples".*?</table>', stricter.text, re.S)
    assert examples and f'users/{nameless.json()["id"]}">nameless@x</a>' in examples.group(0)
    assert "name.familyName is required but missing or empty" in examples.group(0)
    again = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert "<strong>1 of 2</strong> stored users would not pass these rules." in again.text
    assert "only the first" not in again.text
    # Once declared, the ignored name is marked so: the log still counts what was sent before.
    assert (await signed_in.post(path, attribute_form())).status_code == 200
    declared_page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    ignored = re.search(r'<table id="ignored-attributes".*?</table>', declared_page.text, re.S)
    assert ignored and "declared since" in ignored.group(0) and "?declare=" not in ignored.group(0)
    # A directory larger than the page checks is said to be checked in part.
    monkeypatch.setattr(service_module, "MAX_CHECKED_USERS", 1)  # cost@x, the first by userName, passes
    partial = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert (
        "<strong>0 of 1</strong> stored user would not pass these rules (only the first 1 by userName were checked)."
    ) in partial.text


async def test_user_page_shows_declared_extension_values_and_stored_ones_no_longer_declared(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    for data in (
        attribute_form(),
        attribute_form(name="badge", type="integer"),
        attribute_form(name="office", type="complex", sub_attributes="building, floor:integer"),
        attribute_form(urn=ACME_GROUP, resource_type="Group", name="budget", type="integer"),
    ):
        assert (await signed_in.post(path, data)).status_code == 200
    values = {"costCenter": "CC-7", "badge": 4711, "office": {"building": "B2", "floor": 3}}
    user = await tenant.scim.post("/Users", json=entra_user("ann@x", schemas=[USER_SCHEMA, ACME], **{ACME: values}))
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{user_id}")
    card = re.search(r'<section class="card" id="extension-values">(.*?)</section>', page.text, re.S)
    assert card, "no extension card"
    acme = re.search(rf'<dl class="attrs" data-urn="{re.escape(ACME)}">(.*?)</dl>', card.group(1), re.S).group(1)
    assert "<h3>Acme</h3>" in card.group(1)
    assert "<dt>costCenter</dt><dd>CC-7</dd>" in acme and "<dt>badge</dt><dd>4711</dd>" in acme
    assert "<dt>office</dt><dd>building: B2, floor: 3</dd>" in acme
    assert 'id="unanswered"' not in page.text
    # The console's search box takes filters on the IdP's declared attributes.
    found = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users", params={"q": f"{ACME}:badge gt 4000"})
    assert found.status_code == 200, found.text
    assert "ann@x" in found.text and '<p class="muted small" id="total">1 user match</p>' in found.text
    assert f"<code>{ACME}:badge</code>" in found.text  # the search box names what it may filter on
    sub = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users", params={"q": 'office.building eq "B9"'})
    assert sub.status_code == 200 and '<p class="muted small" id="total">0 users match</p>' in sub.text
    # badge removed: SCIM answers leave the stored value out; the console shows it, labelled.
    assert (await signed_in.post(path, {"action": "remove", "urn": ACME, "attribute": "badge"})).status_code == 200
    assert "badge" not in (await tenant.scim.get(f"/Users/{user_id}")).json()[ACME]
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{user_id}")
    stored = re.search(r'<section class="card" id="unanswered">(.*?)</section>', page.text, re.S)
    assert stored, "the stored value is not shown"
    kept = re.search(rf'<dl class="attrs" data-urn="{re.escape(ACME)}">(.*?)</dl>', stored.group(1), re.S)
    assert kept and "<dt>badge</dt>" in kept.group(1) and "costCenter" not in kept.group(1)
    badge = re.search(r'<dd data-attribute="badge">(.*?)</dd>', kept.group(1), re.S).group(1)
    assert badge.startswith("4711") and "stored, no longer declared: not in SCIM answers" in badge
    assert '"badge"' not in re.search(r'<pre class="json" id="scim-json">(.*?)</pre>', page.text, re.S).group(1)
    # Groups too.
    group = await tenant.scim.post(
        "/Groups", json={"schemas": [GROUP_SCHEMA, ACME_GROUP], "displayName": "Sales", ACME_GROUP: {"budget": 9}}
    )
    assert group.status_code == 201, group.text
    group_page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups/{group.json()['id']}")
    assert "<dt>budget</dt><dd>9</dd>" in group_page.text
    assert (await signed_in.post(path, {"action": "remove", "urn": ACME_GROUP})).status_code == 200
    group_page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups/{group.json()['id']}")
    assert 'id="extension-values"' not in group_page.text
    assert "stored, no longer declared: not in SCIM answers" in group_page.text and "budget" in group_page.text


async def test_user_page_shows_a_returned_never_value_that_scim_answers_leave_out(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    path = f"/admin/idps/{tenant.idp_id}/schema"
    assert (await signed_in.post(path, attribute_form(name="pin", returned="never"))).status_code == 200
    created = await tenant.scim.post("/Users", json=entra_user("ann@x", **{f"{ACME}:pin": "0042"}))
    assert created.status_code == 201 and ACME not in created.json()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{created.json()['id']}")
    stored = re.search(r'<section class="card" id="unanswered">(.*?)</section>', page.text, re.S)
    assert stored and "pin" in stored.group(1) and "0042" in stored.group(1)
    assert "stored, declared returned: never: not in SCIM answers" in stored.group(1)
    assert 'id="extension-values"' not in page.text  # nothing answerable is stored under an extension
    assert "0042" not in re.search(r'<pre class="json" id="scim-json">(.*?)</pre>', page.text, re.S).group(1)
