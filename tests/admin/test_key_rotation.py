"""Key rotation without a gap from the console, the admin API and the CLI: a second key signs in
beside the IdP's key, the log names the key of each request, revoking the old key ends the rotation."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.admin.conftest import BASE, TOKEN, Admin
from tests.admin.test_admin_cli import cli_env
from tests.conftest import run_cli

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_api_rotation(admin: Admin) -> None:
    tenant = await admin.idp_with_key("Entra")
    new, new_secret = await admin.store.create_api_key("Entra 2027", "", True, True)
    async with httpx.AsyncClient(transport=admin.client._transport, base_url=f"{BASE}/v1/admin", headers=BEARER) as api:
        added = await api.put(f"/idps/{tenant.idp_id}/second-apikey", json={"api_key": "Entra 2027"})
        assert added.status_code == 200, added.text
        assert (added.json()["api_key_id"], added.json()["second_api_key_id"]) == (tenant.key_id, new.id)
        refused = await api.put(f"/idps/{tenant.idp_id}/second-apikey", json={"api_key": tenant.key_id})
        assert refused.status_code == 400 and "already this IdP's key" in refused.json()["detail"]
        with_new = httpx.AsyncClient(
            transport=admin.client._transport, base_url=tenant.url, headers={"Authorization": f"Bearer {new_secret}"}
        )
        async with with_new:
            assert (await tenant.scim.get("/Users")).status_code == 200
            assert (await with_new.get("/Users")).status_code == 200
            await admin.flush_logs()
            logs = (await api.get("/logs", params={"idp": tenant.idp_id})).json()["Resources"]
            assert {record["api_key_id"] for record in logs} == {tenant.key_id, new.id}
            assert (await api.post(f"/apikeys/{tenant.key_id}/revoke")).status_code == 200
            assert (await tenant.scim.get("/Users")).status_code == 401
            assert (await with_new.get("/Users")).status_code == 200
        after = (await api.get(f"/idps/{tenant.idp_id}")).json()
        assert (after["api_key_id"], after["second_api_key_id"]) == (new.id, None)
        # DELETE ends a rotation without revoking anything.
        await admin.store.create_api_key("spare", "", True, True)
        assert (await api.put(f"/idps/{tenant.idp_id}/second-apikey", json={"api_key": "spare"})).status_code == 200
        removed = await api.delete(f"/idps/{tenant.idp_id}/second-apikey")
        assert removed.status_code == 200 and removed.json()["second_api_key_id"] is None


async def test_console_rotation(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Entra")
    await signed_in.store.create_api_key("Entra 2027", "", True, True)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert 'id="add-second-key"' in page.text and ">Entra 2027</option>" in page.text
    new = (await signed_in.store.find_api_key("Entra 2027")).id
    added = await signed_in.post(f"/admin/idps/{tenant.idp_id}/second-key", {"action": "add", "api_key": new})
    assert added.status_code == 303
    page = await signed_in.client.get(added.headers["location"])
    assert "Second key added: both keys sign in" in page.text
    assert 'id="second-key"' in page.text and "<strong>Entra 2027</strong>" in page.text
    # The revoke page says the rotation ends and that nothing stops.
    ask = await signed_in.client.get(f"/admin/keys/{tenant.key_id}/revoke")
    assert "becomes the IdP's key and keeps signing in" in ask.text and "provisioning from there stops" not in ask.text
    assert (await signed_in.post(f"/admin/keys/{tenant.key_id}/revoke")).status_code == 303
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert "API key: <strong>Entra 2027</strong>" in page.text and 'id="second-key"' not in page.text
    forged = await signed_in.post(
        f"/admin/idps/{tenant.idp_id}/second-key", {"action": "add", "api_key": new}, csrf="x"
    )
    assert forged.status_code == 403


def test_cli_rotation(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_cli(env, "apikey", "create", "--name", "old", "--write", "users,groups")
    run_cli(env, "apikey", "create", "--name", "new", "--write", "users,groups")
    idp = json.loads(run_cli(env, "idp", "create", "--name", "Contoso", "--apikey", "old", "--json").stdout)
    added = run_cli(env, "idp", "second-key", idp["id"], "--apikey", "new")
    assert added.returncode == 0 and "keys old and new both sign in" in added.stdout
    assert "revoke old" in added.stdout
    run_cli(env, "apikey", "revoke", "old")
    listed = {i["id"]: i for i in json.loads(run_cli(env, "idp", "list", "--json").stdout)}
    keys = {k["name"]: k["id"] for k in json.loads(run_cli(env, "apikey", "list", "--json").stdout)}
    assert (listed[idp["id"]]["api_key_id"], listed[idp["id"]]["second_api_key_id"]) == (keys["new"], None)
    neither = run_cli(env, "idp", "second-key", idp["id"])
    assert neither.returncode == 2
