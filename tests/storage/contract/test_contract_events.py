"""EventStore on every backend: the outbox written with the change that made it (and only for a
real change), subscriptions and their cursors, leases, delivery progress and the outbox's bounds."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from scim.errors import ScimError
from storage import AdminError, Change, DeliveryAttempt, DeliveryProgress, EventSource, Row, Store, Subscription
from storage.common import format_timestamp, now
from tests.conftest import entra_user


def source(kind: str = "create", patch: dict | None = None) -> EventSource:
    return EventSource("txn-1", kind, patch)


def subscription(idp: str, sid: str = "sub-1") -> Subscription:
    return Subscription(
        sid, idp, "push", "http://127.0.0.1:9/", ["create"], "full", "aud", "HS256", "sealed", "active", 0, now()
    )


async def stored(store: Store, subscription_id: str) -> Subscription:
    found = await store.subscription(subscription_id)
    assert found is not None, f"no subscription {subscription_id}"
    return found


def user_doc(name: str) -> dict:
    body = entra_user(name)
    body.pop("schemas")
    return body


async def test_writes_put_their_events_in_the_outbox_only_when_they_change(store: Store, idp: str) -> None:
    added = await store.add_subscription(subscription(idp))
    assert added.cursor == 0 and (await store.subscriptions(idp)) == [added]
    row = await store.create("User", idp, user_doc("ann@example.com"), events=source())
    same = await store.update("User", idp, row.id, lambda r: Change(doc=r.doc, events=source("patch")))
    assert same.version == 1  # no change, no event
    patch = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    await store.update(
        "User", idp, row.id, lambda r: Change(doc={**r.doc, "active": False}, events=source("patch", patch))
    )
    group = await store.create("Group", idp, {"displayName": "G"}, events=source())
    await store.update("Group", idp, group.id, lambda r: Change(doc={"displayName": "G2"}, events=source("put")))
    await store.delete("User", idp, row.id, events=source("delete"))
    events = await store.outbox_after(idp, 0, 100)
    assert [(e.rtype, e.kind) for e in events] == [
        ("User", "create"),
        ("User", "patch"),
        ("User", "deactivate"),
        ("Group", "create"),
        ("Group", "put"),
        ("User", "delete"),
    ]
    # A create's and a put's data: the stored document (and a group's members), with created; the
    # SET renders it (web/events/delivery.py). The user's create kept the user as it was created.
    assert events[0].data == {"doc": row.doc, "created": row.created}
    assert events[0].external_id == "ext-ann@example.com" and events[0].time == row.created
    assert events[1].data == patch and events[1].attributes == ["active"] and events[1].version == 2
    assert events[3].data == {"doc": {"displayName": "G"}, "members": []}
    put = events[4].data
    assert put is not None and put["doc"] == {"displayName": "G2"} and put["members"] == []
    assert put.get("created", events[4].time) == group.created  # left out when it is the event's time
    assert events[4].attributes == ["displayName"] and events[4].version == 2
    assert events[5].version is None and events[5].data is None
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert await store.outbox_event(events[2].seq) == events[2]
    assert await store.outbox_event(10**9) is None
    assert await store.outbox_after(idp, events[3].seq, 2) == events[4:6]


async def test_a_users_create_or_put_reads_the_user_until_it_changes(store: Store, idp: str) -> None:
    await store.add_subscription(subscription(idp))
    row = await store.create("User", idp, user_doc("liv@example.com"), events=source())
    (created,) = await store.outbox_after(idp, 0, 10)
    assert created.data == {"doc": row.doc, "created": row.created}  # read from the user's row
    v2 = {**row.doc, "title": "Pilot"}
    await store.update("User", idp, row.id, lambda r: Change(doc=v2, events=source("put")))
    v3 = {**v2, "title": "Captain"}
    await store.update("User", idp, row.id, lambda r: Change(doc=v3, events=source("put")))
    first, put2, put3 = await store.outbox_after(idp, 0, 10)
    assert first == created  # kept as it was when the put changed the user
    assert put2.data == {"doc": v2, "created": row.created} and put2.version == 2
    assert put3.data == {"doc": v3, "created": row.created} and put3.version == 3
    await store.delete("User", idp, row.id, events=source("delete"))
    *_, last, deleted = await store.outbox_after(idp, 0, 10)
    assert last == put3 and deleted.kind == "delete" and deleted.data is None
    assert await store.outbox_event(put3.seq) == put3


async def test_concurrent_creates_each_make_their_event_and_a_refused_one_none(store: Store, idp: str) -> None:
    await store.add_subscription(subscription(idp))
    names = [f"c{n}@example.com" for n in range(40)] + ["c0@example.com"]  # the last is taken
    outcomes = await asyncio.gather(
        *(store.create("User", idp, user_doc(name), events=source()) for name in names), return_exceptions=True
    )
    made = [o for o in outcomes if isinstance(o, Row)]
    assert len(made) == 40 and sum(isinstance(o, ScimError) and o.status == 409 for o in outcomes) == 1
    events = await store.outbox_after(idp, 0, 100)
    assert sorted(e.resource_id for e in events) == sorted(row.id for row in made)
    assert all(
        e.kind == "create" and e.data == {"doc": r.doc, "created": r.created}
        for e, r in zip(sorted(events, key=lambda e: e.resource_id), sorted(made, key=lambda r: r.id), strict=True)
    )


async def test_a_failed_write_leaves_no_event(store: Store, idp: str) -> None:
    await store.add_subscription(subscription(idp))
    row = await store.create("User", idp, user_doc("bo@example.com"), events=source())

    def refuse(current: Row) -> Change:
        raise ScimError(412, "version mismatch")

    with pytest.raises(ScimError):
        await store.update("User", idp, row.id, refuse)
    with pytest.raises(ScimError):
        await store.create("User", idp, user_doc("bo@example.com"), events=source())  # 409 uniqueness
    assert len(await store.outbox_after(idp, 0, 100)) == 1


async def test_subscriptions_cursor_lease_and_progress(store: Store, idp: str, other_idp: str) -> None:
    with pytest.raises(AdminError) as unknown:
        await store.add_subscription(subscription("no-such-idp"))
    assert unknown.value.status == 404
    await store.create("User", idp, user_doc("cy@example.com"), events=source())
    late = await store.add_subscription(subscription(idp))
    assert late.cursor == (await store.outbox_after(idp, 0, 10))[0].seq  # only what is committed after
    other = await store.add_subscription(subscription(other_idp, "sub-2"))
    assert [s.id for s in await store.subscriptions()] == ["sub-1", "sub-2"]
    assert await store.claim_subscription("sub-1", "a", "2999-01-01T00:00:00.000Z", now())
    assert not await store.claim_subscription("sub-1", "b", "2999-01-01T00:00:00.000Z", now())
    assert await store.claim_subscription("sub-1", "b", "2999-01-01T00:00:00.000Z", "2999-06-01T00:00:00.000Z")
    second = await store.create("User", idp, user_doc("di@example.com"), events=source())
    seq = (await store.outbox_after(idp, late.cursor, 10))[0].seq
    assert await store.pending_count(late) == 1
    attempts = (
        DeliveryAttempt("sub-1", seq, now(), "retry", 500, "the receiver answered 500", 3.5),
        DeliveryAttempt("sub-1", seq, now(), "delivered", 202, None, 1.0),
    )
    await store.record_delivery(DeliveryProgress("sub-1", seq, 1, 0, attempts, last_delivered_at=now()))
    done = await store.subscription("sub-1")
    assert done is not None and done.cursor == seq and done.delivered == 1
    assert [a.outcome for a in await store.delivery_attempts("sub-1", seq)] == ["delivered", "retry"]
    assert len(await store.delivery_attempts("sub-1")) == 2
    await store.record_delivery(DeliveryProgress("sub-1", 0, 0, 1, (), state="failed", last_error="no"))
    failed = await store.subscription("sub-1")
    assert failed is not None and failed.cursor == seq and failed.state == "failed" and failed.last_error == "no"
    assert await store.set_subscription_state("sub-1", "active", seq - 1)
    assert (await stored(store, "sub-1")).cursor == seq - 1
    assert not await store.set_subscription_state("nope", "paused")
    await store.record_delivery(DeliveryProgress("sub-1", seq, 0, 0, (DeliveryAttempt("sub-1", seq, now(), "acked"),)))
    assert await store.acked_after("sub-1", seq - 1) == {seq}
    stats = await store.outbox_stats()
    assert stats["events"] == 2 and stats["newest"] >= seq and stats["pending"] == 0
    assert second.id
    assert await store.delete_subscription(other.id) and not await store.delete_subscription(other.id)


async def test_the_outbox_bounds_drop_the_oldest_and_count_them(store: Store, idp: str, other_idp: str) -> None:
    await store.create("User", other_idp, user_doc("x@example.com"), events=source())  # an IdP without subscriptions
    await store.add_subscription(subscription(idp))
    for n in range(5):
        await store.create("User", idp, user_doc(f"u{n}@example.com"), events=source())
    assert await store.prune_outbox(0, None) == 1
    assert await store.prune_outbox(3, None) == 2
    kept = await store.outbox_after(idp, 0, 10)
    pruned = await store.subscription("sub-1")
    assert len(kept) == 3 and pruned is not None and pruned.dropped == 2 and pruned.cursor == kept[0].seq - 1
    # All older than 2100: all go but the newest, which always stays (a seq is never handed out again).
    assert await store.prune_outbox(0, format_timestamp(4102444800)) == 2
    assert (await stored(store, "sub-1")).dropped == 4
    assert [e.seq for e in await store.outbox_after(idp, 0, 10)] == [kept[-1].seq]
    assert await store.prune_outbox(10, None) == 0
    await store.delete_subscription("sub-1")
    assert await store.prune_outbox(0, None) == 0  # the newest stays even without a subscription
    await store.create("User", idp, user_doc("new@example.com"), events=source())
    assert (await store.outbox_after(idp, kept[-1].seq, 10))[0].seq > kept[-1].seq


async def test_deleting_an_idp_deletes_its_subscriptions(store: Store, idp: str, other_idp: str) -> None:
    await store.add_subscription(subscription(idp))
    await store.add_subscription(subscription(other_idp, "sub-2"))
    await store.record_delivery(DeliveryProgress("sub-1", 0, 0, 0, (DeliveryAttempt("sub-1", 1, now(), "retry"),)))
    await store.delete_idp(idp)
    assert [s.id for s in await store.subscriptions()] == ["sub-2"]
    assert await store.subscription("sub-1") is None
    await store.prune_outbox(0, None)
    assert await store.delivery_attempts("sub-1") == []


async def test_a_subscription_tells_the_sign_in_that_its_idp_has_events(store: Store) -> None:
    key, secret = await store.create_api_key("k", "", True, True)
    idp = await store.create_idp("with events", "", key.id)
    principal = store.authenticate(idp.id, secret)
    assert principal is not None and not principal.events
    await store.add_subscription(replace(subscription(idp.id), id="s"))
    principal = store.authenticate(idp.id, secret)
    assert principal is not None and principal.events
    await store.delete_subscription("s")
    principal = store.authenticate(idp.id, secret)
    assert principal is not None and not principal.events
