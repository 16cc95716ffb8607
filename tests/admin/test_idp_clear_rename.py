"""Clearing an IdP's users and groups and renaming an IdP, from the admin API, the console and the
CLI: the tenant URL and the key keep working, SCIM then reads an empty directory."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.admin.conftest import BASE, TOKEN, Admin, hidden_csrf
from tests.admin.test_admin_cli import cli_env
from tests.conftest import entra_user, run_cli

BEARER = {"Authorization": f"Bearer {TOKEN}"}
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def _fill(scim: httpx.AsyncClient, users: int) -> list[str]:
    ids = []
    for n in range(users):
        created = await scim.post("/Users", json=entra_user(f"user{n}@contoso.test"))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    group = await scim.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "Staff", "members": [{"value": i} for i in ids]}
    )
    assert group.status_code == 201
    return ids


async def test_api_clear_keeps_the_idp_and_its_key(admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    ids = await _fill(tenant.scim, 3)
    async with httpx.AsyncClient(transport=admin.client._transport, base_url=f"{BASE}/v1/admin", headers=BEARER) as api:
        cleared = await api.post(f"/idps/{tenant.idp_id}/clear")
        assert cleared.status_code == 200, cleared.text
        body = cleared.json()
        assert body["deleted"] == {"users": 3, "groups": 1}
        assert body["id"] == tenant.idp_id and body["tenant_url"] == tenant.url and body["api_key_id"] == tenant.key_id
        assert (await api.post("/idps/no-such-idp/clear")).status_code == 404
    # The same tenant URL and secret answer: an empty directory, and the old names are free again.
    assert (await tenant.scim.get("/Users")).json()["totalResults"] == 0
    assert (await tenant.scim.get(f"/Users/{ids[0]}")).status_code == 404
    assert (await tenant.scim.get("/Groups")).json()["totalResults"] == 0
    assert (await tenant.scim.post("/Users", json=entra_user("user0@contoso.test"))).status_code == 201


async def test_api_rename(admin: Admin) -> None:
    tenant = await admin.idp_with_key("Entra")
    await admin.idp_with_key("Okta")
    async with httpx.AsyncClient(transport=admin.client._transport, base_url=f"{BASE}/v1/admin", headers=BEARER) as api:
        renamed = await api.patch(f"/idps/{tenant.idp_id}", json={"name": "Entra production", "icon": "windows"})
        assert renamed.status_code == 200, renamed.text
        assert (renamed.json()["name"], renamed.json()["icon"]) == ("Entra production", "windows")
        assert renamed.json()["tenant_url"] == tenant.url
        assert (await api.get(f"/idps/{tenant.idp_id}")).json()["name"] == "Entra production"
        for body, status, words in (
            ({"name": "okta"}, 409, "already exists"),
            ({"name": ""}, 400, "name"),
            ({"name": "x", "icon": "nope"}, 400, "Unknown icon"),
            ({"name": "x", "colour": "red"}, 400, "Unknown field"),
            ({"name": "x" * 101}, 400, "name"),
        ):
            refused = await api.patch(f"/idps/{tenant.idp_id}", json=body)
            assert refused.status_code == status and words in refused.json()["detail"], (body, refused.text)
        assert (await api.get(f"/idps/{tenant.idp_id}")).json()["name"] == "Entra production"
    assert (await tenant.scim.get("/Users")).status_code == 200


async def test_console_clear_asks_first_then_clears(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    await _fill(tenant.scim, 2)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert f'href="/admin/idps/{tenant.idp_id}/clear"' in page.text
    ask = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/clear")
    assert ask.status_code == 200
    assert "<strong>2 users</strong>" in ask.text and "<strong>1 groups</strong>" in ask.text
    assert (await tenant.scim.get("/Users")).json()["totalResults"] == 2  # asking changed nothing
    forged = await signed_in.post(f"/admin/idps/{tenant.idp_id}/clear", csrf="wrong")
    assert forged.status_code == 403
    assert (await tenant.scim.get("/Users")).json()["totalResults"] == 2
    done = await signed_in.post(f"/admin/idps/{tenant.idp_id}/clear")
    assert done.status_code == 303 and done.headers["location"].endswith(f"/idps/{tenant.idp_id}?notice=idp-cleared")
    after = await signed_in.client.get(done.headers["location"])
    assert "Users and groups cleared" in after.text and "0 users · 0 groups" in after.text
    assert (await tenant.scim.get("/Users")).json()["totalResults"] == 0


async def test_console_rename_says_what_is_wrong_and_keeps_what_was_typed(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Entra")
    await signed_in.idp_with_key("Okta")
    form = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/rename")
    assert form.status_code == 200 and 'value="Entra"' in form.text and hidden_csrf(form.text) == signed_in.csrf
    taken = await signed_in.post(f"/admin/idps/{tenant.idp_id}/rename", {"name": "OKTA", "icon": "cloud"})
    assert taken.status_code == 400
    assert "already exists" in taken.text and 'value="OKTA"' in taken.text
    saved = await signed_in.post(f"/admin/idps/{tenant.idp_id}/rename", {"name": "Entra production", "icon": "windows"})
    assert saved.status_code == 303
    page = await signed_in.client.get(saved.headers["location"])
    assert "IdP renamed" in page.text and "Entra production" in page.text
    assert (await signed_in.store.get_idp(tenant.idp_id)).icon == "windows"


def test_cli_rename_and_clear(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_cli(env, "apikey", "create", "--name", "k", "--write", "users,groups")
    idp = json.loads(run_cli(env, "idp", "create", "--name", "Contoso", "--apikey", "k", "--json").stdout)
    assert run_cli(env, "seed", "--idp", idp["id"], "--users", "12", "--groups", "3").returncode == 0
    renamed = json.loads(run_cli(env, "idp", "rename", idp["id"], "--name", "Contoso demo", "--json").stdout)
    assert renamed["name"] == "Contoso demo" and renamed["icon"] == "key" and renamed["id"] == idp["id"]
    unconfirmed = run_cli(env, "idp", "clear", idp["id"])
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    cleared = run_cli(env, "idp", "clear", idp["id"], "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert "12 users and 3 groups deleted" in cleared.stdout
    listed = json.loads(run_cli(env, "idp", "list", "--json").stdout)
    assert [(i["id"], i["name"]) for i in listed] == [(idp["id"], "Contoso demo")]
