"""Fault injection from the outside: rules turned on through the admin API answer a share of an
IdP's SCIM requests with 429 + Retry-After, 500, 503 or a delay, store nothing, are marked in the
provisioning log and /metrics, stay within their IdP and expire; bad rules are refused with a detail."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from app import create_app
from settings import load_settings
from storage import Store
from tests.backends import open_store
from tests.conftest import entra_user

TOKEN = "admin-token-for-fault-tests-0123456789"
BASE = "https://scim.test"


@dataclass
class Rig:
    store: Store
    app: Starlette
    admin: httpx.AsyncClient
    scim: httpx.AsyncClient
    other: httpx.AsyncClient  # another IdP's tenant
    idp_id: str

    async def logs(self) -> list[dict]:
        await self.app.state.provisioning_log.flush()
        return (await self.admin.get("/logs", params={"idp": self.idp_id, "count": "200"})).json()["Resources"]


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    settings = load_settings(
        environ={"SCIMLET_DATABASE_URL": database_url, "SCIMLET_SERVER_BASE_URL": BASE, "SCIMLET_ADMIN_TOKEN": TOKEN}
    )
    store = await open_store(database_url)
    _, secret = await store.create_api_key("entra", "", True, True)
    _, other_secret = await store.create_api_key("okta", "", True, True)
    idp = await store.create_idp("Entra", "key", "entra")
    other = await store.create_idp("Okta", "key", "okta")
    app = create_app(settings, store)
    transport = httpx.ASGITransport(app=app)
    clients = [
        httpx.AsyncClient(
            transport=transport, base_url=f"{BASE}/v1/admin", headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        httpx.AsyncClient(
            transport=transport, base_url=f"{BASE}/v1/scim/{idp.id}", headers={"Authorization": f"Bearer {secret}"}
        ),
        httpx.AsyncClient(
            transport=transport,
            base_url=f"{BASE}/v1/scim/{other.id}",
            headers={"Authorization": f"Bearer {other_secret}"},
        ),
    ]
    try:
        yield Rig(store, app, *clients, idp.id)
    finally:
        for client in clients:
            await client.aclose()
        await store.close()


async def test_a_429_rule_throttles_its_share_and_stores_nothing(rig: Rig) -> None:
    on = await rig.admin.post(
        f"/idps/{rig.idp_id}/faults", json={"kind": "429", "fraction": 0.5, "retry_after": 7, "minutes": 5}
    )
    assert on.status_code == 201, on.text
    rule = on.json()
    assert (rule["kind"], rule["fraction"], rule["retry_after"]) == ("429", 0.5, 7)
    answers = [await rig.scim.post("/Users", json=entra_user(f"u{n}@contoso.test")) for n in range(10)]
    throttled = [a for a in answers if a.status_code == 429]
    assert len(throttled) == 5 and {a.status_code for a in answers} == {201, 429}
    assert all(a.headers["retry-after"] == "7" for a in throttled)
    body = throttled[0].json()
    assert body["status"] == "429" and "injected by a scimlet fault rule" in body["detail"]
    assert all([(await rig.other.get("/Users")).status_code == 200 for _ in range(4)])  # another IdP: untouched
    records = await rig.logs()
    injected = [r for r in records if r["injected"] == "429"]
    assert len(injected) >= 5 and all(r["status"] == 429 for r in injected)
    assert all(r["injected"] is None for r in records if r["status"] == 201)
    metrics = (await rig.admin.get(f"{BASE}/metrics")).text
    assert f'scimlet_faults_injected_total{{idp="{rig.idp_id}",kind="429"}}' in metrics
    listed = (await rig.admin.get(f"/idps/{rig.idp_id}/faults")).json()
    assert [r["id"] for r in listed["Resources"]] == [rule["id"]] and set(listed["presets"]) == {
        "throttle",
        "quarantine",
    }
    off = await rig.admin.delete(f"/idps/{rig.idp_id}/faults/{rule['id']}")
    assert off.status_code == 204
    listings = [await rig.scim.get("/Users") for _ in range(4)]
    assert all(listing.status_code == 200 for listing in listings)
    # An injected failure stored nothing: the five answered 201 are the only users.
    assert listings[0].json()["totalResults"] == 5
    assert (await rig.admin.delete(f"/idps/{rig.idp_id}/faults/{rule['id']}")).status_code == 404


async def test_presets_500_503_and_a_bad_token_still_401(rig: Rig) -> None:
    quarantine = await rig.admin.post(f"/idps/{rig.idp_id}/faults", json={"preset": "quarantine"})
    assert quarantine.status_code == 201 and quarantine.json()["kind"] == "500"
    statuses = [(await rig.scim.get("/Users")).status_code for _ in range(10)]
    assert statuses.count(500) == 6
    wrong = await rig.scim.get("/Users", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401  # a fault follows the sign-in: the token is checked first
    assert (await rig.admin.delete(f"/idps/{rig.idp_id}/faults")).json() == {"deleted": 1}
    unavailable = await rig.admin.post(
        f"/idps/{rig.idp_id}/faults", json={"kind": "503", "fraction": 1, "resource": "Groups", "method": "GET"}
    )
    assert unavailable.status_code == 201
    assert (await rig.scim.get("/Users")).status_code == 200  # not a Groups request
    groups = await rig.scim.get("/Groups")
    assert groups.status_code == 503 and groups.headers["retry-after"] == "5"


async def test_a_delay_rule_answers_late_but_answers(rig: Rig) -> None:
    await rig.admin.post(f"/idps/{rig.idp_id}/faults", json={"kind": "delay", "fraction": 1, "delay_ms": 300})
    started = time.perf_counter()
    created = await rig.scim.post("/Users", json=entra_user("late@contoso.test"))
    assert created.status_code == 201 and time.perf_counter() - started >= 0.3
    records = await rig.logs()
    assert any(r["injected"] == "delay" and r["status"] == 201 for r in records)


async def test_rules_expire(rig: Rig) -> None:
    rule = (
        await rig.admin.post(f"/idps/{rig.idp_id}/faults", json={"kind": "500", "fraction": 1, "minutes": 0.02})
    ).json()
    assert (await rig.scim.get("/Users")).status_code == 500
    deadline = time.monotonic() + 5
    while (await rig.scim.get("/Users")).status_code == 500 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (await rig.scim.get("/Users")).status_code == 200
    assert rule["id"] not in [r["id"] for r in (await rig.admin.get(f"/idps/{rig.idp_id}/faults")).json()["Resources"]]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "418", "fraction": 0.5}, "Unknown fault kind"),
        ({"kind": "429", "fraction": 0}, "fraction must be a number above 0"),
        ({"kind": "429", "fraction": "half"}, "fraction must be a number"),
        ({"kind": "429", "fraction": 0.5, "minutes": 1441}, "24 hours"),
        ({"kind": "500", "fraction": 0.5, "retry_after": 3}, "retry_after is for 429 and 503"),
        ({"kind": "delay", "fraction": 0.5}, "needs delay_ms"),
        ({"kind": "429", "fraction": 0.5, "method": "BREW"}, "Unknown method"),
        ({"kind": "429", "fraction": 0.5, "resource": "Devices"}, "Unknown resource type"),
        ({"preset": "chaos"}, "Unknown preset"),
        ({"fraction": 0.5}, "Choose a preset"),
        ({"kind": "429", "fraction": 0.5, "colour": "red"}, "Unknown field"),
    ],
)
async def test_bad_rules_say_what_to_fix_and_change_nothing(rig: Rig, body: dict, words: str) -> None:
    refused = await rig.admin.post(f"/idps/{rig.idp_id}/faults", json=body)
    assert refused.status_code == 400 and words in refused.json()["detail"], refused.text
    assert (await rig.admin.get(f"/idps/{rig.idp_id}/faults")).json()["Resources"] == []
    assert (await rig.admin.post("/idps/no-such-idp/faults", json={"preset": "throttle"})).status_code == 404
