"""A 100,000-member group read whole by three clients at once, against a real server on each backend:
the answers are streamed (storage's stream_members, web/scim/responses.py StreamedResponse), so the
server's peak resident memory stays under 150 MB while each client gets all of it.

The users and memberships are written with bulk SQL into the server's database (what 100,000 SCIM
creates and adds would leave behind); the group itself is made through SCIM.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import GROUP_SCHEMA, LiveServer
from tests.hardening.transport import Peak, peak_rss_mib

MEMBERS = 100_000
READERS = 3
PEAK_BUDGET_MIB = 150
STAMP = "2025-01-01T00:00:00.000Z"


def user_rows(idp_id: str) -> list[tuple]:
    """MEMBERS users as the users table holds them: (id, idp_id, user_name, external_id, active, doc, ...)."""
    rows = []
    for i in range(MEMBERS):
        name = f"member{i:06d}@contoso.com"
        doc = orjson.dumps({"userName": name, "active": True, "displayName": f"Member {i}"}).decode()
        rows.append((f"00000000-0000-7000-8000-{i:012d}", idp_id, name, f"ext-{i}", True, doc, 1, STAMP, STAMP))
    return rows


USER_COLUMNS = ("id", "idp_id", "user_name", "external_id", "active", "doc", "version", "created", "modified")


def seed_sqlite(path: Path, idp_id: str, group_id: str) -> None:
    users = user_rows(idp_id)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executemany(
            f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES ({', '.join('?' * len(USER_COLUMNS))})", users
        )
        conn.executemany(
            "INSERT INTO group_members (idp_id, group_id, member_id, type) VALUES (?, ?, ?, 'User')",
            [(idp_id, group_id, row[0]) for row in users],
        )


async def seed_postgresql(url: str, idp_id: str, group_id: str) -> None:
    users = user_rows(idp_id)
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("users", records=users, columns=USER_COLUMNS)
        await conn.copy_records_to_table(
            "group_members",
            records=[(idp_id, group_id, row[0], "User") for row in users],
            columns=("idp_id", "group_id", "member_id", "type"),
        )
        await conn.execute("ANALYZE users; ANALYZE group_members")
    finally:
        await conn.close()


def read_whole(url: str, headers: dict[str, str], answers: list, index: int) -> None:
    with httpx.Client(timeout=120) as client:
        response = client.get(url, headers=headers)
        answers[index] = (response.status_code, response.headers.get("etag"), response.content)


@pytest.mark.serial
def test_three_full_reads_of_a_100k_member_group_stay_under_150_mb(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.tenant_url, headers=live_server.auth, timeout=60) as client:
        created = client.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Everyone"})
        assert created.status_code == 201, created.text
        group_id = created.json()["id"]
    if live_server.database_url.startswith("sqlite"):
        seed_sqlite(live_server.db_path, live_server.idp_id, group_id)
    else:
        asyncio.run(seed_postgresql(live_server.database_url, live_server.idp_id, group_id))

    assert live_server.process is not None
    pid = live_server.process.pid
    answers: list = [None] * READERS
    url = f"{live_server.tenant_url}/Groups/{group_id}"
    with Peak(pid) as peak:
        readers = [
            threading.Thread(target=read_whole, args=(url, live_server.auth, answers, i)) for i in range(READERS)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    high_water = peak_rss_mib(pid)
    print(f"\npeak RSS {peak.mib:.1f} MiB sampled, VmHWM {high_water:.1f} MiB, answer {len(answers[0][2])} bytes")

    first_status, first_etag, first_body = answers[0]
    assert first_status == 200 and first_etag == 'W/"1"'
    assert all(answer == answers[0] for answer in answers)
    group = orjson.loads(first_body)
    assert group["id"] == group_id and group["displayName"] == "Everyone"
    assert [m["value"] for m in group["members"]] == [row[0] for row in user_rows(live_server.idp_id)]
    assert group["members"][7]["display"] == "member000007@contoso.com"
    assert high_water < PEAK_BUDGET_MIB, f"peak RSS {high_water:.1f} MiB with {READERS} full reads at once"
