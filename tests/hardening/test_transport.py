"""The transport classes, driven past their limits at sizes that show in seconds (hardening/stress
drives them at full size): what failing requests leave behind, console and admin API bodies,
pipelining without reading, and answers to bodies over the limit. Each live test checks the server
process's resident memory (VmRSS) against a budget."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import HTTPConnection

from tests.admin.conftest import BASE, CLIENT_ADDRESS, PASSWORD, TOKEN, admin_settings, hidden_csrf, open_admin
from tests.hardening.transport import failing_search_body
from web.responses import ScimRequest

MARKER = "only-in-this-test's-bodies"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


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
