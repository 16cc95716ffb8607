"""A large export of the provisioning log (issue 17) streamed by a real server: 200,000 records answered
in full while the server's peak resident memory grows by a bounded amount, not with the export."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from storage import LogRecord
from storage.common import now
from tests.backends import open_store
from tests.conftest import serve_live
from tests.hardening.transport import peak_rss_mib

RECORDS = 200_000
TOKEN = "export-test-admin-token-0123456789abcdef"
# What the export may add to the server's peak RSS: a few batches of 1,000 records, not 200,000 (those
# would be ~100 MB as Python objects, and the CSV itself 60 MB).
GROWTH_BUDGET_MIB = 40


async def fill(database: str) -> None:
    store = await open_store(database)
    try:
        stamp = now()
        for start in range(0, RECORDS, 10_000):
            await store.append_logs(
                [
                    LogRecord(
                        stamp,
                        "idp",
                        "key",
                        "POST",
                        "/v1/scim/idp/Users",
                        "Create User",
                        "User",
                        f"id-{n}",
                        f"person{n}@contoso.com",
                        201,
                        None,
                        None,
                        1.0,
                        "127.0.0.1",
                        None,
                        None,
                    )
                    for n in range(start, start + 10_000)
                ]
            )
    finally:
        await store.close()


def test_a_200000_record_export_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'export.db'}"
    with serve_live(tmp_path / "export.db", tmp_path / "server.out", SCIMLET_ADMIN_TOKEN=TOKEN) as server:
        asyncio.run(fill(database))
        pid = server.process.pid
        before = peak_rss_mib(pid)
        lines = 0
        size = 0
        with httpx.stream(
            "GET",
            f"{server.base}/v1/admin/logs/export?format=csv",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        ) as answer:
            assert answer.status_code == 200
            assert answer.headers.get("transfer-encoding") == "chunked"
            for chunk in answer.iter_bytes():
                lines += chunk.count(b"\n")
                size += len(chunk)
        after = peak_rss_mib(pid)
    assert lines >= RECORDS + 1  # the header, then every record
    print(f"\nexport of {RECORDS:,} records: {size / 1e6:.1f} MB; peak RSS {before:.1f} -> {after:.1f} MiB")
    assert after - before < GROWTH_BUDGET_MIB, (before, after)
