"""Every in-memory table a client can make grow has a bound: each test drives one past its limit and
checks the table stays within it while the server keeps answering (the sign-in throttles are
test_throttle.py's, the per-address log buckets test_logs.py's)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from storage import LogRecord
from storage.sqlite import auth as sqlite_auth
from tests.conftest import entra_user
from tests.hardening.asgi import configured_tenant
from tests.hardening.flood import flood
from tests.hardening.transport import Peak, warmed
from web import observe
from web.admin.security import SignInThrottle
from web.observe import OTHER_CLIENTS, ProvisioningLog, UnauthenticatedLimit

# --- metrics label sets --------------------------------------------------------------------------


async def test_random_idp_ids_and_paths_mint_no_metric_labels(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        metrics = tenant.app.state.metrics
        assert (await tenant.client.get("/Users")).status_code == 200
        root = httpx.AsyncClient(transport=httpx.ASGITransport(app=tenant.app), base_url="https://scim.test")
        async with root:
            for i in range(300):
                made_up = uuid.uuid4().hex
                bad = {"Authorization": f"Bearer wrong-{i}"}
                answered = [
                    await root.get(f"/v1/scim/{made_up}/Users", headers=bad),
                    await root.patch(f"/v1/scim/{made_up}/Groups/{made_up}", headers=bad, json={}),
                    await root.get(f"/{made_up}/{i}"),
                    await root.get(f"/v1/scim/{tenant.idp_id}/{made_up}", headers=bad),
                    await tenant.client.get(f"/Users/{made_up}"),
                ]
                assert {r.status_code for r in answered} <= {401, 404, 429}, [r.text for r in answered]
            scraped = (await root.get("/metrics")).text
        labels = {idp for idp, _, _ in metrics.operations}
        assert labels == {tenant.idp_id, "unknown"}
        # Route templates and "unmatched", eight methods at most, the statuses the server answers with.
        routes = {route for route, _, _ in metrics.requests}
        assert all("{" in route or route in ("unmatched", "/metrics") for route in routes), routes
        assert len(metrics.requests) <= 20 and len(metrics.durations) <= 12 and len(metrics.operations) <= 12
        assert not any(made_up in line for line in scraped.splitlines())
        assert (await tenant.client.get("/Users")).status_code == 200


async def test_a_deleted_idps_metric_series_are_dropped(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        metrics = tenant.app.state.metrics
        root = httpx.AsyncClient(transport=httpx.ASGITransport(app=tenant.app), base_url="https://scim.test")
        async with root:
            created = []
            for i in range(20):  # IdPs made and deleted, as an admin trying things out would
                key, secret = await tenant.store.create_api_key(f"k{i}", "", True, True)
                idp = await tenant.store.create_idp(f"idp{i}", "key", key.id)
                headers = {"Authorization": f"Bearer {secret}"}
                assert (await root.get(f"/v1/scim/{idp.id}/Users", headers=headers)).status_code == 200
                created.append(idp.id)
            scraped = (await root.get("/metrics")).text
            assert all(f'idp="{idp_id}"' in scraped for idp_id in created)
            for idp_id in created:
                await tenant.store.delete_idp(idp_id)
            scraped = (await root.get("/metrics")).text
            assert not any(idp_id in scraped for idp_id in created)
            assert {idp for idp, _, _ in metrics.operations} == set()  # the test tenant made no SCIM request
            assert (await tenant.client.get("/Users")).status_code == 200
            scraped = (await root.get("/metrics")).text
        assert f'scimlet_scim_operations_total{{idp="{tenant.idp_id}"' in scraped


# --- the sign-in caches --------------------------------------------------------------------------


def cached_signins(store: object) -> int:
    """How many sign-ins the store keeps in memory (SQLite: verified ones; PostgreSQL: every IdP's key)."""
    table = getattr(store, "_principals", None)
    if table is None:
        table = store._bindings  # type: ignore[attr-defined]
    return len(table)


async def test_a_flood_of_wrong_secrets_and_made_up_idps_grows_no_sign_in_cache(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        assert (await tenant.client.get("/Users")).status_code == 200
        for i in range(2000):
            assert tenant.store.authenticate(uuid.uuid4().hex, f"guess-{i}") is None
            assert tenant.store.authenticate(tenant.idp_id, f"guess-{i}") is None
        assert cached_signins(tenant.store) == 1
        assert (await tenant.client.get("/Users")).status_code == 200


async def test_the_sqlite_sign_in_cache_starts_over_at_its_cap(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_auth, "MAX_CACHED_SIGNINS", 3)
    async with configured_tenant(f"sqlite:///{tmp_path / 'cap.db'}") as tenant:
        signins = []
        for i in range(7):
            key, secret = await tenant.store.create_api_key(f"k{i}", "", True, True)
            idp = await tenant.store.create_idp(f"idp{i}", "key", key.id)
            signins.append((idp.id, secret))
        for _ in range(3):
            for idp_id, secret in signins:
                principal = tenant.store.authenticate(idp_id, secret)
                assert principal is not None and principal.idp_id == idp_id
                assert cached_signins(tenant.store) <= 3
        assert (await tenant.client.get("/Users")).status_code == 200


# --- the admin console's sign-in throttle --------------------------------------------------------


def test_the_console_sign_in_throttle_tracks_at_most_max_clients_addresses() -> None:
    now = [0.0]
    throttle = SignInThrottle(free=2, clock=lambda: now[0], max_clients=100)
    for i in range(5000):  # password guesses from as many addresses, none of them idle yet
        client = f"2001:db8::{i:x}"
        assert throttle.reserve(client) == 0
        throttle.release(client)
        throttle.failed(client)
        now[0] += 0.001
    assert len(throttle.clients) <= 100 and throttle.checking == set()
    for _ in range(3):
        throttle.failed("attacker")
    assert throttle.reserve("attacker") > 0  # the newest address is tracked and locked out
    assert len(throttle.clients) <= 100


# --- the provisioning log ------------------------------------------------------------------------


def record(client: str, body: str = "") -> LogRecord:
    return LogRecord(
        time="2026-01-01T00:00:00.000Z",
        idp_id=None,
        api_key_id=None,
        method="GET",
        path="/v1/scim/x/Users",
        operation="List Users",
        resource_type="User",
        resource_id=None,
        target=None,
        status=401,
        scim_type=None,
        detail="no key",
        duration_ms=0.1,
        client=client,
        request_body=body,
        response_body=None,
    )


def test_unrecorded_requests_are_counted_under_at_most_max_clients_addresses() -> None:
    # Only the total bucket (no per-address one): nothing else bounds the addresses counted.
    limit = UnauthenticatedLimit(per_minute=0, total_per_minute=10, clock=lambda: 0.0, max_clients=100)
    admitted = sum(limit.admit(record(f"2001:db8::{i:x}")) for i in range(5000))
    assert admitted == 10 and limit.dropped_total == 4990
    assert len(limit.dropped) <= 101 and limit.dropped[OTHER_CLIENTS][0] == 4990 - 100
    summaries = limit.summaries()
    assert len(summaries) == observe.MAX_SUMMARIES + 1
    assert sum(int(s.detail.split()[0]) for s in summaries if s.detail) == 4990


class StalledLogStore:
    """A database that takes its time refusing each write (PostgreSQL unreachable: connect_timeout)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def append_logs(self, records: list[LogRecord]) -> None:
        self.calls += 1
        await self.release.wait()
        raise ConnectionRefusedError("the database is unreachable")


async def test_the_log_buffer_counts_what_a_flush_holds_and_runs_one_flush_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(observe, "MAX_PENDING_CHARS", BUDGET)
    store = StalledLogStore()
    log = ProvisioningLog(store)  # type: ignore[arg-type]
    log.task = asyncio.create_task(asyncio.sleep(3600))  # as started, without the periodic flush
    body = "b" * 4000
    for i in range(5000):  # about 22 MB of records against a 4 MB budget
        log.add(record(f"10.0.0.{i % 200}", body))
        assert log.pending_chars + log.flushing_chars <= BUDGET
        await asyncio.sleep(0)
    # The first FLUSH_RECORDS went to the stalled database; no more flushes were started meanwhile.
    assert store.calls == 1 and len(log.flushing) == 1
    kept = BUDGET // (len(body) + len("no key") + observe.RECORD_OVERHEAD_CHARS)  # bodies, detail, the rest
    assert len(log.pending) == kept - observe.FLUSH_RECORDS and log.lost == 5000 - kept
    store.release.set()
    await asyncio.gather(*log.flushing, return_exceptions=True)
    # The refused records are back in the buffer, in front, within the budget.
    assert log.pending_chars <= BUDGET and log.flushing_chars == 0
    assert len(log.pending) == kept and log.lost == 5000 - kept
    assert log.pending[0].client == "10.0.0.0"
    log.task.cancel()


BUDGET = 4_000_000


# --- a live server under a flood from many addresses ---------------------------------------------


@pytest.mark.serial
def test_a_flood_from_thousands_of_addresses_to_made_up_idps_stays_within_a_memory_budget(server_factory) -> None:
    """Every table keyed by client address (the SCIM sign-in throttle, the provisioning log's
    per-address buckets and counts) and by IdP (metrics) fills to its cap: resident memory grows by
    less than the budget, and the real tenant is answered throughout."""
    server = server_factory("bounds")
    start = warmed(server)
    tenant_path = server.tenant_url.removeprefix(server.base)
    sources = [f"127.0.{i // 250 + 1}.{i % 250 + 1}" for i in range(12_000)]
    with Peak(server.process.pid) as peak:
        statuses = asyncio.run(flood(server.port, tenant_path, 24_000, 200, concurrency=8, sources=sources))
    assert sum(statuses.values()) == 24_000 and set(statuses) <= {401, 404, 429}, statuses
    with httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
        created = http.post("/Users", json=entra_user("after-the-flood@x"))
        assert created.status_code == 201, created.text
        assert http.get("/Users", params={"filter": 'userName eq "after-the-flood@x"'}).json()["totalResults"] == 1
    scraped = httpx.get(f"{server.base}/metrics").text
    assert sum(line.startswith("scimlet_scim_operations_total{") for line in scraped.splitlines()) <= 30
    print(f"\nRSS {start:.0f} MiB warmed, {peak.mib:.0f} MiB at the peak of the flood")  # shown with -s
    assert peak.mib - start < 80, (start, peak.mib)
