"""Crashes and shutdowns under write load, against the real server process.

SIGKILL: every write that was answered 2xx is there after a restart, and the database passes
PRAGMA integrity_check (WAL with synchronous=NORMAL is durable against a process crash: a commit
is in the WAL file, in the OS page cache, before the answer is sent; only an OS crash or power
loss can drop the last commits, which synchronous=FULL covers).
SIGTERM: requests in flight are finished and answered, and the buffered provisioning log is
written, before the process exits.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import orjson

from tests.conftest import entra_user
from tests.hardening.load import Load, integrity, verify


async def test_sigkill_under_write_load_loses_no_acknowledged_write(server_factory) -> None:
    server = server_factory("crash")
    async with httpx.AsyncClient(base_url=server.tenant_url, headers=server.auth) as http:
        group_id = (await http.post("/Groups", json={"displayName": "Crash"})).json()["id"]
    load = Load(server, group_id)

    async def kill_soon() -> None:
        await asyncio.sleep(1.5)
        server.process.send_signal(signal.SIGKILL)

    await asyncio.gather(load.run(writers=16, seconds=10), kill_soon())
    assert server.process.wait(timeout=10) == -signal.SIGKILL
    assert len(load.created) >= 10 and load.errors > 0  # the kill really landed mid-load
    assert integrity(server) == [("ok",)]
    server.start()
    await verify(server, load)
    assert integrity(server) == [("ok",)]


def send_partial_create(port: int, tenant_path: str, secret: str, name: str) -> tuple[socket.socket, bytes]:
    """Open a connection and send a create's headers and half its body; return the rest to send later."""
    body = orjson.dumps(entra_user(name))
    head = (
        f"POST {tenant_path}/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(head + body[:20])
    return sock, body[20:]


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


async def test_sigterm_drains_in_flight_requests_and_flushes_the_provisioning_log(server_factory) -> None:
    server = server_factory("drain")
    async with httpx.AsyncClient(base_url=server.tenant_url, headers=server.auth) as http:
        group_id = (await http.post("/Groups", json={"displayName": "Drain"})).json()["id"]
    tenant_path = server.tenant_url.removeprefix(server.base)
    in_flight = [send_partial_create(server.port, tenant_path, server.secret, f"inflight{i}@x") for i in range(5)]
    await asyncio.sleep(0.3)  # the server has read their headers: each is a request in progress
    load = Load(server, group_id)

    async def terminate_then_finish_bodies() -> list[int]:
        await asyncio.sleep(0.8)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # shutdown has begun while these bodies are still arriving
        statuses = []
        for sock, rest in in_flight:
            sock.sendall(rest)
        for sock, _ in in_flight:
            statuses.append(await asyncio.to_thread(read_status, sock))
            sock.close()
        return statuses

    _, statuses = await asyncio.gather(load.run(writers=8, seconds=10), terminate_then_finish_bodies())
    assert statuses == [201] * 5
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    assert len(load.created) >= 5
    assert integrity(server) == [("ok",)]
    names = {row[0] for row in server.query("SELECT user_name FROM users")}
    assert {f"inflight{i}@x" for i in range(5)} | set(load.created) <= names
    # Every answered create was recorded in the provisioning log before exit.
    logged = {
        row[0]
        for row in server.query(
            "SELECT resource_id FROM provisioning_log WHERE operation = 'Create User' AND status = 201"
        )
    }
    created_ids = {row[0] for row in server.query("SELECT id FROM users")}
    assert created_ids <= logged
    server.start()
    await verify(server, load)
