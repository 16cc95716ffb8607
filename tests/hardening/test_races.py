"""Races over real HTTP against a live server: one winner for a contested userName, no lost update
under If-Match, no lost membership change when adds and removes on one group run at once."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from tests.conftest import PATCH_SCHEMA, entra_user
from tests.hardening.conftest import Server, make_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """One live server for the module: each test works on resources of its own names."""
    server = make_server(tmp_path_factory.mktemp("races"), "races")
    server.start()
    yield server
    server.stop()


def client(server, connections: int = 64) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.tenant_url, headers=server.auth, timeout=30, limits=httpx.Limits(max_connections=connections)
    )


def patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


async def test_fifty_concurrent_creates_of_one_user_name_in_mixed_case(server: Server) -> None:
    spellings = [
        "".join(c.upper() if (i >> (k % 8)) & 1 else c for k, c in enumerate("race.winner@contoso.com"))
        for i in range(50)
    ]
    assert len({s.lower() for s in spellings}) == 1 and len(set(spellings)) > 40
    async with client(server) as http:
        responses = await asyncio.gather(*(http.post("/Users", json=entra_user(name)) for name in spellings))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 49
        for response in responses:
            if response.status_code == 409:
                assert response.json()["scimType"] == "uniqueness"
        winner = next(r.json() for r in responses if r.status_code == 201)
        found = await http.get("/Users", params={"filter": 'userName eq "RACE.WINNER@contoso.com"'})
        assert [u["id"] for u in found.json()["Resources"]] == [winner["id"]]
    assert server.query("SELECT count(*) FROM users WHERE user_name = 'race.winner@contoso.com'") == [(1,)]


async def test_concurrent_if_match_patches_lose_no_update(server: Server) -> None:
    """Ten writers each increment a counter 10 times with read-modify-write under If-Match."""
    writers, increments = 10, 10
    async with client(server) as http:
        user = (await http.post("/Users", json=entra_user("counter@x", title="0"))).json()
        url = f"/Users/{user['id']}"
        stale = 0

        async def writer() -> None:
            nonlocal stale
            done = 0
            while done < increments:
                current = await http.get(url)
                value = int(current.json()["title"])
                increment = patch({"op": "replace", "path": "title", "value": str(value + 1)})
                response = await http.patch(url, json=increment, headers={"If-Match": current.headers["etag"]})
                if response.status_code == 412:
                    assert response.json()["detail"]
                    stale += 1
                    continue
                assert response.status_code == 200, response.text
                assert response.json()["title"] == str(value + 1)
                done += 1

        await asyncio.gather(*(writer() for _ in range(writers)))
        final = await http.get(url)
    assert final.json()["title"] == str(writers * increments)
    assert final.headers["etag"] == f'W/"{1 + writers * increments}"'
    assert stale > 0  # the race really happened: some writers held a stale ETag


async def test_concurrent_member_adds_and_removes_lose_nothing(server: Server) -> None:
    async with client(server) as http:
        created = await asyncio.gather(*(http.post("/Users", json=entra_user(f"m{i}@x")) for i in range(120)))
        ids = [r.json()["id"] for r in created]
        group = await http.post("/Groups", json={"displayName": "Busy", "members": [{"value": i} for i in ids[:60]]})
        url = f"/Groups/{group.json()['id']}"
        adds = [patch({"op": "Add", "path": "members", "value": [{"value": i}]}) for i in ids[60:]]
        # Both removal dialects Entra uses: a value array (legacy) and a filtered path (aadOptscim062020).
        removes = [patch({"op": "Remove", "path": "members", "value": [{"value": i}]}) for i in ids[:15]] + [
            patch({"op": "remove", "path": f'members[value eq "{i}"]'}) for i in ids[15:30]
        ]
        bodies = adds + removes
        random.Random(7).shuffle(bodies)
        responses = await asyncio.gather(*(http.patch(url, json=body) for body in bodies))
        assert {r.status_code for r in responses} == {204}
        members = (await http.get(url)).json()["members"]
    assert sorted(m["value"] for m in members) == sorted(ids[30:])
    assert server.query("SELECT count(*) FROM group_members WHERE group_id = ?", (group.json()["id"],)) == [(90,)]
