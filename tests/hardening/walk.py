"""Data for the walk and page-size tests, seeded through the SCIM API of a live server: densely
nested groups (each contains every other one) and users of a given size."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import PATCH_SCHEMA, entra_user
from tests.hardening import stall

# The longest any one probe of the other tenant may take. A p99 hides a single stall of the event
# loop behind a request that then spends seconds sending its answer (hundreds of probes pass
# meanwhile); a stall shows as one probe that waited for it. Generous for a noisy shared host.
STALL_BUDGET_MS = 500.0


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=300)


def seed_dense_groups(server, count: int) -> tuple[list[str], str]:
    """`count` groups that each contain the other count - 1, and a user in the first one: its
    groups are all of them, reached through every path of the graph. Returns the group ids, user id."""
    with client(server) as http:
        ids = []
        for i in range(count):
            created = http.post("/Groups", json={"displayName": f"dense-{i:04d}"})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])

        def nest(group_id: str) -> None:
            others = [{"value": other} for other in ids if other != group_id]
            body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members", "value": others}]}
            response = http.patch(f"/Groups/{group_id}", json=body)
            assert response.status_code == 204, response.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(nest, ids))
        user = http.post("/Users", json=entra_user("nested@walk"))
        assert user.status_code == 201, user.text
        user_id = user.json()["id"]
        add = {"op": "add", "path": "members", "value": [{"value": user_id}]}
        assert http.patch(f"/Groups/{ids[0]}", json={"schemas": [PATCH_SCHEMA], "Operations": [add]}).status_code == 204
    return ids, user_id


# Users of about 1 MB need the per-resource limits raised (an admin may): the page cap is what is tested.
BIG_USER_SETTINGS = {"scim_max_attribute_values": 1000, "scim_max_document_bytes": 1_100_000}


def big_user(name: str, size: int) -> dict:
    """An Entra-like user whose document is about `size` bytes, in entitlements of 1 KiB each."""
    entries = max(1, size // 1040)
    return entra_user(name, entitlements=[{"value": f"{i:06d}" + "e" * 1018} for i in range(entries)])


def seed_big_users(server, count: int, size: int) -> list[str]:
    with client(server) as http:

        def create(i: int) -> str:
            response = http.post("/Users", json=big_user(f"big{i:04d}@walk", size))
            assert response.status_code == 201, response.text[:300]
            return response.json()["id"]

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(create, range(count)))


def timed(fn: Callable[[], httpx.Response]) -> Callable[[], tuple[httpx.Response, float]]:
    def run() -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = fn()
        return response, time.perf_counter() - started

    return run


def probe(server, expensive: Callable[[], object]) -> stall.Probe:
    """stall.other_tenant_p99 with at least 200 probes, so that one slow probe on a loaded host is not
    the p99 by itself; a stall of the event loop shows in the longest probe (STALL_BUDGET_MS)."""
    return stall.other_tenant_p99(server, expensive, min_probes=200)
