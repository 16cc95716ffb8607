"""Disk and logs: what a client's values can make the server quote, log and store.

Every quotation of a client value in an error detail is clipped (scim.errors.shown); every field of
a provisioning log record is clipped; requests without a valid key are recorded only up to a rate
per address and for all addresses together, and the rest counted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from scim.errors import SHOWN_CHARS
from storage import LogRecord
from tests.conftest import PATCH_SCHEMA, entra_user
from tests.hardening.asgi import configured_tenant
from tests.hardening.flood import LOG_TEXT_COLUMNS, flood, stored_log_bytes
from tests.live_server import sqlite_url
from web.access_log import MAX_LOGGED_PATH
from web.observe import (
    FLUSH_RECORDS,
    MAX_LOGGED_BODY,
    MAX_LOGGED_DETAIL,
    MAX_LOGGED_TEXT,
    MAX_SUMMARIES,
    OTHER_CLIENTS,
    ProvisioningLog,
    UnauthenticatedLimit,
    logged_response_body,
)

LONG = "Q" * 5000  # a client value: a detail quoting more than SHOWN_CHARS of it is not clipped
MAX_DETAIL = 400  # the longest detail any of these may be, with its clipped quotation


def clipped_detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert "…" in detail, detail  # the value is quoted, and cut
    assert not re.search(f"(.)\\1{{{SHOWN_CHARS}}}", detail) and len(detail) <= MAX_DETAIL, detail
    return detail


async def test_every_error_detail_quotes_a_client_value_clipped(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        http = tenant.client
        user = (await http.post("/Users", json=entra_user("clip@x"))).json()
        group = (await http.post("/Groups", json={"displayName": "clip group"})).json()
        name = "N" * 200 + "@x"  # long enough to show clipping, short enough for any attribute cap
        assert (await http.post("/Users", json=entra_user(name))).status_code == 201
        assert (await http.post("/Groups", json={"displayName": "G" * 200})).status_code == 201
        no_auth = {"Authorization": ""}
        cases = [
            # Before authentication: an unknown endpoint anywhere under /v1/scim/.
            (lambda: http.get(f"https://scim.test/v1/scim/{LONG}/x", headers=no_auth), 404),
            (lambda: http.get(f"https://scim.test/v1/scim/{tenant.idp_id}/{LONG}", headers=no_auth), 404),
            (lambda: http.get(f"/Users/{LONG}"), 404),
            (lambda: http.get(f"/Schemas/{LONG}"), 404),
            (lambda: http.get(f"/ResourceTypes/{LONG}"), 404),
            (lambda: http.get("/Users", params={"sortBy": LONG}), 400),
            (lambda: http.get("/Users", params={"sortBy": f"name.{LONG}"}), 400),
            (lambda: http.get("/Users", params={"filter": f'{LONG[:3000]} eq "x"'}), 400),
            (lambda: http.get("/Users", params={"filter": f'urn:x:{LONG[:3000]}:userName eq "x"'}), 400),
            (lambda: http.get("/Users", params={"filter": f'meta.lastModified gt "{LONG[:3000]}"'}), 400),
            (lambda: http.get("/Users", params={"filter": f'userName eq "a" {LONG[:3000]}'}), 400),
            (lambda: http.get("/Users", params={"filter": f'userName eq "{LONG[:3000]}\\ud800"'}), 400),
            (lambda: http.post("/Users", json=entra_user("p@x", phoneNumbers=[{"type": "work", "value": LONG}])), 400),
            (lambda: http.post("/Users", json=entra_user(name)), 409),
            (lambda: http.post("/Groups", json={"displayName": "G" * 200}), 409),
            (lambda: http.put(f"/Users/{user['id']}", json={**entra_user("clip@x"), "id": LONG}), 400),
            (lambda: http.put(f"/Users/{LONG}", json={**entra_user("clip@x"), "id": "other"}), 400),
            (
                lambda: http.patch(
                    f"/Groups/{group['id']}",
                    json={
                        "schemas": [PATCH_SCHEMA],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": LONG}]}],
                    },
                ),
                400,
            ),
            (
                lambda: http.patch(
                    f"/Users/{user['id']}",
                    json={
                        "schemas": [PATCH_SCHEMA],
                        "Operations": [{"op": "replace", "path": f"!{LONG}", "value": "x"}],
                    },
                ),
                400,
            ),
            (
                lambda: http.patch(
                    f"/Users/{user['id']}",
                    json={"schemas": [PATCH_SCHEMA], "Operations": [{"op": LONG, "path": "title", "value": "x"}]},
                ),
                400,
            ),
            (lambda: http.post("/Users", content=b"{}", headers={"Content-Type": f"text/{LONG}"}), 415),
        ]
        for send, status in cases:
            clipped_detail(await send(), status)
        # The label of a PATCH operation quotes the path whole only when it is short.
        response = await http.patch(
            f"/Users/{user['id']}",
            json={
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "replace", "path": "title", "value": 5}, {"op": "replace", "path": "x" * 70}],
            },
        )
        assert response.status_code == 400 and response.json()["detail"].startswith("Operation 1 (replace title): ")


async def test_every_stored_field_of_a_provisioning_log_record_is_clipped(tmp_path: Path) -> None:
    # SQLite only: the test reads the stored records with sqlite3, below the store.
    async with configured_tenant(sqlite_url(tmp_path / "scimlet.db"), client=("1" * 5000, 1)) as tenant:
        http = tenant.client
        huge = "Z" * 30_000  # httpx sends URLs up to 64 KiB
        await http.get(f'/Users?filter=userName eq "{huge[:4000]}"')
        await http.get(f"/{huge}")
        await http.get(f"https://scim.test/v1/scim/{huge}/Users/{huge}")
        await http.post("/Users", json=entra_user("body@x", title=huge, displayName=huge))
        for i in range(40):  # a list of them answers with more than MAX_LOGGED_BODY
            assert (await http.post("/Users", json=entra_user(f"many{i}@x"))).status_code == 201
        assert len((await http.get("/Users")).content) > MAX_LOGGED_BODY
        await tenant.app.state.provisioning_log.flush()
        conn = sqlite3.connect(tmp_path / "scimlet.db")
        widths = dict(
            zip(
                LOG_TEXT_COLUMNS,
                conn.execute(
                    f"SELECT {', '.join(f'max(length({c}))' for c in LOG_TEXT_COLUMNS)} FROM provisioning_log"
                ).fetchone(),
                strict=True,
            )
        )
        conn.close()
    limits = {"detail": MAX_LOGGED_DETAIL, "request_body": MAX_LOGGED_BODY, "response_body": MAX_LOGGED_BODY}
    for column, width in widths.items():
        assert width is None or width <= limits.get(column, MAX_LOGGED_TEXT) + 1, (column, width)
    # The long values did reach each clipped field: the limits, not the requests, set these widths.
    assert widths["path"] == widths["idp_id"] == widths["client"] == widths["operation"] == MAX_LOGGED_TEXT + 1
    assert widths["request_body"] == widths["response_body"] == MAX_LOGGED_BODY + 1


def record(client: str, api_key_id: str | None = None, idp_id: str = "idp") -> LogRecord:
    return LogRecord("2026-01-01T00:00:00.000Z", idp_id, api_key_id, "GET", "/", "Get User", None, None, None,
                     401, None, None, 1.0, client, None, None)  # fmt: skip


def test_an_address_gets_its_burst_then_its_rate_and_the_rest_is_counted() -> None:
    clock = [0.0]
    limit = UnauthenticatedLimit(per_minute=30, total_per_minute=0, clock=lambda: clock[0])
    assert sum(limit.admit(record("10.0.0.1")) for _ in range(100)) == 30
    clock[0] += 10  # a sixth of a minute: five more records
    assert sum(limit.admit(record("10.0.0.1")) for _ in range(100)) == 5
    assert sum(limit.admit(record("10.0.0.2")) for _ in range(10)) == 10  # another address has its own
    assert limit.dropped_total == 165
    (summary,) = limit.summaries()
    assert summary.client == "10.0.0.1" and summary.status == 429 and summary.idp_id == "idp"
    assert summary.detail.startswith("165 unauthenticated requests from 10.0.0.1 between ")
    assert limit.summaries() == []  # each drop is summed up once


def test_many_addresses_share_one_budget_and_a_bounded_table() -> None:
    clock = [0.0]
    limit = UnauthenticatedLimit(per_minute=5, total_per_minute=50, clock=lambda: clock[0], max_clients=100)
    kept = sum(limit.admit(record(f"10.1.{i // 256}.{i % 256}", idp_id=f"idp{i % 2}")) for i in range(5000))
    assert kept == 50 and limit.dropped_total == 4950
    assert len(limit.buckets) <= 101 and OTHER_CLIENTS in limit.buckets
    summaries = limit.summaries()
    assert len(summaries) == MAX_SUMMARIES + 1  # the addresses with most drops, then one for the rest
    assert sum(int(s.detail.split()[0]) for s in summaries) == 4950
    assert summaries[-1].idp_id is None  # drops under several IdPs: the summary names none
    assert summaries[-1].client is None and summaries[-1].target.endswith(f" {OTHER_CLIENTS}")
    # Addresses past max_clients share one bucket, which drops the most; it names no address either.
    assert summaries[0].target == OTHER_CLIENTS and summaries[0].client is None
    assert all(s.client == s.target and s.client.startswith("10.1.") for s in summaries[1:-1])
    clock[0] += 60
    limit.summaries()
    assert limit.buckets == {}  # refilled buckets are forgotten


async def test_authenticated_records_are_never_limited(tmp_path: Path) -> None:
    # SQLite only: the test reads the stored records with sqlite3, below the store.
    async with configured_tenant(
        sqlite_url(tmp_path / "scimlet.db"),
        provisioning_log_unauthenticated_per_minute=2,
        provisioning_log_unauthenticated_total_per_minute=3,
    ) as tenant:
        http = tenant.client
        for _ in range(20):
            assert (await http.get("/Users")).status_code == 200
        for _ in range(20):
            assert (await http.get("/Users", headers={"Authorization": "Bearer wrong"})).status_code in (401, 429)
        provisioning_log = tenant.app.state.provisioning_log
        await provisioning_log.stop()
        assert provisioning_log.dropped == 18
        conn = sqlite3.connect(tmp_path / "scimlet.db")
        rows = conn.execute("SELECT api_key_id IS NULL, operation, detail FROM provisioning_log").fetchall()
        conn.close()
    assert sum(1 for anonymous, _, _ in rows if not anonymous) == 20
    assert sum(1 for anonymous, operation, _ in rows if anonymous and operation == "List Users") == 2
    (summary,) = [detail for _, operation, detail in rows if operation == "Unrecorded requests"]
    assert summary.startswith("18 unauthenticated requests from 127.0.0.1 between ")


def test_a_flood_of_large_unauthenticated_requests_stores_a_bounded_log(server_factory) -> None:
    server = server_factory("flood", logging_level="info")
    tenant_path = server.tenant_url.removeprefix(server.base)
    statuses = asyncio.run(flood(server.port, tenant_path, 1000, 60_000))
    assert sum(statuses.values()) == 1000 and set(statuses) <= {401, 404, 429}, statuses
    metrics = httpx.get(f"{server.base}/metrics").text
    dropped = next(line for line in metrics.splitlines() if line.startswith("scimlet_provisioning_log_dropped_records"))
    assert float(dropped.split()[-1]) >= 900
    assert server.stop() in (0, -signal.SIGTERM)  # a clean stop flushes the log
    records, stored = stored_log_bytes(server.query)
    # 30 records of the address's burst and a few refilled while the flood ran, and one summary.
    assert records <= 40 and stored <= 40 * 3000, (records, stored)
    (longest,) = server.query("SELECT max(length(detail)) FROM provisioning_log WHERE status != 429")[0]
    assert 100 < longest <= MAX_DETAIL  # each detail quoted its 60,000-character value clipped
    (detail,) = server.query("SELECT detail FROM provisioning_log WHERE operation = 'Unrecorded requests'")[0]
    assert detail.startswith(f"{1001 - records} unauthenticated requests from 127.0.0.1 between ")
    # The process log: a line per request, each with its path clipped.
    lines = [line for line in server.output().splitlines() if "scimlet.access" in line]
    assert len(lines) == 1000 and max(map(len, lines)) < 400


async def test_stopping_while_a_flush_is_in_flight_writes_each_record_once(tmp_path: Path) -> None:
    # SQLite only: the test reads the stored records with sqlite3, below the store.
    async with configured_tenant(sqlite_url(tmp_path / "scimlet.db")) as tenant:
        provisioning_log = ProvisioningLog(tenant.store)
        await provisioning_log.start()
        large = "b" * MAX_LOGGED_BODY  # records that take the writer a while
        for _ in range(FLUSH_RECORDS - 100):
            provisioning_log.add(record("10.0.0.1", api_key_id="key")._replace(request_body=large))
        while provisioning_log.pending:  # the periodic flush has taken them and is writing them
            await asyncio.sleep(0.001)
        await provisioning_log.stop()  # SIGTERM's path: the flush in flight is not undone, nor repeated
        conn = sqlite3.connect(tmp_path / "scimlet.db")
        (count,) = conn.execute("SELECT count(*) FROM provisioning_log").fetchone()
        conn.close()
    assert count == FLUSH_RECORDS - 100 == provisioning_log.written


async def test_a_request_line_clips_the_path_and_idp_id(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scimlet.access")
    async with configured_tenant(database_url, client=("c" * 5000, 1)) as tenant:
        long = "L" * 30_000
        assert (await tenant.client.get(f"https://scim.test/v1/scim/{long}/Users")).status_code == 401
        assert (await tenant.client.get(f"https://scim.test/elsewhere/{long}")).status_code == 404
    lines = [r for r in caplog.records if r.name == "scimlet.access"]
    assert len(lines) == 2
    for line in lines:
        assert len(line.getMessage()) < MAX_LOGGED_PATH + 40 and line.getMessage().endswith("ms")
        assert len(line.request["path"]) == MAX_LOGGED_PATH + 3 and line.request["path"].endswith("...")
        assert len(line.request["client"]) == MAX_LOGGED_PATH
    assert lines[0].request["idp"] == "L" * MAX_LOGGED_PATH + "..."


@pytest.mark.parametrize("text", ["", "short", "é" * 20_000, "€" * 16_384, "x" * 16_384, "𝄞" * 16_385, "a" * 70_000])
def test_a_response_body_is_kept_as_its_first_characters_whatever_its_size(text: str) -> None:
    # Only the bytes that can hold the kept characters are decoded: the same record as decoding it all.
    whole = text if len(text) <= MAX_LOGGED_BODY else text[:MAX_LOGGED_BODY] + "…"
    assert logged_response_body(text.encode()) == (whole or None)
    assert logged_response_body(memoryview(text.encode())) == (whole or None)
