"""Configured limits, through the in-process app: write-queue overload (429 + Retry-After), filter
length and depth, the body-read timeout (408), the OpenAPI description."""

from __future__ import annotations

import asyncio
import time

import httpx

from scim.errors import ERROR_SCHEMA
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, SCHEMAS, USER_TYPE
from tests.conftest import entra_user
from tests.hardening.asgi import configured_tenant


def assert_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status) and body["detail"]
    assert body.get("scimType") == scim_type
    return body


async def test_writes_past_the_queue_depth_get_429_with_retry_after_and_nothing_is_lost(database_url: str) -> None:
    async with configured_tenant(database_url, scim_max_write_queue=3) as tenant:
        names = [f"burst{i}@x" for i in range(200)]
        responses = await asyncio.gather(*(tenant.client.post("/Users", json=entra_user(n)) for n in names))
        refused = [name for name, r in zip(names, responses, strict=True) if r.status_code == 429]
        accepted = [name for name, r in zip(names, responses, strict=True) if r.status_code == 201]
        assert refused and accepted and len(refused) + len(accepted) == 200
        for response in responses:
            if response.status_code == 429:
                assert_error(response, 429)
                assert int(response.headers["retry-after"]) >= 1
        assert (await tenant.store.counts(tenant.idp_id))["users"] == len(accepted)
        # A client that honours Retry-After gets every refused write in afterwards.
        for name in refused:
            assert (await tenant.client.post("/Users", json=entra_user(name))).status_code == 201
        page = await tenant.client.get("/Users", params={"count": "1000", "attributes": "userName"})
        assert sorted(u["userName"] for u in page.json()["Resources"]) == sorted(names)


async def test_filter_length_and_depth_limits_come_from_the_config(database_url: str) -> None:
    async with configured_tenant(database_url, scim_max_filter_length=60, scim_max_filter_depth=2) as tenant:
        await tenant.client.post("/Users", json=entra_user("deep@x"))
        ok = await tenant.client.get("/Users", params={"filter": '((userName eq "deep@x"))'})
        assert ok.status_code == 200 and ok.json()["totalResults"] == 1
        deep = await tenant.client.get("/Users", params={"filter": '(((userName eq "deep@x")))'})
        assert "deeper than 2 levels" in assert_error(deep, 400, "invalidFilter")["detail"]
        text = 'userName eq "' + "x" * 60 + '"'
        long = await tenant.client.get("/Users", params={"filter": text})
        assert "the limit is 60" in assert_error(long, 400, "invalidFilter")["detail"]
        search = await tenant.client.post("/Users/.search", json={"filter": text})
        assert_error(search, 400, "invalidFilter")


async def test_defaults_accept_what_entra_sends_and_refuse_a_flood(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        await tenant.client.post("/Users", json=entra_user("alice@contoso.com"))
        found = await tenant.client.get("/Users", params={"filter": 'userName eq "alice@contoso.com"'})
        assert found.json()["totalResults"] == 1
        flood = " or ".join(['userName eq "x"'] * 400)
        assert_error(await tenant.client.get("/Users", params={"filter": flood}), 400, "invalidFilter")
        nested = "(" * 33 + 'userName eq "x"' + ")" * 33
        assert_error(await tenant.client.get("/Users", params={"filter": nested}), 400, "invalidFilter")


async def test_a_body_that_trickles_past_the_timeout_gets_408_and_writes_nothing(database_url: str) -> None:
    async with configured_tenant(database_url, server_body_timeout=1) as tenant:

        async def trickle():
            yield b'{"userName": "slow@x", '
            await asyncio.sleep(3)
            yield b'"name": {"givenName": "a", "familyName": "b"}}'

        started = time.monotonic()
        response = await tenant.client.post(
            "/Users", content=trickle(), headers={"content-type": "application/scim+json"}
        )
        assert time.monotonic() - started < 2.5
        assert "1 seconds" in assert_error(response, 408)["detail"]
        assert (await tenant.store.counts(tenant.idp_id))["users"] == 0


async def test_openapi_describes_every_route_and_attribute(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        response = await tenant.client.get("https://scim.test/openapi.json", headers={"Authorization": ""})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        doc = response.json()
    assert doc["openapi"].startswith("3.0")
    assert doc["servers"][0]["url"] == "https://scim.test/v1/scim/{idpId}"
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearer": []}]
    expected = {
        "/Users": {"get", "post"},
        "/Users/.search": {"post"},
        "/Users/{id}": {"get", "put", "patch", "delete"},
        "/Groups": {"get", "post"},
        "/Groups/.search": {"post"},
        "/Groups/{id}": {"get", "put", "patch", "delete"},
        "/ServiceProviderConfig": {"get"},
        "/ResourceTypes": {"get"},
        "/ResourceTypes/{name}": {"get"},
        "/Schemas": {"get"},
        "/Schemas/{urn}": {"get"},
        "/Bulk": {"post"},
        "/": {"get"},
        "/.search": {"post"},
    }
    assert {path: set(ops) for path, ops in doc["paths"].items()} == expected
    user = doc["components"]["schemas"]["User"]["properties"]
    for attr in SCHEMAS[USER_TYPE.schema].attributes:
        assert attr.name in user
    assert set(user[ENTERPRISE_USER]["properties"]) == {a.name for a in SCHEMAS[ENTERPRISE_USER].attributes}
    assert user["password"]["writeOnly"] is True and user["groups"]["readOnly"] is True
    assert "members" in doc["components"]["schemas"]["Group"]["properties"]
    user_input = doc["components"]["schemas"]["UserInput"]
    assert user_input["required"] == ["userName", "name"]
    assert user_input["properties"]["name"]["required"] == ["familyName", "givenName"]
    assert "id" not in user_input["properties"] and "groups" not in user_input["properties"]
    assert doc["components"]["schemas"]["GroupInput"]["required"] == ["displayName"]
    assert GROUP_TYPE.endpoint in doc["paths"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], (path, method)
            assert any(code.startswith("2") for code in operation["responses"]), (path, method)

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [v for k, v in node.items() if k == "$ref" and isinstance(v, str)]
            return own + [r for v in node.values() for r in refs(v)]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    for ref in refs(doc):  # every reference resolves
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["schemas", "status", "detail"]
