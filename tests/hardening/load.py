"""A write load that records what the server acknowledged, and the check that all of it is stored."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx

from tests.conftest import PATCH_SCHEMA, entra_user


class Load:
    """Concurrent writers that record every write the server acknowledged, until the server dies."""

    def __init__(self, server, group_id: str) -> None:
        self.server = server
        self.group_id = group_id
        self.created: dict[str, str] = {}  # userName -> id
        self.titles: dict[str, int] = {}  # id -> highest title acknowledged
        self.members: set[str] = set()  # ids acknowledged as added to the group
        self.errors = 0
        self.deadline = 0.0  # writers stop here; may be moved while the load runs

    async def writer(self, http: httpx.AsyncClient, number: int) -> None:
        for i in itertools.count():
            if time.monotonic() > self.deadline:
                return
            name = f"w{number}-{i}@load"
            try:
                response = await http.post("/Users", json=entra_user(name, title="0"))
                if response.status_code != 201:
                    continue
                user_id = response.json()["id"]
                self.created[name] = user_id
                for title in (1, 2):
                    response = await http.patch(
                        f"/Users/{user_id}",
                        json={
                            "schemas": [PATCH_SCHEMA],
                            "Operations": [{"op": "replace", "path": "title", "value": str(title)}],
                        },
                    )
                    if response.status_code == 200:
                        self.titles[user_id] = title
                response = await http.patch(
                    f"/Groups/{self.group_id}",
                    json={
                        "schemas": [PATCH_SCHEMA],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
                    },
                )
                if response.status_code == 204:
                    self.members.add(user_id)
            except httpx.TransportError:
                self.errors += 1
                if self.server.process.poll() is not None:
                    return
                await asyncio.sleep(0.01)

    async def run(self, writers: int, seconds: float) -> None:
        async with httpx.AsyncClient(
            base_url=self.server.tenant_url,
            headers=self.server.auth,
            timeout=10,
            limits=httpx.Limits(max_connections=writers),
        ) as http:
            self.deadline = time.monotonic() + seconds
            await asyncio.gather(*(self.writer(http, n) for n in range(writers)))


async def verify(server, load: Load) -> None:
    """Every acknowledged write is readable over HTTP from the restarted server."""
    async with httpx.AsyncClient(base_url=server.tenant_url, headers=server.auth, timeout=30) as http:
        stored: dict[str, dict] = {}
        start = 1
        while True:
            page = (
                await http.get("/Users", params={"startIndex": start, "count": 1000, "attributes": "userName,title"})
            ).json()
            stored.update({u["userName"]: u for u in page["Resources"]})
            start += page["itemsPerPage"]
            if not page["Resources"]:
                break
        missing = [name for name in load.created if name not in stored]
        assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {missing[:3]}"
        for name, user_id in load.created.items():
            assert stored[name]["id"] == user_id
            assert int(stored[name]["title"]) >= load.titles.get(user_id, 0), name
        group = (await http.get(f"/Groups/{load.group_id}")).json()
        assert load.members <= {m["value"] for m in group.get("members", [])}


def integrity(server) -> list[tuple]:
    return server.query("PRAGMA integrity_check")
