"""Why each 401 happened: recorded in the provisioning log for the admin, never told the client,
whose answer stays the one uniform 401 whatever the reason."""

from __future__ import annotations

import httpx

from storage import LogQuery
from tests.hardening.asgi import configured_tenant

VARYING_HEADERS = {"date", "x-request-id"}


def observable(response: httpx.Response) -> tuple:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k not in VARYING_HEADERS))
    return response.status_code, response.content, headers


async def get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    """GET with these headers only: without an Authorization header when they hold none."""
    request = client.build_request("GET", url, headers=headers)
    if "Authorization" not in headers:
        del request.headers["Authorization"]  # the client's default one
    return await client.send(request)


async def test_each_401_is_recorded_with_its_reason_and_answered_alike(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        other_key, other_secret = await tenant.store.create_api_key("k2", "", True, True)
        await tenant.store.create_idp("Other", "key", other_key.id)
        _, revoked_secret = await tenant.store.create_api_key("old", "", True, True)
        await tenant.store.revoke_api_key("old")
        _, spare_secret = await tenant.store.create_api_key("spare", "", True, True)
        base = "https://scim.test/v1/scim"
        mistyped = "0123456789abcdef0123456789abcdef"
        attempts = {
            "missing": (f"{tenant.url}/Users", {}),
            "basic": (f"{tenant.url}/Users", {"Authorization": f"Basic {tenant.secret}"}),
            "bearer without token": (f"{tenant.url}/Users", {"Authorization": "Bearer "}),
            "unknown secret": (f"{tenant.url}/Users", {"Authorization": f"Bearer {tenant.secret}x"}),
            "revoked": (f"{tenant.url}/Users", {"Authorization": f"Bearer {revoked_secret}"}),
            "another IdP": (f"{tenant.url}/Users", {"Authorization": f"Bearer {other_secret}"}),
            "no IdP's key": (f"{tenant.url}/Users", {"Authorization": f"Bearer {spare_secret}"}),
            "no such IdP": (f"{base}/{mistyped}/Users", {"Authorization": f"Bearer {tenant.secret}"}),
            "no such IdP, unknown secret": (f"{base}/{mistyped}/Users", {"Authorization": "Bearer guess"}),
        }
        answers = {observable(await get(tenant.client, url, headers)) for url, headers in attempts.values()}
        assert len(answers) == 1, answers
        status, content, headers = answers.pop()
        assert status == 401 and dict(headers)["www-authenticate"] == 'Bearer realm="scimlet"'
        assert b"belongs to" not in content and b"k2" not in content and b"Other" not in content

        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(failures=True, limit=50))
        details = [r.detail for r in reversed(records)]
        assert [r.status for r in records] == [401] * len(attempts)
        assert details == [
            "401: the request has no Authorization header; the client must send 'Authorization: Bearer <secret>' "
            "with the secret of the API key selected for this IdP",
            "401: the Authorization header is not a Bearer token (its scheme is 'Basic'); send "
            "'Authorization: Bearer <secret>' with the secret of the API key selected for this IdP",
            "401: the Authorization header says Bearer but holds no token; send 'Authorization: Bearer <secret>' "
            "with the secret of the API key selected for this IdP",
            "401: the secret is not that of any API key (mistyped, cut short, or of a key since deleted); this "
            "tenant URL is IdP 'test': use the secret of its key 'test', or create a new key for it",
            f"401: the secret is that of API key 'old', revoked {(await tenant.store.find_api_key('old')).revoked}; "
            "create a new key, select it for IdP 'test' and put its secret in the client",
            "401: the secret is valid but belongs to API key 'k2', selected for IdP 'Other' — this tenant URL is "
            "IdP 'test'; use this IdP's key, or fix the IdP ID in the tenant URL",
            "401: the secret is valid but belongs to API key 'spare', which is selected for no IdP — this tenant "
            "URL is IdP 'test'; use the secret of its key 'test'",
            f"401: no IdP has the ID '{mistyped}' in the tenant URL (mistyped or from a deleted IdP?); the secret "
            f"is that of API key 'test', selected for IdP 'test', whose tenant URL ends in /v1/scim/{tenant.idp_id}:"
            " fix the IdP ID in the tenant URL",
            f"401: no IdP has the ID '{mistyped}' in the tenant URL (mistyped or from a deleted IdP?); copy the "
            "tenant URL from the IdP's page in the console",
        ]
        # No secret reaches the log, whichever header carried it.
        for record in records:
            for secret in (tenant.secret, other_secret, revoked_secret, spare_secret):
                assert secret not in (record.detail or "") + (record.response_body or "") + (record.path or "")


async def test_an_idp_without_a_key_says_so(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        keyless = await tenant.store.create_idp("Keyless", "key", None)
        response = await tenant.client.get(f"https://scim.test/v1/scim/{keyless.id}/Users")
        assert response.status_code == 401
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(idp_id=keyless.id))
        assert [r.detail for r in records] == [
            "401: the secret is valid but belongs to API key 'test', selected for IdP 'test' — this tenant URL is "
            "IdP 'Keyless'; use this IdP's key, or fix the IdP ID in the tenant URL"
        ]
        guess = await tenant.client.get(
            f"https://scim.test/v1/scim/{keyless.id}/Users", headers={"Authorization": "Bearer guess"}
        )
        assert observable(guess) == observable(response)
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(idp_id=keyless.id, limit=1))
        assert records[0].detail == (
            "401: the secret is not that of any API key (mistyped, cut short, or of a key since deleted); this "
            "tenant URL is IdP 'Keyless': it has no API key selected: create one and select it on the IdP's page, "
            "or create a new key for it"
        )


async def test_the_tenant_url_of_a_deleted_idp_is_named(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        key, secret = await tenant.store.create_api_key("fab key", "", True, True)
        gone = await tenant.store.create_idp("Fabrikam", "key", key.id)
        await tenant.store.delete_idp(gone.id)
        url = f"https://scim.test/v1/scim/{gone.id}/Users"
        answers = [await tenant.client.get(url, headers={"Authorization": f"Bearer {s}"}) for s in (secret, "guess")]
        assert {observable(a) for a in answers} == {observable(await get(tenant.client, url, {}))}
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(idp_id=gone.id))
        reason = f"401: the IdP ID '{gone.id}' in the tenant URL is that of IdP 'Fabrikam', which was deleted"
        # The deleted IdP's key is selected for no IdP now: the secret names no other tenant URL.
        assert [r.detail for r in reversed(records)] == [
            f"{reason}; point the client at the tenant URL of an IdP that exists (or create one)",
            f"{reason}; point the client at the tenant URL of an IdP that exists (or create one)",
            "401: the request has no Authorization header; the client must send 'Authorization: Bearer <secret>' "
            "with the secret of the API key selected for this IdP",
        ]
