"""Console: Administration -> API Keys and Settings -> IdP, through their forms."""

from __future__ import annotations

import re

import httpx

from tests.admin.conftest import BASE, Admin
from tests.conftest import entra_user


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
