"""Cursor walks (RFC 9865) and searches across resource types against a real `python app.py serve`
over real HTTP, with the directory written between pages."""

from __future__ import annotations

import httpx

from tests.conftest import LiveServer, entra_user


def test_a_cursor_walk_and_a_root_search_over_http(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.secret}"}
    with httpx.Client(base_url=live_server.tenant_url, headers=headers, timeout=10) as http:
        names = [f"live{n:02}@contoso.com" for n in range(23)]
        for name in names:
            assert http.post("/Users", json=entra_user(name)).status_code == 201
        assert http.post("/Groups", json={"displayName": "live group"}).status_code == 201
        seen: list[str] = []
        cursor = ""
        while True:
            page = http.get("/Users", params={"cursor": cursor, "count": 7})
            assert page.status_code == 200
            body = page.json()
            seen += [r["userName"] for r in body["Resources"]]
            http.post("/Users", json=entra_user(f"during-{len(seen)}@contoso.com"))  # after every position
            if "nextCursor" not in body:
                break
            cursor = body["nextCursor"]
        assert seen[: len(names)] == names and len(seen) == len(set(seen))
        tampered = http.get("/Users", params={"cursor": cursor[:3] + ("x" if cursor[3] != "x" else "y") + cursor[4:]})
        assert (tampered.status_code, tampered.json()["scimType"]) == (400, "invalidCursor")
        root = http.get("", params={"filter": 'displayName eq "live group" or userName eq "live00@contoso.com"'})
        assert root.status_code == 200
        assert [r["meta"]["resourceType"] for r in root.json()["Resources"]] == ["User", "Group"]
        searched = http.post("/.search", json={"filter": 'displayName sw "live"', "attributes": ["displayName"]})
        assert [r["displayName"] for r in searched.json()["Resources"]] == ["live group"]
