"""The transport classes, driven past their limits at sizes that show in seconds (hardening/stress
drives them at full size): what failing requests leave behind, console and admin API bodies,
pipelining without reading, and answers to bodies over the limit. Each live test checks the server
process's resident memory (VmRSS) against a budget."""

from __future__ import annotations

import gc
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import HTTPConnection

from tests.admin.conftest import BASE, CLIENT_ADDRESS, PASSWORD, TOKEN, admin_settings, hidden_csrf, open_admin
from tests.hardening.transport import (
    FORM,
    Peak,
    abandoned_post,
    chunked_post,
    concurrent_chunked_logins,
    failing_search_body,
    failing_searches,
    oversized_create,
    path_of,
    pipeline_flood,
    raw_post,
    read_only_tenant,
    read_response,
    trickled_post,
    warmed,
)
from web.scim.request import ScimRequest

# A live test that holds the server's memory (Peak) or another client's wait to a budget runs alone:
# @pytest.mark.serial. The others assert on timeouts of seconds, with seconds of margin, or count
# objects in their own process: they run in parallel.

MARKER = "only-in-this-test's-bodies"
JSON = {"Content-Type": "application/json"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    """Anything left for the cyclic collector stays visible to gc.get_objects() until the test ends."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def alive(kind: type) -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kind))


def bodies_alive() -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, dict) and thing.get("marker") == MARKER)


async def test_failing_requests_are_freed_without_the_cyclic_collector(tmp_path: Path, no_cyclic_collector) -> None:
    """Every way a SCIM, console or admin API request fails leaves neither the request nor its parsed
    body behind once answered: nothing waits for the (rarely run) cyclic collector."""
    settings = admin_settings(tmp_path)
    store, app = await open_admin(settings)
    try:
        key, secret = await store.create_api_key("read-only", "", False, False)
        idp = await store.create_idp("test", "key", key.id)
        transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
        scim = httpx.AsyncClient(
            transport=transport, base_url=f"{BASE}/v1/scim/{idp.id}", headers={"Authorization": f"Bearer {secret}"}
        )
        browser = httpx.AsyncClient(transport=transport, base_url=BASE)
        admin_api = httpx.AsyncClient(
            transport=transport, base_url=f"{BASE}/v1/admin", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        marked = json.dumps({"marker": MARKER, "name": 5, "pad": "x" * 1000}).encode()
        search = json.dumps(json.loads(failing_search_body(1000)) | {"marker": MARKER}).encode()
        form = f"marker={MARKER}&csrf_token=forged".encode()
        failures = [
            (scim.post("/Users/.search", content=search), 400),  # a value the search refuses
            (scim.post("/Users/.search", content=b'{"marker": "' + b"x" * 1000 + b'"'), 400),  # chained error
            (scim.post("/Users", content=marked), 403),  # a read-only key writes
            (scim.post("/Users/.search", content=b"x" * 2_000_000), 413),
            (scim.post("/Nothing/here", content=marked), 404),
            (scim.delete("/Users"), 405),
            (scim.post("/Users/.search", content=search, headers={"Authorization": "Bearer wrong"}), 401),
            (admin_api.post("/apikeys", content=marked + b"x"), 400),  # not JSON
            (admin_api.post("/apikeys", content=marked), 400),  # a name that is not a string
            (admin_api.post("/apikeys", content=b"{" + b" " * 70_000 + b"}"), 413),
            (browser.post("/admin/login", content=form, headers=FORM), 403),
            (browser.post("/admin/login", content=form + b"&pad=" + b"x" * 70_000, headers=FORM), 413),
        ]
        assert alive(ScimRequest) == 0 and bodies_alive() == 0
        for request, status in failures:
            response = await request
            assert response.status_code == status, response.text
            assert alive(ScimRequest) == 0, response.request.url
            assert alive(HTTPConnection) == 0, response.request.url
            assert bodies_alive() == 0, response.request.url
        page = await browser.get("/admin/login")
        signed_in = await browser.post(
            "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD}
        )
        assert signed_in.status_code == 303
        assert (await browser.post("/admin/keys", content=form, headers=FORM)).status_code == 403
        assert alive(HTTPConnection) == 0 and bodies_alive() == 0
        for client in (scim, browser, admin_api):
            await client.aclose()
    finally:
        await store.close()


# --- live servers: each class well past its limit, within a memory budget --------------------------


@pytest.mark.serial
def test_large_failing_searches_of_a_read_only_key_do_not_pile_up(server_factory) -> None:
    server = server_factory("searches", start=False)
    tenant_url, secret = read_only_tenant(server)
    server.start()
    start = warmed(server)
    with Peak(server.process.pid) as peak:
        statuses = failing_searches(tenant_url, secret, 200, 900_000)
    assert set(statuses) == {400}
    # 200 bodies of 0.9 MB: kept alive by their errors they took ~200 MiB; now each is freed when answered.
    assert peak.mib - start < 60, (start, peak.mib)


@pytest.mark.serial
def test_console_and_admin_api_bodies_are_bounded_while_streaming(server_factory) -> None:
    server = server_factory("bodies", admin_password=PASSWORD, admin_token=TOKEN)
    start = warmed(server)
    with Peak(server.process.pid) as peak:
        results = concurrent_chunked_logins(server, 10, 50, 1_000_000)
    for status, seconds in results:
        assert status == b"HTTP/1.1 413 Request Entity Too Large", results
        assert seconds < 10, results  # answered once 64 KiB arrived, not after the 50 MB
    # Parsed whole, ten such posts took ~400 MiB.
    assert peak.mib - start < 50, (start, peak.mib)
    pieces = [b'{"name": "', b"x" * 100_000, b'"}']
    refused = chunked_post(server.port, "/v1/admin/apikeys", iter(pieces), JSON)
    assert refused.startswith(b"HTTP/1.1 401 "), refused[:200]  # no token: refused before the body is read
    answer = chunked_post(server.port, "/v1/admin/apikeys", iter(pieces), JSON | BEARER)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"larger than the limit of 65536 bytes" in answer, answer[:300]
    assert server.query("SELECT count(*) FROM api_keys") == [(1,)]


def test_console_and_admin_api_bodies_have_a_deadline_and_survive_a_disconnect(server_factory) -> None:
    server = server_factory(
        "deadline", admin_password=PASSWORD, admin_token=TOKEN, server_body_timeout=2, logging_level="info"
    )
    form = f"password={PASSWORD}&csrf_token=x".encode()
    started = time.monotonic()
    login = trickled_post(server.port, "/admin/login", FORM, form, 0.2)
    assert login.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 2 seconds" in login, login[:300]
    api = trickled_post(server.port, "/v1/admin/apikeys", JSON | BEARER, b'{"name": "slow key"}', 0.2)
    assert api.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 2 seconds" in api, api[:300]
    assert time.monotonic() - started < 15
    abandoned_post(server.port, "/admin/login", FORM, form[:10], 10_000)
    abandoned_post(server.port, "/v1/admin/apikeys", JSON | BEARER, b'{"name": ', 10_000)
    abandoned_post(server.port, f"{path_of(server)}/Users", {"Authorization": f"Bearer {server.secret}"}, b"{", 10_000)
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/admin/apikeys", headers=BEARER).json()["Resources"][0]["name"] == "entra"
    server.stop()
    output = server.output()
    assert "/admin/login 400" in output and "/v1/admin/apikeys 400" in output, output  # the abandoned posts
    assert " 500 " not in output and "Traceback" not in output and "Exception" not in output, output
    assert server.query("SELECT count(*) FROM api_keys") == [(1,)]


@pytest.mark.serial
def test_pipelining_without_reading_answers_is_bounded_and_others_are_served(server_factory) -> None:
    server = server_factory("pipeline")
    start = warmed(server)
    latencies = []
    with Peak(server.process.pid) as peak:
        floods = [threading.Thread(target=pipeline_flood, args=(server, 4.0)) for _ in range(2)]
        for flood in floods:
            flood.start()
        with httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
            while any(flood.is_alive() for flood in floods):
                began = time.monotonic()
                assert http.get("/Users", params={"count": 1}).status_code == 200
                latencies.append(time.monotonic() - began)
                time.sleep(0.05)
        for flood in floods:
            flood.join()
    assert len(latencies) > 10 and max(latencies) < 2, latencies
    # Two connections queueing every request they read took ~190 MiB in half a second, and kept growing.
    # Now each queues at most MAX_PIPELINED (+ a slice): what remains is answering the ~10,000 requests
    # that fit in the kernel's buffers before they fill, the same for 2 connections or 8, 4 s or 12.
    assert peak.mib - start < 50, (start, peak.mib)


def test_a_client_that_reads_no_answers_is_dropped_after_the_write_timeout(server_factory) -> None:
    server = server_factory("unread", server_write_timeout=2)
    started = time.monotonic()
    sent = pipeline_flood(server, 60.0, target="/openapi.json", batch=200)
    # The answers filled the kernel's buffers and then the server's; two seconds later the server
    # dropped the connection instead of holding it (and its queue) for as long as the client likes.
    assert time.monotonic() - started < 30, (time.monotonic() - started, sent)
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.get("/healthz").status_code == 200


def test_a_slow_reader_that_keeps_reading_is_not_cut_off(server_factory) -> None:
    server = server_factory("slow-reader", server_write_timeout=3)
    count, size = 500, len(httpx.get(f"{server.base}/openapi.json").content)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * count)
    received, started = 0, time.monotonic()
    sock.settimeout(10)
    try:
        while received < count * size and time.monotonic() - started < 60:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
            time.sleep(0.01)  # at most 6.5 MB/s: seconds in all, never long without reading
    finally:
        sock.close()
    assert received >= count * size, (received, count * size, time.monotonic() - started)
    assert time.monotonic() - started > 3  # longer than the write timeout, with the server's buffer full


SMALL_SEND_BUFFER = [(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)]


@pytest.mark.serial
def test_a_body_over_the_limit_always_reaches_the_client_as_413(server_factory) -> None:
    """The client reads the 413 and its detail whether it keeps the connection or not, also when its
    send buffer is small, as over a real network (a close with the body unread used to reset it)."""
    server = server_factory("oversized")
    start = warmed(server)
    body = oversized_create(2_000_000)
    path = f"{path_of(server)}/Users"
    with Peak(server.process.pid) as peak:
        for _ in range(3):
            for headers in ({}, {"Connection": "close"}):
                transport = httpx.HTTPTransport(socket_options=SMALL_SEND_BUFFER)
                with httpx.Client(headers=server.auth, transport=transport, timeout=10) as http:
                    response = http.post(f"{server.tenant_url}/Users", content=body, headers=headers)
                assert response.status_code == 413
                assert response.json()["detail"] == "The request body is larger than the limit of 1048576 bytes"
                assert response.headers["connection"] == "close"
            for extra in ("", "Connection: close\r\n"):
                answer = raw_post(server, path, body, extra, sndbuf=16384)
                assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
                assert b"larger than the limit of 1048576 bytes" in answer
    assert peak.mib - start < 30, (start, peak.mib)
    assert server.query("SELECT count(*) FROM users") == [(0,)]


def test_the_rest_of_an_unread_body_is_drained_for_a_bounded_time_only(server_factory) -> None:
    server = server_factory("linger")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"POST {path_of(server)}/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.secret}\r\n"
        f"Content-Length: {1 << 40}\r\n\r\n".encode()
    )
    started = time.monotonic()
    answer, sent = b"", 0
    try:
        while time.monotonic() - started < 30:
            if select.select([sock], [], [], 0)[0] and not answer:
                answer = read_response(sock)
            sent += sock.send(b"x" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"larger than the limit" in answer, answer[:200]
    # The server read past the answer for a bounded time and amount, then closed: it did not swallow
    # a terabyte (or wait for one).
    assert time.monotonic() - started < 10 and sent < 100 * 2**20, (time.monotonic() - started, sent)
