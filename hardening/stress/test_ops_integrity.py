"""Full-size runs of tests/hardening/test_ops_integrity.py: five IdPs deleted under 32 writing
connections each, counting what is left of them in the database file; then a database filled to its
max_size_bytes under concurrent creates, checking that every 201 is there after a restart."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.conftest import entra_user
from tests.hardening.test_ops_integrity import ADMIN_TOKEN, admin, leftovers, writes_while_deleted

RUNS = 5


async def test_five_idps_deleted_under_writes_leave_no_row(server_factory) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    left_behind = []
    async with admin(server) as api:
        for run in range(RUNS):
            started = time.perf_counter()
            statuses, idp_id = await writes_while_deleted(server, api, run)
            rows = leftovers(server, idp_id)
            left_behind.append(sum(rows.values()))
            counts = {status: statuses.count(status) for status in sorted(set(statuses))}
            print(f"\nrun {run}: answers {counts}, left in the database {rows}, {time.perf_counter() - started:.1f} s")
            assert 500 not in counts
    print(f"rows left behind per run: {left_behind}")
    assert left_behind == [0] * RUNS


async def test_concurrent_creates_into_a_full_database_acknowledge_only_what_is_stored(server_factory) -> None:
    server = server_factory(database_max_size_bytes=4_000_000)
    acknowledged: list[str] = []
    refused = 0
    async with httpx.AsyncClient(
        base_url=server.tenant_url, headers=server.auth, timeout=60, limits=httpx.Limits(max_connections=32)
    ) as tenant:

        async def creator(worker: int) -> None:
            nonlocal refused
            for step in range(60):
                body = entra_user(f"f{worker}.{step}@x", title=uuid.uuid4().hex * 64)
                response = await tenant.post("/Users", json=body)
                assert response.status_code in (201, 503), response.text
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                else:
                    refused += 1
                    assert int(response.headers["Retry-After"]) >= 1

        await asyncio.gather(*(creator(worker) for worker in range(32)))
    print(f"\n{len(acknowledged)} creates acknowledged, {refused} refused with 503 at database.max_size_bytes")
    assert refused > 0
    server.stop()
    server.start()
    stored = {row[0] for row in server.query("SELECT id FROM users WHERE idp_id = ?", (server.idp_id,))}
    assert stored == set(acknowledged)
