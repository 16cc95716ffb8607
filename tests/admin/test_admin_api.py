"""The admin JSON API under /v1/admin, with the admin token and with a console session."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import BASE, CLIENT_ADDRESS, TOKEN, Admin, admin_settings, open_admin
from tests.conftest import entra_user, patch_body

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(admin: Admin) -> httpx.AsyncClient:
    """The admin API with the admin token (no cookies involved)."""
    async with httpx.AsyncClient(
        transport=admin.client._transport, base_url=f"{BASE}/v1/admin", headers=BEARER
    ) as client:
        yield client


async def test_no_credentials_wrong_token_or_token_off_is_401(admin: Admin, tmp_path: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = await admin.client.get("/v1/admin/apikeys", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/json"
        assert response.json()["status"] == 401 and response.json()["detail"]
    settings = admin_settings(tmp_path / "off", SCIMLET_ADMIN_TOKEN=None)
    store, app = await open_admin(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT_ADDRESS), base_url=BASE
        ) as client:
            response = await client.get("/v1/admin/apikeys", headers={"Authorization": "Bearer "})
            assert response.status_code == 401
            assert "[admin] token" in response.json()["detail"]
    finally:
        await store.close()


async def test_wrong_tokens_are_throttled(admin: Admin) -> None:
    admin.auth.throttle.clock = lambda: 10.0
    for _ in range(5):
        assert (await admin.client.get("/v1/admin/idps", headers={"Authorization": "Bearer bad"})).status_code == 401
    throttled = await admin.client.get("/v1/admin/idps", headers=BEARER)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"


async def test_session_cookie_works_and_unsafe_calls_need_the_csrf_header(signed_in: Admin) -> None:
    client = signed_in.client
    session = await client.get("/v1/admin/session")
    assert session.status_code == 200
    assert session.json()["auth"] == "session" and session.json()["csrf_token"] == signed_in.csrf
    assert (await client.get("/v1/admin/apikeys")).status_code == 200
    missing = await client.post("/v1/admin/apikeys", json={"name": "via cookie"})
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    wrong = await client.post("/v1/admin/apikeys", json={"name": "via cookie"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    assert await signed_in.store.list_api_keys() == []
    created = await client.post(
        "/v1/admin/apikeys", json={"name": "via cookie"}, headers={"X-CSRF-Token": signed_in.csrf}
    )
    assert created.status_code == 201
    idp = await client.post("/v1/admin/idps", json={"name": "x"})
    assert idp.status_code == 403
    await signed_in.post("/admin/logout")
    assert (await client.get("/v1/admin/apikeys")).status_code == 401


async def test_token_calls_need_no_csrf_header(api: httpx.AsyncClient) -> None:
    session = await api.get("/session")
    assert session.json() == {"auth": "token"}
    assert (await api.post("/apikeys", json={"name": "scripted"})).status_code == 201


async def test_api_keys_create_list_get_revoke(api: httpx.AsyncClient, admin: Admin) -> None:
    created = await api.post(
        "/apikeys", json={"name": "Entra", "description": "prod", "users_write": True, "groups_write": True}
    )
    assert created.status_code == 201
    key = created.json()
    assert key["privileges"] == ["users", "groups"] and key["revoked"] is None and key["secret"]
    assert created.headers["cache-control"] == "no-store"
    listing = (await api.get("/apikeys")).json()["Resources"]
    assert [k["name"] for k in listing] == ["Entra"] and "secret" not in listing[0]
    assert (await api.get(f"/apikeys/{key['id']}")).json()["description"] == "prod"
    assert (await api.get("/apikeys/entra")).json()["id"] == key["id"]  # by name, any case
    idp = await admin.store.create_idp("Entra", "key", key["id"])
    async with httpx.AsyncClient(
        transport=admin.client._transport,
        base_url=f"{BASE}/v1/scim/{idp.id}",
        headers={"Authorization": f"Bearer {key['secret']}"},
    ) as scim:
        assert (await scim.get("/Users")).status_code == 200
        revoked = await api.post(f"/apikeys/{key['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked"]
        assert (await scim.get("/Users")).status_code == 401


async def test_api_keys_bad_requests(api: httpx.AsyncClient) -> None:
    await api.post("/apikeys", json={"name": "taken"})
    cases = [
        ({"name": "Taken"}, 409),
        ({}, 400),
        ({"name": ""}, 400),
        ({"name": 5}, 400),
        ({"name": "x", "users_write": "yes"}, 400),
        ({"name": "x" * 101}, 400),
    ]
    for body, status in cases:
        response = await api.post("/apikeys", json=body)
        assert response.status_code == status, body
        assert response.json()["detail"]
    for content in (b"not json", b"[1, 2]", b""):
        response = await api.post("/apikeys", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
    assert (await api.post("/apikeys", content=b"{" + b" " * 70_000 + b"}")).status_code == 413
    assert (await api.get("/apikeys/nope")).status_code == 404
    assert (await api.post("/apikeys/nope/revoke")).status_code == 404
    assert [k["name"] for k in (await api.get("/apikeys")).json()["Resources"]] == ["taken"]


async def test_idps_create_get_configure_delete(api: httpx.AsyncClient) -> None:
    key = (await api.post("/apikeys", json={"name": "k1", "users_write": True, "groups_write": True})).json()
    other = (await api.post("/apikeys", json={"name": "k2", "users_write": True, "groups_write": True})).json()
    created = await api.post("/idps", json={"name": "Entra", "icon": "cloud", "api_key": key["id"]})
    assert created.status_code == 201
    idp = created.json()
    assert idp["tenant_url"] == f"{BASE}/v1/scim/{idp['id']}" and idp["icon"] == "cloud"
    assert idp["api_key_id"] == key["id"]
    assert (await api.get(f"/idps/{idp['id']}")).json() == idp
    assert [i["id"] for i in (await api.get("/idps")).json()["Resources"]] == [idp["id"]]
    configured = await api.put(f"/idps/{idp['id']}/apikey", json={"api_key": "k2"})
    assert configured.status_code == 200 and configured.json()["api_key_id"] == other["id"]
    assert (await api.delete(f"/idps/{idp['id']}")).status_code == 204
    assert (await api.get(f"/idps/{idp['id']}")).status_code == 404
    assert (await api.delete(f"/idps/{idp['id']}")).status_code == 404


async def test_idps_bad_requests(api: httpx.AsyncClient) -> None:
    await api.post("/idps", json={"name": "Taken"})
    for body, status in (
        ({"name": "taken"}, 409),
        ({"name": "x", "icon": "nope"}, 400),
        ({"name": "x", "api_key": "missing"}, 404),
        ({"icon": "key"}, 400),
    ):
        response = await api.post("/idps", json=body)
        assert response.status_code == status, body
    idp_id = (await api.get("/idps")).json()["Resources"][0]["id"]
    assert (await api.put(f"/idps/{idp_id}/apikey", json={})).status_code == 400
    assert (await api.put(f"/idps/{idp_id}/apikey", json={"api_key": "missing"})).status_code == 404
    assert (await api.put("/idps/nope/apikey", json={"api_key": "x"})).status_code == 404
    assert [i["name"] for i in (await api.get("/idps")).json()["Resources"]] == ["Taken"]


async def test_directory_read_access_with_filter_and_paging(api: httpx.AsyncClient, admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    ids = []
    for i in range(5):
        ids.append((await tenant.scim.post("/Users", json=entra_user(f"u{i}@contoso.com"))).json()["id"])
    await tenant.scim.patch(f"/Users/{ids[4]}", json=patch_body({"op": "replace", "path": "active", "value": False}))
    group = (await tenant.scim.post("/Groups", json={"displayName": "Sales", "members": [{"value": ids[0]}]})).json()
    base = f"/idps/{tenant.idp_id}"
    first = (await api.get(f"{base}/users", params={"count": 2})).json()
    assert first["totalResults"] == 5 and first["previous"] is None and first["next"] == "u1@contoso.com"
    assert [u["userName"] for u in first["Resources"]] == ["u0@contoso.com", "u1@contoso.com"]
    assert first["Resources"][0]["groups"][0]["display"] == "Sales"
    assert first["Resources"][0]["meta"]["location"] == f"{tenant.url}/Users/{ids[0]}"
    second = (await api.get(f"{base}/users", params={"count": 2, "after": first["next"]})).json()
    assert [u["userName"] for u in second["Resources"]] == ["u2@contoso.com", "u3@contoso.com"]
    assert second["previous"] == "u2@contoso.com"
    back = (await api.get(f"{base}/users", params={"count": 2, "before": second["previous"]})).json()
    assert [u["userName"] for u in back["Resources"]] == ["u0@contoso.com", "u1@contoso.com"]
    inactive = (await api.get(f"{base}/users", params={"filter": "active eq false"})).json()
    assert [u["userName"] for u in inactive["Resources"]] == ["u4@contoso.com"]
    text = (await api.get(f"{base}/users", params={"q": "U3@"})).json()
    assert [u["userName"] for u in text["Resources"]] == ["u3@contoso.com"]
    groups = (await api.get(f"{base}/groups")).json()
    assert [(g["displayName"], g["memberCount"]) for g in groups["Resources"]] == [("Sales", 1)]
    user = (await api.get(f"{base}/users/{ids[0]}")).json()
    assert user["id"] == ids[0] and user["groups"][0]["value"] == group["id"]
    detail = (await api.get(f"{base}/groups/{group['id']}")).json()
    assert detail["memberCount"] == 1 and detail["members"][0]["value"] == ids[0]


async def test_directory_bad_requests(api: httpx.AsyncClient, admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    base = f"/idps/{tenant.idp_id}"
    bad = await api.get(f"{base}/users", params={"filter": 'userName eq "open'})
    assert bad.status_code == 400 and bad.json()["detail"]
    assert (await api.get(f"{base}/users", params={"filter": "nosuch eq 1"})).status_code == 400
    assert (await api.get(f"{base}/users", params={"filter": ""})).status_code == 400
    assert (await api.get(f"{base}/users", params={"filter": "active pr", "q": "x"})).status_code == 400
    assert (await api.get(f"{base}/users", params={"count": "many"})).status_code == 400
    assert (await api.get("/idps/nope/users")).status_code == 404
    assert (await api.get(f"{base}/users/nope")).status_code == 404
    assert (await api.get(f"{base}/groups/nope")).status_code == 404


async def test_logs_query_detail_and_counters(api: httpx.AsyncClient, admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    await tenant.scim.post("/Users", json=entra_user("jo@contoso.com"))
    await tenant.scim.post("/Users", json=entra_user("jo@contoso.com"))
    for i in range(3):
        await tenant.scim.get("/Users", params={"filter": f'userName eq "x{i}"'})
    await admin.flush_logs()
    every = (await api.get("/logs")).json()
    assert [r["operation"] for r in every["Resources"]] == ["Find User"] * 3 + ["Create User"] * 2
    assert every["next"] is None
    failures = (await api.get("/logs", params={"outcome": "failure", "idp": tenant.idp_id})).json()["Resources"]
    assert [(r["status"], r["scim_type"], r["outcome"]) for r in failures] == [(409, "uniqueness", "failure")]
    assert "request_body" not in failures[0]
    page = (await api.get("/logs", params={"count": 2})).json()
    older = (await api.get("/logs", params={"count": 2, "before": page["next"]})).json()
    assert len(older["Resources"]) == 2 and older["Resources"][0]["id"] < page["Resources"][-1]["id"]
    creates = (await api.get("/logs", params={"operation": "Create User", "q": "jo@"})).json()["Resources"]
    assert [r["target"] for r in creates] == ["jo@contoso.com"] * 2
    detail = (await api.get(f"/logs/{failures[0]['id']}")).json()
    assert '"userName":"jo@contoso.com"' in detail["request_body"].replace(" ", "")
    assert "already taken" in detail["response_body"]
    counters = (await api.get("/logs/counters")).json()
    assert counters["hours"] == 24
    [row] = counters["Resources"]
    assert (row["idp_id"], row["operations"], row["failures"]) == (tenant.idp_id, 5, 1)
    assert row["last_activity"] >= detail["time"]


async def test_logs_bad_requests(api: httpx.AsyncClient) -> None:
    for params in (
        {"outcome": "maybe"},
        {"since": "noon"},
        {"until": "2025-13-40"},
        {"before": "x"},
        {"count": "lots"},
    ):
        response = await api.get("/logs", params=params)
        assert response.status_code == 400, params
        assert response.json()["detail"]
    assert (await api.get("/logs/123456")).status_code == 404
    assert (await api.get("/logs/counters", params={"hours": "0"})).status_code == 400


async def test_unknown_endpoints_and_methods(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nothing-here")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("No admin API endpoint")
    wrong = await api.patch("/apikeys")
    assert wrong.status_code == 405 and wrong.json()["status"] == 405


ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


async def test_an_idps_schema_is_set_at_creation_read_changed_and_reported(api: httpx.AsyncClient) -> None:
    key = (await api.post("/apikeys", json={"name": "k", "users_write": True, "groups_write": True})).json()
    created = await api.post(
        "/idps",
        json={
            "name": "Any app",
            "api_key": key["id"],
            "profile": "rfc7643",
            "extensions": [{"id": ACME, "attributes": [{"name": "costCenter"}]}],
        },
    )
    assert created.status_code == 201, created.text
    idp = created.json()
    assert (idp["schema"]["profile"], idp["schema"]["strict"]) == ("rfc7643", False)
    assert idp["schema"]["extensions"][0]["attributes"][0] == {
        "name": "costCenter",
        "type": "string",
        "multiValued": False,
        "description": "",
        "required": False,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
        "canonicalValues": [],
        "referenceTypes": [],
        "subAttributes": [],
    }
    report = (await api.get(f"/idps/{idp['id']}/schema")).json()
    assert report["schema"] == idp["schema"] and report["ignored"] == []
    assert report["failing_users"] == {"failing": 0, "checked": 0, "complete": True, "examples": []}
    assert ("User", "userPrincipalName", "userName") in {
        (m["resource_type"], m["source"], m["target"]) for m in report["schema"]["mappings"]
    }

    # PATCH changes what it names and keeps the rest.
    patched = await api.patch(f"/idps/{idp['id']}/schema", json={"strict": True})
    assert patched.status_code == 200
    assert patched.json()["changes"] == [
        "Strict on: a request that sends an attribute this IdP does not keep is refused with 400 invalidValue."
    ]
    assert patched.json()["schema"]["profile"] == "rfc7643" and patched.json()["schema"]["extensions"]
    # PUT replaces the whole: what it leaves out gets its default.
    replaced = (await api.put(f"/idps/{idp['id']}/schema", json={"profile": "meta-networks"})).json()
    assert (replaced["schema"]["profile"], replaced["schema"]["strict"], replaced["schema"]["extensions"]) == (
        "meta-networks",
        False,
        [],
    )
    assert any(change.startswith("Removed " + ACME) for change in replaced["changes"])
    assert (await api.get(f"/idps/{idp['id']}")).json()["schema"] == replaced["schema"]


async def test_a_stricter_profile_counts_the_stored_users_it_would_refuse(api: httpx.AsyncClient, admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    await api.put(f"/idps/{tenant.idp_id}/schema", json={"profile": "rfc7643"})
    for body in (
        {"userName": "nameless@x"},
        {
            "userName": "dashes@x",
            "name": {"givenName": "A", "familyName": "B"},
            "phoneNumbers": [{"type": "work", "value": "312-320-0932"}],
        },
        entra_user("fine@x"),
    ):
        response = await tenant.scim.post("/Users", json=body)
        assert response.status_code == 201, response.text
    stricter = (await api.patch(f"/idps/{tenant.idp_id}/schema", json={"profile": "meta-networks"})).json()
    assert stricter["changes"][0].startswith("Schema profile rfc7643 → meta-networks")
    assert {k: stricter["failing_users"][k] for k in ("failing", "checked", "complete")} == {
        "failing": 2,
        "checked": 3,
        "complete": True,
    }
    examples = {e["userName"]: e["detail"] for e in stricter["failing_users"]["examples"]}
    assert set(examples) == {"nameless@x", "dashes@x"} and "E.164" in examples["dashes@x"]
    # Nothing stored changed: each user reads back as it was written.
    listed = (await tenant.scim.get("/Users", params={"filter": 'userName eq "dashes@x"'})).json()
    assert listed["Resources"][0]["phoneNumbers"] == [{"type": "work", "value": "312-320-0932"}]


async def test_schema_changes_are_refused_with_what_to_fix(api: httpx.AsyncClient) -> None:
    idp = (await api.post("/idps", json={"name": "x"})).json()
    for body, detail in (
        ({"profile": "okta"}, "Unknown schema profile 'okta'; choose one of meta-networks, rfc7643"),
        ({"extensions": {"id": ACME}}, "Extension schemas are a JSON array of schema declarations"),
        ({"extensions": [{"id": ACME, "attributes": [{"name": "a", "type": "float"}]}]}, "type"),
        (
            {"extensions": [{"id": "urn:ietf:params:scim:schemas:core:2.0:User", "attributes": [{"name": "a"}]}]},
            "one of the server's own schemas",
        ),
        ({"colour": "red"}, "Unknown field 'colour'"),
    ):
        response = await api.patch(f"/idps/{idp['id']}/schema", json=body)
        assert response.status_code == 400, body
        assert detail in response.json()["detail"], response.json()
    created = await api.post("/idps", json={"name": "y", "profile": "nope"})
    assert created.status_code == 400 and "Unknown schema profile" in created.json()["detail"]
    assert [i["name"] for i in (await api.get("/idps")).json()["Resources"]] == ["x"]
    assert (await api.patch("/idps/missing/schema", json={"strict": True})).status_code == 404
    assert (await api.get(f"/idps/{idp['id']}/schema")).json()["schema"]["profile"] == "meta-networks"


async def test_user_reads_and_listings_answer_declared_extension_values(api: httpx.AsyncClient, admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    declarations = [{"id": ACME, "attributes": [{"name": "costCenter"}, {"name": "badge", "type": "integer"}]}]
    assert (await api.patch(f"/idps/{tenant.idp_id}/schema", json={"extensions": declarations})).status_code == 200
    body = entra_user("ann@x", **{f"{ACME}:costCenter": "CC-7", f"{ACME}:badge": 7})
    created = await tenant.scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    one = (await api.get(f"/idps/{tenant.idp_id}/users/{created.json()['id']}")).json()
    assert one[ACME] == {"costCenter": "CC-7", "badge": 7}
    listed = await api.get(f"/idps/{tenant.idp_id}/users", params={"filter": f"{ACME}:badge ge 7"})
    assert listed.status_code == 200, listed.text
    assert [r[ACME] for r in listed.json()["Resources"]] == [{"costCenter": "CC-7", "badge": 7}]
