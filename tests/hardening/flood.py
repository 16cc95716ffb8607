"""A flood of unauthenticated requests carrying large client values, and what it made the server store."""

from __future__ import annotations

import asyncio
import itertools

# Every column of a provisioning log record that holds client-controlled text.
LOG_TEXT_COLUMNS = (
    "idp_id",
    "api_key_id",
    "method",
    "path",
    "operation",
    "resource_type",
    "resource_id",
    "target",
    "scim_type",
    "detail",
    "client",
    "request_body",
    "response_body",
)


def unauthenticated_requests(tenant_path: str, size: int) -> list[bytes]:
    """Each kind of request answered 401 or 404 before any authentication, as raw HTTP/1.1 (httpx
    refuses URLs past 64 KiB), each carrying `size` characters of client values. uvicorn's parser takes a
    request target up to about 64 KiB: 60,000 characters reach the app.)"""
    long, half = "x" * size, "x" * (size // 2)
    body = b'{"userName": "' + long.encode() + b'"}'
    targets = [
        ("GET", f"/v1/scim/{long}", b""),  # 404: no such endpoint
        ("GET", f"{tenant_path}/{long}", b""),  # 404 under a tenant
        ("GET", f"{tenant_path}/Users/{long}", b""),  # 401, the id in the path
        ("GET", f"{tenant_path}/Users?filter=userName%20eq%20%22{long}%22", b""),  # 401, a long filter
        ("POST", f"{tenant_path}/Users?attributes={long}", body),  # 401, a long query and body
        ("PUT", f"/v1/scim/{half}/Groups/{half}", body),  # 401, an IdP that does not exist
    ]
    return [
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {long[:4000]}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(content)}\r\n\r\n".encode()
        + content
        for method, target, content in targets
    ]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def flood(
    port: int, tenant_path: str, count: int, size: int, concurrency: int = 8, sources: list[str] | None = None
) -> dict[int, int]:
    """Send `count` unauthenticated requests to 127.0.0.1:port, round-robin over the kinds above, on
    `concurrency` keep-alive connections (a new one when the server closes one); the statuses received.
    With `sources` (local addresses such as 127.0.1.7), each request comes from the next of them."""
    kinds = itertools.cycle(unauthenticated_requests(tenant_path, size))
    addresses = itertools.cycle(sources) if sources else None
    statuses: dict[int, int] = {}
    remaining = iter(range(count))

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        local = (next(addresses), 0) if addresses is not None else None
        return await asyncio.open_connection("127.0.0.1", port, limit=1 << 20, local_addr=local)

    async def worker() -> None:
        reader, writer = await connect()
        for _ in remaining:
            request = next(kinds)
            if addresses is not None:
                writer.close()
                reader, writer = await connect()
            try:
                status = await _exchange(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                reader, writer = await connect()
                status = await _exchange(reader, writer, request)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def stored_log_bytes(query) -> tuple[int, int]:
    """(records, bytes of text) in provisioning_log, read straight from the database file."""
    total = " + ".join(f"coalesce(length(CAST({name} AS BLOB)), 0)" for name in LOG_TEXT_COLUMNS)
    records, size = query(f"SELECT count(*), coalesce(sum({total}), 0) FROM provisioning_log")[0]
    return records, size
