"""Entra's user and group lifecycles against a real `python app.py serve` process over real HTTP."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import httpx

from tests.conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    LiveServer,
    entra_user,
    patch_body,
)
from tests.live_server import running, server_at

FORM = {"Content-Type": "application/scim+json; charset=utf-8"}


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.tenant_url, headers={"Authorization": f"Bearer {server.secret}"}, timeout=10)


def test_user_lifecycle(live_server: LiveServer) -> None:
    with client(live_server) as http:
        probe = http.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")
        assert probe.status_code == 200
        assert probe.json()["totalResults"] == 0 and probe.json()["Resources"] == []

        lookup = http.get("/Users?filter=userName+eq+%22alice%40contoso.com%22")
        assert lookup.json()["totalResults"] == 0
        created = http.post("/Users", json=entra_user("alice@contoso.com"), headers=FORM)
        assert created.status_code == 201
        user_id = created.json()["id"]
        assert created.headers["location"].endswith(f"/Users/{user_id}")

        duplicate = http.post("/Users", json=entra_user("ALICE@contoso.com"))
        assert duplicate.status_code == 409 and duplicate.json()["scimType"] == "uniqueness"

        legacy = http.patch(
            f"/Users/{user_id}",
            json=patch_body(
                {"op": "Replace", "path": "name.familyName", "value": "Jones"},
                {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+16175550000"},
            ),
        )
        assert legacy.status_code == 200
        assert legacy.json()["name"]["familyName"] == "Jones"

        modern = http.patch(
            f"/Users/{user_id}?aadOptscim062020",
            json=patch_body(
                {"op": "replace", "value": {"name.givenName": "Alicia", f"{ENTERPRISE}:department": "Sales"}}
            ),
        )
        assert modern.status_code == 200
        assert modern.json()["name"]["givenName"] == "Alicia"
        assert modern.json()[ENTERPRISE]["department"] == "Sales"

        disabled = http.patch(
            f"/Users/{user_id}", json=patch_body({"op": "Replace", "path": "active", "value": "False"})
        )
        assert disabled.status_code == 200 and disabled.json()["active"] is False

        found = http.get("/Users", params={"filter": 'userName eq "Alice@Contoso.com"'}).json()
        assert found["totalResults"] == 1 and found["Resources"][0]["active"] is False

        assert http.delete(f"/Users/{user_id}").status_code == 204
        assert http.get(f"/Users/{user_id}").status_code == 404
        assert http.delete(f"/Users/{user_id}").status_code == 404

        wrong = http.get("/Users", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]


def test_group_lifecycle(live_server: LiveServer) -> None:
    with client(live_server) as http:
        probe = http.get(f"/Groups?excludedAttributes=members&filter=displayName+eq+%22{uuid.uuid4()}%22")
        assert probe.status_code == 200 and probe.json()["totalResults"] == 0

        users = [http.post("/Users", json=entra_user(f"user{i}")).json()["id"] for i in range(3)]
        created = http.post(
            "/Groups",
            json={
                "schemas": [GROUP_SCHEMA],
                "displayName": "Sales",
                "externalId": str(uuid.uuid4()),
                "meta": {"resourceType": "Group"},
            },
        )
        assert created.status_code == 201
        group_id = created.json()["id"]
        assert http.post("/Groups", json={"displayName": "sales"}).status_code == 409

        found = http.get("/Groups", params={"filter": 'displayName eq "SALES"', "excludedAttributes": "members"})
        assert found.json()["Resources"][0]["id"] == group_id

        add = http.patch(
            f"/Groups/{group_id}",
            json=patch_body({"op": "Add", "path": "members", "value": [{"$ref": None, "value": u} for u in users]}),
        )
        assert add.status_code == 204
        legacy_remove = http.patch(
            f"/Groups/{group_id}",
            json=patch_body({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": users[0]}]}),
        )
        assert legacy_remove.status_code == 204
        rfc_remove = http.patch(
            f"/Groups/{group_id}?aadOptscim062020",
            json=patch_body({"op": "remove", "path": f'members[value eq "{users[1]}"]'}),
        )
        assert rfc_remove.status_code == 204
        members = {m["value"] for m in http.get(f"/Groups/{group_id}").json()["members"]}
        assert members == {users[2]}

        rename = http.patch(
            f"/Groups/{group_id}", json=patch_body({"op": "replace", "value": {"displayName": "Sales EMEA"}})
        )
        assert rename.status_code == 204
        assert http.get(f"/Groups/{group_id}").json()["displayName"] == "Sales EMEA"

        both = http.patch(
            f"/Groups/{group_id}",
            json=patch_body(
                {"op": "add", "path": "members", "value": [{"value": users[0]}]},
                {"op": "remove", "path": "members", "value": [{"value": users[0]}]},
            ),
        )
        assert both.status_code == 204
        assert {m["value"] for m in http.get(f"/Groups/{group_id}").json()["members"]} == {users[2]}

        assert http.delete(f"/Groups/{group_id}").status_code == 204
        assert http.get(f"/Groups/{group_id}").status_code == 404


def test_first_start_prints_tenant_url_and_secret_once(database_url: str, tmp_path: Path) -> None:
    # A fresh database with no IdP bootstraps a Default IdP and key on the first start.
    first = server_at(database_url, tmp_path / "first.out", provision=False)
    with running(first):
        assert "Default" in first.cli("idp", "list", "--json").stdout
    output = first.output()
    assert "Tenant URL:" in output and "/v1/scim/" in output
    secret = output.split("Secret Token:")[1].split()[0]
    tenant = output.split("Tenant URL:")[1].split()[0]
    second = dataclasses.replace(first, output_path=tmp_path / "second.out", process=None)
    with running(second):
        response = httpx.get(f"{tenant}/Users", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200
    assert secret not in second.output()
