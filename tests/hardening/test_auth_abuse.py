"""Abuse of authentication and authorization: one indistinguishable 401, throttling of failures that
never locks out a valid token, tenant isolation between IdPs, write privileges (403)."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import PATCH_SCHEMA, entra_user
from tests.hardening.asgi import configured_tenant

VARYING_HEADERS = {"date", "x-request-id"}


def observable(response: httpx.Response) -> tuple:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k not in VARYING_HEADERS))
    return response.status_code, response.content, headers


async def test_unknown_idp_wrong_token_and_missing_token_look_the_same(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        other_key, other_secret = await tenant.store.create_api_key("other", "", True, True)
        await tenant.store.create_idp("other", "key", other_key.id)
        revoked_key, revoked_secret = await tenant.store.create_api_key("revoked", "", True, True)
        await tenant.store.create_idp("revoked idp", "key", revoked_key.id)
        await tenant.store.revoke_api_key("revoked")
        base = "https://scim.test/v1/scim"
        attempts = [
            (f"{tenant.url}/Users", {"Authorization": "Bearer wrong-token"}),
            (f"{base}/00000000000000000000000000000000/Users", {"Authorization": f"Bearer {tenant.secret}"}),
            (f"{base}/no-such-idp/Users", {"Authorization": "Bearer wrong-token"}),
            (f"{tenant.url}/Users", {"Authorization": f"Bearer {other_secret}"}),  # another IdP's valid key
            (f"{tenant.url}/Users", {"Authorization": f"Bearer {revoked_secret}"}),
            (f"{tenant.url}/Users", {"Authorization": ""}),
            (f"{tenant.url}/Users", {"Authorization": f"Basic {tenant.secret}"}),
            (f"{tenant.url}/Users", {"Authorization": "Bearer "}),
            (f"{tenant.url}/Users", {"Authorization": f"Bearer {tenant.secret}x"}),
            (f"{tenant.url}/Users", {"Authorization": f"Bearer {tenant.secret[:-1]}"}),
        ]
        answers = {observable(await tenant.client.get(url, headers=headers)) for url, headers in attempts}
        assert len(answers) == 1
        status, content, headers = answers.pop()
        assert status == 401 and dict(headers)["www-authenticate"] == 'Bearer realm="scimlet"'
        assert b"urn:ietf:params:scim:api:messages:2.0:Error" in content
        assert (await tenant.client.get("/Users")).status_code == 200


async def test_repeated_failures_are_throttled_but_a_valid_token_always_passes(database_url: str) -> None:
    async with configured_tenant(database_url, security_auth_failure_limit=3, security_auth_failure_window=2) as tenant:
        bad = {"Authorization": "Bearer guess"}
        for _ in range(50):  # successes never count towards the limit
            assert (await tenant.client.get("/Users")).status_code == 200
        assert [(await tenant.client.get("/Users", headers=bad)).status_code for _ in range(3)] == [401] * 3
        throttled = await tenant.client.get("/Users", headers=bad)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 2
        body = throttled.json()
        assert body["status"] == "429" and "failed authentications" in body["detail"]
        # The real IdP behind the same (shared) address is not locked out, for reads and writes.
        assert (await tenant.client.get("/Users")).status_code == 200
        assert (await tenant.client.post("/Users", json=entra_user("still.works@x"))).status_code == 201
        # Another address has its own budget.
        transport = httpx.ASGITransport(app=tenant.app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=tenant.url) as elsewhere:
            assert (await elsewhere.get("/Users", headers=bad)).status_code == 401
        # The window passes: failures are answered 401 again.
        await asyncio.sleep(2.1)
        assert (await tenant.client.get("/Users", headers=bad)).status_code == 401


async def test_one_idps_key_sees_and_touches_nothing_of_another(database_url: str) -> None:
    async with configured_tenant(database_url) as a:
        b_key, b_secret = await a.store.create_api_key("b", "", True, True)
        b_idp = await a.store.create_idp("b", "key", b_key.id)
        b_url = f"https://scim.test/v1/scim/{b_idp.id}"
        b_auth = {"Authorization": f"Bearer {b_secret}"}
        user = (await a.client.post(f"{b_url}/Users", json=entra_user("b.user@x"), headers=b_auth)).json()
        group = (await a.client.post(f"{b_url}/Groups", json={"displayName": "B group"}, headers=b_auth)).json()
        before = (await a.client.get(f"{b_url}/Users/{user['id']}", headers=b_auth)).content

        # A's key on B's URL: 401, for every method.
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            response = await a.client.request(method, f"{b_url}/Users/{user['id']}", json={})
            assert response.status_code == 401
        # B's ids through A's own URL: not found, not listed, not changed.
        assert (await a.client.get(f"/Users/{user['id']}")).status_code == 404
        assert (await a.client.get(f"/Groups/{group['id']}")).status_code == 404
        listed = await a.client.get("/Users", params={"filter": 'userName eq "b.user@x"'})
        assert listed.json()["totalResults"] == 0
        assert (await a.client.get("/Groups")).json()["totalResults"] == 0
        change = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": "pwned"}]}
        assert (await a.client.patch(f"/Users/{user['id']}", json=change)).status_code == 404
        assert (await a.client.put(f"/Users/{user['id']}", json=entra_user("b.user@x"))).status_code == 404
        assert (await a.client.delete(f"/Users/{user['id']}")).status_code == 404
        # B's user cannot be pulled into one of A's groups either.
        mine = (await a.client.post("/Groups", json={"displayName": "A group"})).json()
        add = {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
        }
        assert (await a.client.patch(f"/Groups/{mine['id']}", json=add)).status_code == 400
        # A user of the same name in A is no conflict: names are unique per IdP.
        assert (await a.client.post("/Users", json=entra_user("b.user@x"))).status_code == 201
        assert (await a.client.get(f"{b_url}/Users/{user['id']}", headers=b_auth)).content == before


async def test_write_privileges_are_enforced_with_403(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        user = (await tenant.client.post("/Users", json=entra_user("kept@x"))).json()
        group = (await tenant.client.post("/Groups", json={"displayName": "Kept"})).json()
        users_only_key, users_only = await tenant.store.create_api_key("users only", "", True, False)
        read_only_key, read_only = await tenant.store.create_api_key("read only", "", False, False)
        change = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "displayName", "value": "X"}]}
        for key, secret, denied in [(users_only_key, users_only, "Groups"), (read_only_key, read_only, "Users")]:
            await tenant.store.set_idp_api_key(tenant.idp_id, key.id)
            auth = {"Authorization": f"Bearer {secret}"}
            target = user if denied == "Users" else group
            body = entra_user("new@x") if denied == "Users" else {"displayName": "New"}
            for method, url, payload in [
                ("POST", f"/{denied}", body),
                ("PUT", f"/{denied}/{target['id']}", body),
                ("PATCH", f"/{denied}/{target['id']}", change),
                ("DELETE", f"/{denied}/{target['id']}", None),
            ]:
                response = await tenant.client.request(method, url, json=payload, headers=auth)
                assert response.status_code == 403, (key.name, method, url)
                assert f"{denied} write privilege" in response.json()["detail"]
            assert (await tenant.client.get(f"/{denied}/{target['id']}", headers=auth)).status_code == 200
        assert await tenant.store.counts(tenant.idp_id) == {"users": 1, "groups": 1}
        await tenant.store.set_idp_api_key(tenant.idp_id, "test")
        assert (await tenant.client.get(f"/Users/{user['id']}")).json()["meta"]["version"] == 'W/"1"'
        assert (await tenant.client.get(f"/Groups/{group['id']}")).json()["displayName"] == "Kept"
