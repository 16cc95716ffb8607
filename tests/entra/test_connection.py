"""Test Connection, the aadOptscim062020 flag on every route, and the Content-Types Entra sends."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import LiveServer
from tests.entra.shapes import (
    ENTRA_JSON,
    FLAG,
    LIST_RESPONSE,
    SCIM_JSON,
    assert_scim_error,
    create_group,
    create_user,
    eq_filter,
    group_body,
    patch,
    send,
    unique,
    upn,
    user_body,
)

EMPTY_LIST = {"schemas": [LIST_RESPONSE], "totalResults": 0, "Resources": [], "startIndex": 1, "itemsPerPage": 0}


def test_test_connection_on_users_is_an_empty_list(http: httpx.Client) -> None:
    response = http.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(SCIM_JSON)
    assert response.json() == EMPTY_LIST


def test_test_connection_on_groups_is_an_empty_list(http: httpx.Client) -> None:
    response = http.get(f"/Groups?excludedAttributes=members&{eq_filter('displayName', str(uuid.uuid4()))}")
    assert response.status_code == 200
    assert response.json() == EMPTY_LIST
    plain = http.get(f"/Groups?{eq_filter('displayName', str(uuid.uuid4()))}")
    assert plain.status_code == 200 and plain.json() == EMPTY_LIST


def test_test_connection_with_a_wrong_token_is_401(entra_server: LiveServer) -> None:
    response = httpx.get(
        f"{entra_server.tenant_url}/Users?filter=userName+eq+%22{uuid.uuid4()}%22",
        headers={"Authorization": "Bearer not-the-secret"},
    )
    assert_scim_error(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def test_form_encoded_filter_matches_regardless_of_case(http: httpx.Client) -> None:
    name = upn("Form.Encoded")
    created = create_user(http, name)
    # Entra encodes "@" as %40 and spaces as "+", and its userPrincipalName case may differ from ours.
    for query in (
        eq_filter("userName", name),
        eq_filter("userName", name.upper()),
        "filter=" + f'userName eq "{name.lower()}"'.replace(" ", "%20").replace('"', "%22"),
    ):
        found = http.get(f"/Users?{query}")
        assert found.status_code == 200, query
        assert [r["id"] for r in found.json()["Resources"]] == [created["id"]], query


def test_the_flag_is_ignored_on_every_route(http: httpx.Client) -> None:
    """Entra appends ?aadOptscim062020 to the tenant URL, so it arrives on every request."""
    name = upn("flag")
    probe = http.get(f"/Users?{FLAG}&filter=userName+eq+%22{uuid.uuid4()}%22")
    assert probe.status_code == 200 and probe.json() == EMPTY_LIST
    probe = http.get(f"/Groups?excludedAttributes=members&{eq_filter('displayName', str(uuid.uuid4()))}&{FLAG}")
    assert probe.status_code == 200 and probe.json() == EMPTY_LIST

    created = send(http, "POST", f"/Users?{FLAG}", user_body(name))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert http.get(f"/Users/{user_id}?{FLAG}").json()["userName"] == name
    found = http.get(f"/Users?{eq_filter('userName', name)}&{FLAG}").json()
    assert found["totalResults"] == 1
    patched = send(
        http,
        "PATCH",
        f"/Users/{user_id}?{FLAG}",
        patch({"op": "replace", "value": {"name.givenName": "Flagged", "active": False}}),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"]["givenName"] == "Flagged" and patched.json()["active"] is False
    replaced = send(http, "PUT", f"/Users/{user_id}?{FLAG}", user_body(name, displayName="Put"))
    assert replaced.status_code == 200 and replaced.json()["displayName"] == "Put"

    group = send(http, "POST", f"/Groups?{FLAG}", group_body(unique("Flag Group")))
    assert group.status_code == 201, group.text
    group_id = group.json()["id"]
    added = send(
        http,
        "PATCH",
        f"/Groups/{group_id}?{FLAG}",
        patch({"op": "add", "path": "members", "value": [{"value": user_id}]}),
    )
    assert added.status_code == 204, added.text
    read = http.get(f"/Groups/{group_id}?{FLAG}&excludedAttributes=members")
    assert read.status_code == 200 and "members" not in read.json()
    listed = http.get(f"/Groups?{FLAG}&{eq_filter('displayName', group.json()['displayName'])}")
    assert listed.json()["totalResults"] == 1

    for path in (
        "/Schemas",
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/ResourceTypes/User",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
    ):
        discovered = http.get(f"{path}?{FLAG}")
        assert discovered.status_code == 200, path
        assert discovered.headers["content-type"].startswith(SCIM_JSON)

    assert http.delete(f"/Groups/{group_id}?{FLAG}").status_code == 204
    assert http.delete(f"/Users/{user_id}?{FLAG}").status_code == 204
    assert http.get(f"/Users/{user_id}?{FLAG}").status_code == 404


@pytest.mark.parametrize(
    "content_type",
    [
        ENTRA_JSON,
        "application/scim+json",
        "application/json",
        "application/json; charset=utf-8",
        "Application/SCIM+JSON;charset=UTF-8",
    ],
)
def test_bodies_are_read_with_every_content_type_entra_sends(http: httpx.Client, content_type: str) -> None:
    created = send(http, "POST", "/Users", user_body(upn("ctype")), content_type)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith(SCIM_JSON)
    user_id = created.json()["id"]
    patched = send(
        http,
        "PATCH",
        f"/Users/{user_id}",
        patch({"op": "Replace", "path": "displayName", "value": content_type}),
        content_type,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["displayName"] == content_type
    assert patched.headers["content-type"].startswith(SCIM_JSON)
    replaced = send(http, "PUT", f"/Users/{user_id}", user_body(created.json()["userName"], nickName="n"), content_type)
    assert replaced.status_code == 200 and replaced.json()["nickName"] == "n"
    group = send(http, "POST", "/Groups", group_body(unique("ctype")), content_type)
    assert group.status_code == 201, group.text
    members = send(
        http,
        "PATCH",
        f"/Groups/{group.json()['id']}",
        patch({"op": "Add", "path": "members", "value": [{"$ref": None, "value": user_id}]}),
        content_type,
    )
    assert members.status_code == 204


def test_accept_headers_never_cause_406(http: httpx.Client) -> None:
    user = create_user(http)
    for accept in (
        "application/scim+json",
        "application/json",
        "application/scim+json; charset=utf-8",
        "*/*",
        "text/html",
    ):
        response = http.get(f"/Users/{user['id']}", headers={"Accept": accept})
        assert response.status_code == 200, accept
        assert response.headers["content-type"].startswith(SCIM_JSON)


def test_every_group_read_excludes_members_without_losing_the_group(http: httpx.Client) -> None:
    user = create_user(http)
    group = create_group(http)
    assert group["members"] == []  # created empty, as docs/entra.md says
    send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "Add", "path": "members", "value": [{"value": user["id"]}]}),
    )
    one = http.get(f"/Groups/{group['id']}?excludedAttributes=members").json()
    assert "members" not in one and one["displayName"] == group["displayName"] and one["id"] == group["id"]
    listed = http.get(f"/Groups?excludedAttributes=members&{eq_filter('displayName', group['displayName'])}").json()
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]
    assert {m["value"] for m in http.get(f"/Groups/{group['id']}").json()["members"]} == {user["id"]}
