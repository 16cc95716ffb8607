"""An Entra app with custom extension attributes, end to end against a real `python app.py serve`
on each backend: the admin declares the extension through the admin API, Entra provisions users
with it in both PATCH dialects, filters and sorts on it, reads /Schemas, the admin changes the
declaration, and the console shows what is stored and what Entra sent that was not kept."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx

from tests.admin.conftest import hidden_csrf
from tests.conftest import serve_live

ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
PASSWORD = "correct horse battery staple"


def test_an_admin_declares_an_extension_and_entra_provisions_with_it(database_url: str, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    with (
        serve_live(
            database_url, tmp_path / "live.out", SCIMLET_ADMIN_TOKEN=token, SCIMLET_ADMIN_PASSWORD=PASSWORD
        ) as server,
        httpx.Client(
            base_url=f"{server.base}/v1/admin", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as admin,
    ):
        key = admin.post("/apikeys", json={"name": "acme", "users_write": True, "groups_write": True}).json()
        created = admin.post(
            "/idps",
            json={
                "name": "Acme HR",
                "api_key": key["id"],
                "profile": "rfc7643",
                "extensions": [
                    {
                        "id": ACME,
                        "attributes": [
                            {"name": "costCenter"},
                            {"name": "badge", "type": "integer", "uniqueness": "server"},
                            {"name": "remote", "type": "boolean"},
                        ],
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        idp = created.json()
        with httpx.Client(
            base_url=idp["tenant_url"], headers={"Authorization": f"Bearer {key['secret']}"}, timeout=10
        ) as scim:
            provision_and_query(scim)
            change_the_declaration(admin, scim, idp["id"])
        first_create = admin.get("/logs", params={"idp": idp["id"], "operation": "Create User"}).json()
        check_the_console(server.base, idp["id"], first_create["Resources"][-1]["id"])


def provision_and_query(scim: httpx.Client) -> None:
    # Entra's create: URN-qualified path-less keys, strings for numbers and booleans, and an attribute
    # the tenant does not keep; no family name and a phone in local form (rfc7643 takes both).
    for n, (user_name, center) in enumerate((("ann@acme.test", "300"), ("bob@acme.test", "100")), start=1):
        response = scim.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ACME],
                "userName": user_name,
                "active": "True",
                "name": {"givenName": user_name.split("@")[0]},
                "phoneNumbers": [{"type": "work", "value": "312-320-0932"}],
                f"{ACME}:costCenter": center,
                f"{ACME}:badge": str(n),
                f"{ACME}:remote": "False",
                "urn:ietf:params:scim:schemas:extension:Acme:2.0:User:shoeSize": "42",
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()[ACME] == {"costCenter": center, "badge": n, "remote": False}
    ann = scim.get("/Users", params={"filter": 'userName eq "ann@acme.test"'}).json()["Resources"][0]
    legacy = scim.patch(
        f"/Users/{ann['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": f"{ACME}:remote", "value": "True"}],
        },
    )
    assert legacy.status_code == 200 and legacy.json()[ACME]["remote"] is True
    modern = scim.patch(
        f"/Users/{ann['id']}?aadOptscim062020",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {f"{ACME}:costCenter": "200", f"{ACME}:badge": 3}}],
        },
    )
    assert modern.status_code == 200 and modern.json()[ACME] == {"costCenter": "200", "badge": 3, "remote": True}
    taken = scim.post("/Users", json={"userName": "cy@acme.test", f"{ACME}:badge": 3})
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"

    found = scim.get("/Users", params={"filter": f'{ACME}:costCenter gt "150" and remote eq true'}).json()
    assert [r["userName"] for r in found["Resources"]] == ["ann@acme.test"]
    by_badge = scim.get("/Users", params={"sortBy": f"{ACME}:badge", "sortOrder": "descending"}).json()
    assert [r["userName"] for r in by_badge["Resources"]] == ["ann@acme.test", "bob@acme.test"]
    schema = scim.get(f"/Schemas/{ACME}").json()
    assert [(a["name"], a["type"]) for a in schema["attributes"]] == [
        ("costCenter", "string"),
        ("badge", "integer"),
        ("remote", "boolean"),
    ]
    user_type = scim.get("/ResourceTypes/User").json()
    assert {"schema": ACME, "required": False} in user_type["schemaExtensions"]


def change_the_declaration(admin: httpx.Client, scim: httpx.Client, idp_id: str) -> None:
    # What Entra sent that the IdP does not keep reaches the log (flushed every half second).
    deadline = time.monotonic() + 10
    while not (ignored := admin.get(f"/idps/{idp_id}/schema").json()["ignored"]):
        assert time.monotonic() < deadline, "the ignored attribute never reached the provisioning log"
        time.sleep(0.2)
    assert [(i["name"], i["requests"]) for i in ignored] == [(f"{ACME}:shoeSize", 2)]
    creates = admin.get("/logs", params={"idp": idp_id, "operation": "Create User"}).json()["Resources"]
    assert [r["ignored"] for r in creates if r["status"] == 201] == [[f"{ACME}:shoeSize"]] * 2
    assert all(
        r["ignored"] == []
        for r in admin.get("/logs", params={"idp": idp_id, "operation": "Update User"}).json()["Resources"]
    )

    changed = admin.patch(
        f"/idps/{idp_id}/schema",
        json={
            "extensions": [
                {
                    "id": ACME,
                    "attributes": [
                        {"name": "badge", "type": "integer", "uniqueness": "server"},
                        {"name": "remote", "type": "boolean"},
                        {"name": "shoeSize", "type": "integer"},
                    ],
                }
            ]
        },
    )
    assert changed.status_code == 200, changed.text
    changes = changed.json()["changes"]
    assert any("attribute costCenter removed" in change for change in changes)
    assert any("attribute shoeSize added" in change for change in changes)
    assert changed.json()["failing_users"]["failing"] == 0
    # The server sees the change at once (the same database, its sign-in cache reloaded).
    deadline = time.monotonic() + 5
    while (
        "costCenter"
        in (user := scim.get("/Users", params={"filter": 'userName eq "bob@acme.test"'}).json()["Resources"][0])[ACME]
    ):
        assert time.monotonic() < deadline, "the declaration change did not reach the SCIM answers"
        time.sleep(0.1)
    assert user[ACME] == {"badge": 2, "remote": False}
    gone = scim.get("/Users", params={"filter": f'{ACME}:costCenter eq "100"'})
    assert gone.status_code == 400 and gone.json()["scimType"] == "invalidFilter"
    kept = scim.patch(
        f"/Users/{user['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "value": {f"{ACME}:shoeSize": "43"}}],
        },
    )
    assert kept.status_code == 200 and kept.json()[ACME]["shoeSize"] == 43


def check_the_console(base: str, idp_id: str, log_id: int) -> None:
    with httpx.Client(base_url=base, timeout=10) as browser:
        login = browser.get("/admin/login")
        signed_in = browser.post(
            "/admin/login", data={"csrf_token": hidden_csrf(login.text), "password": PASSWORD, "next": "/admin/"}
        )
        assert signed_in.status_code == 303
        page = browser.get(f"/admin/idps/{idp_id}")
        assert page.status_code == 200
        assert ACME in page.text and "shoeSize" in page.text and "rfc7643" in page.text
        users = browser.get(f"/admin/idps/{idp_id}/users", params={"q": f"{ACME}:badge eq 2"})
        assert users.status_code == 200 and "bob@acme.test" in users.text and "ann@acme.test" not in users.text
        bob = next(part for part in users.text.split('href="') if part.startswith(f"/admin/idps/{idp_id}/users/"))
        user_page = browser.get(bob.split('"', 1)[0])
        assert user_page.status_code == 200
        assert "no longer declared" in user_page.text and "costCenter" in user_page.text and ">100<" in user_page.text
        record = browser.get(f"/admin/logs/{log_id}")
        assert record.status_code == 200 and f"<code>{ACME}:shoeSize</code>" in record.text
