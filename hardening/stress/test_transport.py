"""The transport classes at the sizes of the outside review, printing the figures docs/security.md
quotes ("Transport"): failing large bodies, console bodies, pipelining without reading, 413s."""

from __future__ import annotations

import threading

from tests.hardening.stall import other_tenant_p99
from tests.hardening.transport import (
    ADMIN_PASSWORD,
    Peak,
    concurrent_chunked_logins,
    failing_searches,
    oversized_create,
    path_of,
    pipeline_flood,
    raw_post,
    read_only_tenant,
    warmed,
)


def test_1500_failing_searches_of_0_9_mb_from_a_read_only_key(server_factory) -> None:
    server = server_factory("searches", start=False)
    tenant_url, secret = read_only_tenant(server)
    server.start()
    start = warmed(server)
    with Peak(server.process.pid) as peak:
        statuses = failing_searches(tenant_url, secret, 1500, 900_000)
    print(
        f"\n1,500 failing 0.9 MB .search: statuses {sorted(set(statuses))}; RSS {start:.0f} -> peak {peak.mib:.0f} MiB"
    )
    assert set(statuses) == {400}
    assert peak.mib - start < 100


def test_30_concurrent_chunked_sign_ins_of_50_fields_of_1_mb(server_factory) -> None:
    server = server_factory("sign-ins", admin_password=ADMIN_PASSWORD)
    start = warmed(server)
    with Peak(server.process.pid) as peak:
        results = concurrent_chunked_logins(server, 30, 50, 1_000_000)
    slowest = max(seconds for _, seconds in results)
    print(
        f"\n30 chunked sign-ins of 50 x 1 MB: {sorted({status.decode() for status, _ in results})}, slowest answer "
        f"{slowest:.2f} s; RSS {start:.0f} -> peak {peak.mib:.0f} MiB"
    )
    assert {status for status, _ in results} == {b"HTTP/1.1 413 Request Entity Too Large"}
    assert peak.mib - start < 50


def test_8_connections_pipelining_for_15_seconds_without_reading(server_factory) -> None:
    server = server_factory("pipeline")
    start = warmed(server)
    sent: list[int] = []

    def floods() -> None:
        threads = [threading.Thread(target=lambda: sent.append(pipeline_flood(server, 15.0))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    with Peak(server.process.pid) as peak:
        probe = other_tenant_p99(server, floods)
    print(
        f"\n8 connections pipelining GETs for 15 s, reading nothing: {sum(sent) / 2**20:.0f} MiB sent; "
        f"RSS {start:.0f} -> peak {peak.mib:.0f} MiB; another tenant meanwhile: {probe.summary()}"
    )
    assert peak.mib - start < 60
    assert set(probe.statuses) == {200} and len(probe.latencies_ms) > 100


def test_200_creates_of_2_mb_each_read_their_413(server_factory) -> None:
    server = server_factory("oversized")
    start = warmed(server)
    body = oversized_create(2_000_000)
    path = f"{path_of(server)}/Users"
    read = 0
    with Peak(server.process.pid) as peak:
        for number in range(200):
            extra = "Connection: close\r\n" if number % 2 else ""
            answer = raw_post(server, path, body, extra, sndbuf=16384)
            read += answer.startswith(b"HTTP/1.1 413 ") and b"larger than the limit of 1048576 bytes" in answer
    print(
        f"\n200 creates of 2 MB over fresh connections (small send buffer, half with Connection: close): "
        f"{read} read their 413 and its detail; RSS {start:.0f} -> peak {peak.mib:.0f} MiB"
    )
    assert read == 200
    assert peak.mib - start < 30
