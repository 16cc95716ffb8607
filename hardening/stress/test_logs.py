"""Disk and logs at full size: floods of unauthenticated requests each carrying 60,000 characters of
client values (uvicorn's parser refuses a request target of 64 KiB), from one address and from many.

Prints what they made the server store (provisioning_log text, database + WAL files) and write to its
process log; docs/security.md ("Disk and logs") quotes these figures and the same flood against the
code before the fix.
"""

from __future__ import annotations

import asyncio
import os
import time

from tests.hardening.flood import flood, stored_log_bytes

SIZE = 60_000


def run(server_factory, name: str, count: int, sources: list[str] | None) -> tuple[int, int]:
    server = server_factory(name, logging_level="info")
    tenant_path = server.tenant_url.removeprefix(server.base)
    started = time.monotonic()
    statuses = asyncio.run(flood(server.port, tenant_path, count, SIZE, sources=sources))
    seconds = time.monotonic() - started
    server.stop()
    records, stored = stored_log_bytes(server.query)
    files = sum(os.path.getsize(p) for p in (server.db_path, f"{server.db_path}-wal") if os.path.exists(p))
    output = os.path.getsize(server.output_path)
    print(
        f"\n{count} unauthenticated requests of {SIZE} characters from {len(sources or [''])} address(es) "
        f"in {seconds:.2f} s, statuses {statuses}: {records} provisioning log records, {stored:,} bytes of "
        f"text, {files:,} bytes of database files; {output:,} bytes of process log"
    )
    assert sum(statuses.values()) == count
    return records, stored


def test_one_address(server_factory) -> None:
    records, stored = run(server_factory, "one", 1000, None)
    assert records <= 40 and stored <= 120_000  # 30 records a minute per address, and one summary


def test_many_addresses(server_factory) -> None:
    sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(200)]
    records, stored = run(server_factory, "many", 2000, sources)
    assert records <= 330 and stored <= 1_000_000  # 300 a minute in all, and at most 11 summaries
