"""PATCH work and oversized values at the review's full size, printing the figures of
docs/security.md ("PATCH work and value sizes").

With the default limits the review's PATCHes are refused at once; with the limits raised far past
them (a server configured for 20,000 values per attribute) they run, and show that every step is
linear: the quadratic code held the single writer 8 s for 20,000 added emails, 6 s for 10,000
removed and 6 s to find the failing operation of a 1000-operation PATCH on a user with 10,000.
"""

from __future__ import annotations

import time

import httpx

from tests.conftest import entra_user, patch_body
from tests.hardening.stall import P99_BUDGET_MS, other_tenant_p99
from tests.hardening.test_patch_and_sizes import SCIM_JSON, emails, encoded, writes_of_another_tenant
from tests.hardening.transport import rss_mib


def timed_patch(client: httpx.Client, url: str, body: dict | bytes) -> tuple[httpx.Response, float]:
    """The PATCH and its time; a body given as bytes is sent as it is (not encoded again)."""
    content = body if isinstance(body, bytes) else encoded(body)
    started = time.perf_counter()
    response = client.patch(url, content=content, headers=SCIM_JSON, timeout=120)
    return response, time.perf_counter() - started


def failing_title_body() -> dict:
    """The review's failing PATCH: many cheap operations, the last one invalid (47 KB)."""
    operations = [{"op": "replace", "path": "title", "value": f"t{i}"} for i in range(999)]
    return patch_body(*operations, {"op": "add", "path": "phoneNumbers", "value": [{"type": "work", "value": "12"}]})


def failing_body(values: int) -> dict:
    operations = [
        {"op": "replace", "path": f'emails[value eq "user{i % values}@example.com"].display', "value": f"d{i}"}
        for i in range(999)
    ]
    work_phone = {"op": "add", "path": "phoneNumbers", "value": [{"type": "work", "value": "12"}]}
    return patch_body(*operations, work_phone)


def test_the_review_s_patches_with_the_limits_raised(server_factory) -> None:
    server = server_factory(scim_max_attribute_values=20_000, scim_max_document_bytes=4_000_000)
    client = httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=120)
    empty = client.post("/Users", json={"userName": "empty@x", "name": {"givenName": "a", "familyName": "b"}}).json()
    large = client.post("/Users", json=entra_user("large@x", emails=emails(10_000))).json()
    assert large["emails"] and len(large["emails"]) == 10_000
    add = patch_body({"op": "add", "path": "emails", "value": emails(20_000, "new")})
    remove = patch_body({"op": "remove", "path": "emails", "value": emails(10_000)})
    figures = []
    for label, url, body, status in (
        ("add 20,000 emails", f"/Users/{empty['id']}", add, 200),
        ("remove 10,000 of 10,000 emails", f"/Users/{large['id']}", remove, 200),
    ):
        writes, (response, seconds) = writes_of_another_tenant(
            server, lambda u=url, b=body: timed_patch(client, u, b), f"writer-{len(figures)}"
        )
        assert response.status_code == status, response.text
        figures.append((label, seconds, writes.summary()))
    assert "emails" not in client.get(f"/Users/{large['id']}").json()
    failing_user = client.post("/Users", json=entra_user("failing@x", emails=emails(10_000))).json()
    response, seconds = timed_patch(client, f"/Users/{failing_user['id']}", failing_title_body())
    assert response.status_code == 400 and response.json()["detail"].startswith("Operation 1000 (add phoneNumbers)")
    figures.append(("failing 1000-operation PATCH on a user with 10,000 emails", seconds, ""))
    for label, seconds, other in figures:
        print(f"\n[raised limits] {label}: {seconds * 1000:.0f} ms  {other}")
        assert seconds < 5


def test_the_review_s_patches_with_the_default_limits(server_factory) -> None:
    server = server_factory()
    client = httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=120)
    user = client.post("/Users", json=entra_user("full@x", emails=emails(100))).json()
    url = f"/Users/{user['id']}"
    too_many = patch_body({"op": "add", "path": "emails", "value": emails(20_000, "new")})
    response, seconds = timed_patch(client, url, too_many)
    assert response.status_code == 400
    print(
        f"\n[default limits] add 20,000 emails: {response.status_code} in {seconds * 1000:.0f} ms:",
        response.json()["detail"],
    )
    maximal = patch_body(
        *(
            {"op": "replace", "path": f'emails[value eq "user{i % 100}@example.com"].display', "value": f"d{i}"}
            for i in range(1000)
        )
    )
    response, seconds = timed_patch(client, url, maximal)
    assert response.status_code == 200
    print(f"[default limits] 1000 filtered operations on 100 emails: {seconds * 1000:.0f} ms")
    response, seconds = timed_patch(client, url, failing_body(100))
    assert response.status_code == 400
    print(f"[default limits] the same failing at operation 1000: {seconds * 1000:.0f} ms")

    bodies = [encoded(body) for body in (too_many, maximal, failing_body(100))]

    def expensive() -> list[int]:
        return [timed_patch(client, url, body)[0].status_code for _ in range(10) for body in bodies]

    reads = other_tenant_p99(server, expensive)
    writes, statuses = writes_of_another_tenant(server, expensive)
    assert statuses == [400, 200, 400] * 10 and reads.expensive_result == statuses
    print(f"[default limits] 30 such PATCHes: another tenant's reads {reads.summary()}")
    print(f"[default limits] 30 such PATCHes: another tenant's writes {writes.summary()}")
    assert reads.p99_ms() < P99_BUDGET_MS and writes.p99_ms() < P99_BUDGET_MS


def test_300_creates_with_a_1_mb_work_phone_leave_memory_flat(server_factory) -> None:
    server = server_factory()
    client = httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=120)
    before = rss_mib(server.process.pid)
    started = time.perf_counter()
    for i in range(300):
        body = entra_user(f"phone{i}@x", phoneNumbers=[{"type": "work", "value": f"+1{i}" + "9" * 1_000_000}])
        assert client.post("/Users", json=body).status_code == 400
    after = rss_mib(server.process.pid)
    print(
        f"\n300 creates with a 1 MB work phone: RSS {before:.0f} MB -> {after:.0f} MB",
        f"in {time.perf_counter() - started:.1f} s",
    )
    assert after - before < 50
