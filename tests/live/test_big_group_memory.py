"""A 100,000-member group read whole by three clients at once, against a real server on each backend:
the answers are streamed (storage's stream_members, web/scim/responses.py StreamedResponse), so the
server's peak resident memory stays under 150 MB while each client gets all of it.

The users and memberships are written with bulk SQL into the server's database (what 100,000 SCIM
creates and adds would leave behind); the group itself is made through SCIM.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
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


def big_group(server: LiveServer) -> str:
    """A group of MEMBERS users, made through SCIM and filled with bulk SQL; its id."""
    with httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=60) as client:
        created = client.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Everyone"})
        assert created.status_code == 201, created.text
        group_id = created.json()["id"]
    if server.database_url.startswith("sqlite"):
        seed_sqlite(server.db_path, server.idp_id, group_id)
    else:
        asyncio.run(seed_postgresql(server.database_url, server.idp_id, group_id))
    return group_id


@pytest.mark.serial
def test_three_full_reads_of_a_100k_member_group_stay_under_150_mb(live_server: LiveServer) -> None:
    group_id = big_group(live_server)
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


def leave_mid_answer(server: LiveServer, group_id: str) -> None:
    """GET the group, read the start of the answer, and hang up."""
    target = f"{server.tenant_url.removeprefix(server.base)}/Groups/{group_id}"
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.secret}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request.encode())
        received = b""
        while len(received) < 100_000:
            chunk = sock.recv(65536)
            assert chunk, "the server ended the answer early"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in received.lower()


def readers_in_transaction(server: LiveServer) -> int:
    """How many of the server's database sessions hold a read transaction (a snapshot) now."""
    if server.database_url.startswith("sqlite"):
        # A checkpoint that empties the WAL cannot complete (busy) while a reader holds a snapshot
        # older than the last write: it would change the pages under it.
        conn = sqlite3.connect(server.db_path, timeout=1)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        return busy

    async def idle_in_transaction() -> int:
        conn = await asyncpg.connect(server.database_url)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    return asyncio.run(idle_in_transaction())


def test_clients_that_hang_up_mid_answer_leave_no_reader_behind(live_server: LiveServer) -> None:
    group_id = big_group(live_server)
    with httpx.Client(base_url=live_server.tenant_url, headers=live_server.auth, timeout=60) as client:
        rename = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Everyone, renamed"}],
        }
        # More clients than the server has readers, stream connections or pooled PostgreSQL
        # connections (10): a stream left open by each would exhaust them, or stay in transaction.
        for _ in range(12):
            leave_mid_answer(live_server, group_id)
        # A write after their snapshots: one still held would keep SQLite's checkpoint busy.
        assert client.patch(f"/Groups/{group_id}", json=rename).status_code == 204
        deadline = time.monotonic() + 10
        while (held := readers_in_transaction(live_server)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held == 0, f"{held} database sessions still in a transaction after the clients left"
        whole = client.get(f"/Groups/{group_id}")
    assert whole.status_code == 200 and whole.headers["etag"] == 'W/"2"'
    assert len(whole.json()["members"]) == MEMBERS
