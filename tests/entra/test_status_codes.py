"""Every row of docs/entra.md's "Status codes", each provoked the way a client would."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx

from tests.conftest import LiveServer, serve_live
from tests.entra.shapes import (
    ENTRA_JSON,
    assert_scim_error,
    create_group,
    create_user,
    eq_filter,
    group_body,
    patch,
    send,
    upn,
    user_body,
)


def test_create_read_update_delete_codes(http: httpx.Client) -> None:
    created = send(http, "POST", "/Users", user_body(upn("codes")))
    assert created.status_code == 201 and created.json()["id"]
    user_id = created.json()["id"]
    assert http.get(f"/Users/{user_id}").status_code == 200
    none = http.get(f"/Users?{eq_filter('userName', 'nobody-' + uuid.uuid4().hex)}")
    assert none.status_code == 200 and none.json()["totalResults"] == 0
    updated = send(http, "PATCH", f"/Users/{user_id}", patch({"op": "Replace", "path": "title", "value": "CTO"}))
    assert updated.status_code == 200 and updated.json()["title"] == "CTO"
    group = create_group(http)
    group_update = send(
        http, "PATCH", f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": [{"value": user_id}]})
    )
    assert group_update.status_code == 204
    assert http.delete(f"/Users/{user_id}").status_code == 204
    assert_scim_error(http.delete(f"/Users/{user_id}"), 404)
    assert_scim_error(http.get(f"/Users/{uuid.uuid4()}"), 404)
    assert_scim_error(
        send(http, "PATCH", f"/Users/{uuid.uuid4()}", patch({"op": "Replace", "path": "active", "value": "False"})), 404
    )


def test_duplicates_are_409_uniqueness(http: httpx.Client) -> None:
    name = upn("conflict")
    create_user(http, name)
    assert_scim_error(send(http, "POST", "/Users", user_body(name.upper())), 409, "uniqueness")
    group = create_group(http)
    assert_scim_error(send(http, "POST", "/Groups", group_body(group["displayName"].lower())), 409, "uniqueness")


def test_bad_values_are_400_invalid_value(http: httpx.Client, profile: str) -> None:
    user = create_user(http)
    phone = send(
        http,
        "PATCH",
        f"/Users/{user['id']}",
        patch({"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "(617) 555-1212"}),
    )
    if profile == "meta-networks":
        assert "E.164" in assert_scim_error(phone, 400, "invalidValue")["detail"]
    else:  # free text on an rfc7643 IdP
        assert phone.status_code == 200 and phone.json()["phoneNumbers"][0]["value"] == "(617) 555-1212"
    assert_scim_error(
        send(http, "PATCH", f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": "maybe"})),
        400,
        "invalidValue",
    )


def test_bad_filters_are_400_invalid_filter_never_an_empty_list(http: httpx.Client) -> None:
    for text in (
        'userNam eq "x"',
        "userName eq",
        'userName eq "unterminated',
        'userName xx "a"',
        'emails[type eq "work" and ] eq "x"',
    ):
        response = http.get("/Users", params={"filter": text})
        assert_scim_error(response, 400, "invalidFilter")
    assert_scim_error(http.get("/Groups", params={"filter": 'displayNam eq "Sales"'}), 400, "invalidFilter")


def test_bad_or_missing_token_is_401_with_www_authenticate(entra_server: LiveServer) -> None:
    url = f"{entra_server.tenant_url}/Users"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {entra_server.secret}"},
        {"Authorization": "Bearer"},
    ):
        response = httpx.get(url, headers=headers)
        assert_scim_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    other_idp = url.replace(entra_server.tenant_url.rsplit("/", 1)[1], uuid.uuid4().hex)
    assert_scim_error(httpx.get(other_idp, headers={"Authorization": f"Bearer {entra_server.secret}"}), 401)


def test_a_key_without_the_write_privilege_is_403(entra_server: LiveServer) -> None:
    key_name, idp_name = f"users-only-{uuid.uuid4().hex[:6]}", f"Users only {uuid.uuid4().hex[:6]}"
    key = json.loads(entra_server.cli("apikey", "create", "--name", key_name, "--write", "users", "--json").stdout)
    idp = json.loads(entra_server.cli("idp", "create", "--name", idp_name, "--apikey", key_name, "--json").stdout)
    with httpx.Client(base_url=idp["tenant_url"], headers={"Authorization": f"Bearer {key['secret']}"}) as client:
        assert send(client, "POST", "/Users", user_body(upn("allowed"))).status_code == 201
        refused = send(client, "POST", "/Groups", group_body("refused"))
        error = assert_scim_error(refused, 403)
        assert "Groups" in error["detail"]
        assert client.get("/Groups?excludedAttributes=members").json()["totalResults"] == 0


async def _burst(server: LiveServer, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(
        base_url=server.tenant_url,
        limits=limits,
        timeout=30,
        headers={"Authorization": f"Bearer {server.secret}", "Content-Type": ENTRA_JSON},
    ) as client:
        bodies = [json.dumps(user_body(upn("burst"))).encode() for _ in range(count)]
        return await asyncio.gather(*(client.post("/Users", content=body) for body in bodies))


def test_overload_is_429_with_retry_after(database_url: str, tmp_path: Path) -> None:
    """With room for one waiting write, a burst of concurrent creates overflows the write queue."""
    with serve_live(database_url, tmp_path / "busy.out", SCIMLET_SCIM_MAX_WRITE_QUEUE="1") as server:
        refused: list[httpx.Response] = []
        accepted: list[httpx.Response] = []
        for _ in range(10):  # bounded: a few bursts at most
            responses = asyncio.run(_burst(server, 48))
            assert {r.status_code for r in responses} <= {201, 429}, [r.text for r in responses]
            refused += [r for r in responses if r.status_code == 429]
            accepted += [r for r in responses if r.status_code == 201]
            if refused:
                break
        assert refused, "no burst overflowed a write queue of depth 1"
        for response in refused:
            assert_scim_error(response, 429)
            assert int(response.headers["retry-after"]) >= 1
        # A refused create created nothing; every accepted one exists.
        with httpx.Client(base_url=server.tenant_url, headers={"Authorization": f"Bearer {server.secret}"}) as http:
            listing = http.get("/Users?count=0").json()
        assert listing["totalResults"] == len(accepted)


def test_search_across_resource_types_answers_a_list(http: httpx.Client, entra_server: LiveServer) -> None:
    """RFC 7644 §3.4.3 root searches over users and groups, after authentication; GET at the root too."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName eq "x"'}
    answer = send(http, "POST", "/.search", body)
    assert answer.status_code == 200
    assert answer.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert answer.json()["totalResults"] == 0
    assert_scim_error(httpx.post(f"{entra_server.tenant_url}/.search", json=body), 401)
    assert http.get("/.search").status_code == 405
    root = http.get("", params={"filter": 'displayName eq "nobody"'})
    assert root.status_code == 200 and root.json()["Resources"] == []
