"""POST /Bulk against a real `python app.py serve` over real HTTP: a directory seeded in one request,
with a group naming users created in the same request, while another client keeps being answered."""

from __future__ import annotations

import threading

import httpx

from scim.bulk import BULK_REQUEST
from tests.conftest import LiveServer, entra_user


def test_a_bulk_request_seeds_users_and_a_group_of_them(live_server: LiveServer) -> None:
    users = [
        {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": entra_user(f"seed{n}@contoso.com")}
        for n in range(300)
    ]
    # The group comes first and names every user: each is created before it (RFC 7644 §3.7.2).
    team = {
        "method": "POST",
        "path": "/Groups",
        "bulkId": "all",
        "data": {"displayName": "Everyone", "members": [{"value": f"bulkId:u{n}"} for n in range(300)]},
    }
    body = {"schemas": [BULK_REQUEST], "Operations": [team, *users]}
    headers = {"Authorization": f"Bearer {live_server.secret}"}
    reads: list[int] = []
    done = threading.Event()

    def read_meanwhile() -> None:
        with httpx.Client(base_url=live_server.tenant_url, headers=headers, timeout=10) as other:
            while not done.is_set():
                reads.append(other.get("/ServiceProviderConfig").status_code)

    reader = threading.Thread(target=read_meanwhile)
    reader.start()
    try:
        with httpx.Client(base_url=live_server.tenant_url, headers=headers, timeout=60) as http:
            answer = http.post("/Bulk", json=body)
            assert answer.status_code == 200
            assert int(answer.headers["content-length"]) == len(answer.content)
            operations = answer.json()["Operations"]
            assert [op["status"] for op in operations] == ["201"] * 301
            assert operations[-1]["bulkId"] == "all"
            group = http.get(operations[-1]["location"]).json()
            assert len(group["members"]) == 300
            created = {op["location"].rsplit("/", 1)[1] for op in operations[:-1]}
            assert {m["value"] for m in group["members"]} == created
            listed = http.get("/Users", params={"count": 0}).json()
            assert listed["totalResults"] == 300
    finally:
        done.set()
        reader.join()
    assert reads and set(reads) == {200}
