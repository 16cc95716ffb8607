"""Event subscriptions in the console and the admin API: made (the secret shown once), listed with
their counters, paused, resumed, redelivered from an event, deleted; each event with its SET and
attempts; bad input refused with what to fix."""

from __future__ import annotations

import re

import jwt

from storage import DeliveryAttempt, DeliveryProgress
from storage.common import now
from tests.admin.conftest import TOKEN, Admin
from tests.conftest import entra_user

API = {"Authorization": f"Bearer {TOKEN}"}


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern} is not in the page"
    return match.group(1)


async def test_the_admin_api_manages_subscriptions_and_shows_events_with_attempts(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    client = signed_in.client
    url = f"/v1/admin/idps/{tenant.idp_id}/subscriptions"
    made = await client.post(
        url, headers=API, json={"url": "https://app.example/hook", "events": ["create", "members"]}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["secret"] and body["events"] == ["create", "members"] and body["audience"] == "https://app.example/hook"
    sid = body["id"]
    # Its IdP's writes now make events (the sign-in knows at once in this process).
    user = (await tenant.scim.post("/Users", json=entra_user("eve@example.com"))).json()
    listed = (await client.get(url, headers=API)).json()["Resources"]
    assert [(s["id"], s["pending"], "secret" in s) for s in listed] == [(sid, 1, False)]
    detail = (await client.get(f"/v1/admin/subscriptions/{sid}", headers=API)).json()
    (event,) = detail["events"]
    assert event["kind"] == "create" and event["resource"] == f"/Users/{user['id']}" and not event["done"]
    claims = event["set"]
    assert claims["iss"] == tenant.url and claims["aud"] == "https://app.example/hook"
    assert claims["events"]["urn:ietf:params:scim:event:prov:create:full"]["data"]["id"] == user["id"]
    # A delivery round as the delivery task stores one: the event with its attempts.
    attempts = (
        DeliveryAttempt(sid, event["seq"], now(), "retry", 503, "the receiver answered 503", 2.0),
        DeliveryAttempt(sid, event["seq"], now(), "delivered", 202, None, 1.0),
    )
    await signed_in.store.record_delivery(DeliveryProgress(sid, event["seq"], 1, 0, attempts))
    one = (await client.get(f"/v1/admin/subscriptions/{sid}/events/{event['seq']}", headers=API)).json()
    assert one["done"] and [a["outcome"] for a in one["attempts"]] == ["delivered", "retry"]
    assert (await client.get(f"/v1/admin/subscriptions/{sid}/events/999999", headers=API)).status_code == 404
    paused = (await client.post(f"/v1/admin/subscriptions/{sid}/pause", headers=API)).json()
    assert paused["state"] == "paused" and paused["delivered"] == 1
    again = await client.post(f"/v1/admin/subscriptions/{sid}/redeliver", headers=API, json={"from": event["seq"]})
    assert again.json()["state"] == "active" and again.json()["pending"] == 1
    assert (await client.post(f"/v1/admin/subscriptions/{sid}/explode", headers=API)).status_code == 404
    keys = (await client.post("/v1/admin/events/rotate-keys", headers=API)).json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "ES256"}
    jwks = (await client.get("/v1/events/jwks.json")).json()["keys"]
    assert {k["kid"] for k in jwks} == {k["kid"] for k in keys}
    assert (await client.get("/.well-known/jwks.json")).json()["keys"] == jwks
    assert (await client.delete(f"/v1/admin/subscriptions/{sid}", headers=API)).status_code == 204
    gone = await client.get(f"/v1/admin/subscriptions/{sid}", headers=API)
    assert gone.status_code == 404 and sid in gone.json()["detail"]


async def test_bad_subscriptions_are_refused_with_what_to_fix(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    url = f"/v1/admin/idps/{tenant.idp_id}/subscriptions"
    cases = [
        ({"url": "ftp://x"}, "url must be the receiver's http or https URL"),
        ({"url": "https://a/", "events": ["created"]}, "unknown event 'created'"),
        ({"url": "https://a/", "form": "long"}, "form must be full or notice"),
        ({"url": "https://a/", "alg": "none"}, "alg must be one of HS256, RS256, ES256"),
        ({"delivery": "poll", "url": "https://a/"}, "a poll subscription has no url"),
        ({"delivery": "mail"}, "delivery must be push or poll"),
        ({"url": "https://a/", "colour": "red"}, "Unknown field"),
        ({"url": "https://a/", "events": "create"}, "events must be an array"),
    ]
    for body, words in cases:
        answer = await signed_in.client.post(url, headers=API, json=body)
        assert answer.status_code == 400 and words in answer.json()["detail"], (body, answer.text)
    missing = await signed_in.client.post("/v1/admin/idps/nope/subscriptions", headers=API, json={"url": "https://a/"})
    assert missing.status_code == 404
    assert (await signed_in.client.get(url, headers=API)).json()["Resources"] == []


async def test_the_console_makes_shows_and_controls_a_subscription(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert 'id="no-subscriptions"' in page.text and 'id="add-subscription"' in page.text
    refused = await signed_in.post(f"/admin/idps/{tenant.idp_id}/subscriptions", {"delivery": "push", "url": "nope"})
    assert refused.status_code == 400 and "url must be the receiver" in refused.text
    made = await signed_in.post(
        f"/admin/idps/{tenant.idp_id}/subscriptions",
        {"delivery": "push", "url": "https://app.example/in", "event-create": "on", "form": "notice", "alg": "HS256"},
    )
    assert made.status_code == 201 and "Copy the secret now" in made.text
    secret = found(r'<code id="subscription-secret">([^<]+)</code>', made.text)
    sid = found(r'/admin/subscriptions/([0-9a-f-]+)"', made.text)
    await tenant.scim.post("/Users", json=entra_user("fay@example.com"))
    listing = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert "https://app.example/in" in listing.text and 'id="subscriptions"' in listing.text
    detail = await signed_in.client.get(f"/admin/subscriptions/{sid}")
    assert detail.status_code == 200 and 'id="pending">1<' in detail.text
    assert "urn:ietf:params:scim:event:prov:create:notice" in detail.text and secret not in detail.text
    event = await signed_in.app.state.events.subscriptions.get(sid)
    (outbox,) = await signed_in.store.outbox_after(tenant.idp_id, 0, 10)
    token = await signed_in.app.state.events.sets.token(event, outbox)
    assert jwt.decode(token, secret, algorithms=["HS256"], audience="https://app.example/in")["txn"]
    assert 'id="troubled-subscriptions"' not in (await signed_in.client.get("/admin/")).text
    await signed_in.store.record_delivery(
        DeliveryProgress(sid, 0, state="failed", last_error="the receiver answered 503")
    )
    overview = await signed_in.client.get("/admin/")
    assert 'id="troubled-subscriptions"' in overview.text and "the receiver answered 503" in overview.text
    assert 'id="subscription-failed"' in (await signed_in.client.get(f"/admin/subscriptions/{sid}")).text
    paused = await signed_in.post(f"/admin/subscriptions/{sid}", {"action": "pause"})
    assert paused.status_code == 303
    assert 'id="subscription-paused"' in (await signed_in.client.get(f"/admin/subscriptions/{sid}")).text
    await signed_in.post(f"/admin/subscriptions/{sid}", {"action": "redeliver", "from": "1"})
    assert 'id="state">active<' in (await signed_in.client.get(f"/admin/subscriptions/{sid}")).text
    gone = await signed_in.post(f"/admin/subscriptions/{sid}", {"action": "delete"})
    assert gone.status_code == 303 and gone.headers["location"].endswith(f"/idps/{tenant.idp_id}#events")
    assert (await signed_in.client.get(f"/admin/subscriptions/{sid}")).status_code == 404


async def test_the_operations_of_one_bulk_request_share_its_txn(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    await signed_in.app.state.events.subscriptions.subscribe(tenant.idp_id, url="https://app.example/in")
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": entra_user(f"bulk{n}@example.com")}
        for n in range(2)
    ]
    bulk = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations}
    assert (await tenant.scim.post("/Bulk", json=bulk)).status_code == 200
    single = await tenant.scim.post("/Users", json=entra_user("alone@example.com"))
    assert single.status_code == 201
    events = await signed_in.store.outbox_after(tenant.idp_id, 0, 10)
    assert [e.kind for e in events] == ["create", "create", "create"]
    assert events[0].txn == events[1].txn != events[2].txn
