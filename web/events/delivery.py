"""Push delivery (RFC 8935): each active push subscription's events, in seq order, one SET per
POST, off the request path.

One task per process wakes when a SCIM write made events (and every second, for writes of other
instances), and starts a delivery round for every active push subscription that is not waiting to
retry. A round holds the subscription's lease (EventStore.claim_subscription), so one process
delivers a subscription at a time; it sends the events after the cursor one by one and stores the
progress (cursor, counters, attempts) in one write every DELIVERED_PER_WRITE events.

A receiver's answer: 2xx (202 per RFC 8935) delivered; 400 rejected, its RFC 8935 error code and
description recorded, never retried; anything else, no answer, or no answer within
events.delivery_timeout, the round stops and the event is tried again after an exponential,
jittered back-off of up to events.retry_max_delay; once the event has failed for
events.retry_limit seconds the subscription is failed (its events wait for an admin to redeliver).
At least once: a crash between a receiver's 202 and the stored progress sends those SETs again,
with the same `jti`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import httpx
import orjson

from scim.events import set_claims, wanted
from scim.resources import etag, to_resource
from scim.tenant import Tenant
from settings import Settings
from storage import AdminError, DeliveryAttempt, DeliveryProgress, OutboxEvent, SchemaConfig, Store, Subscription
from storage.common import format_timestamp, new_resource_id, now, timestamp_seconds
from web.events.keys import Sealer, SealError, SigningKeys, sign

log = logging.getLogger("scimlet.events")

READ_BATCH = 200
TENANT_SECONDS = 10.0
LIST_SECONDS = 1.0
DELIVERED_PER_WRITE = 50
# A round holds its lease this long, renewed while it delivers: after a crash, another process (or
# the one started again) takes the subscription over within this time.
LEASE_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.5
CONTENT_TYPE = "application/secevent+jwt"  # RFC 8935 §2


@dataclass
class RoundProgress:
    """What a delivery round has done since it last stored its progress."""

    subscription_id: str
    cursor: int
    delivered: int = 0
    rejected: int = 0
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    last_delivered: str | None = None
    last_error: str | None = None

    def handed(self, seq: int, attempt: DeliveryAttempt) -> None:
        """The event was delivered or refused: the cursor moves past it."""
        self.cursor = seq
        self.attempts.append(attempt)
        if attempt.outcome == "delivered":
            self.delivered += 1
            self.last_delivered = attempt.time
        else:
            self.rejected += 1
            self.last_error = attempt.error

    def progress(self, *, state: str | None = None, retry_since: str | None = None) -> DeliveryProgress:
        return DeliveryProgress(
            self.subscription_id,
            self.cursor,
            self.delivered,
            self.rejected,
            tuple(self.attempts),
            state=state,
            last_error=self.last_error,
            retry_since=retry_since,
            last_delivered_at=self.last_delivered,
        )


@dataclass
class Backoff:
    failures: int = 0
    not_before: float = 0.0  # time.monotonic() of the next attempt


def jti_of(subscription_id: str, seq: int) -> str:
    """A SET's jti: the same for every delivery of one event to one subscription (receivers
    deduplicate by it), unique across subscriptions."""
    return f"{subscription_id}.{seq}"


def seq_of_jti(subscription_id: str, jti: object) -> int | None:
    if not isinstance(jti, str):
        return None
    prefix, _, seq = jti.rpartition(".")
    return int(seq) if prefix == subscription_id and seq.isdigit() else None


def epoch_of(stamp: str) -> int:
    return int(timestamp_seconds(stamp))


class SetMaker:
    """The signed SET of an outbox event for a subscription."""

    def __init__(self, store: Store, settings: Settings, sealer: Sealer, keys: SigningKeys) -> None:
        self.store = store
        self.settings = settings
        self.sealer = sealer
        self.keys = keys
        self._secrets: dict[str, str] = {}
        self._tenants: dict[str, tuple[float, Tenant]] = {}

    async def tenant(self, idp_id: str) -> Tenant:
        """The IdP's resource types (its schema profile and extensions), read at most every
        TENANT_SECONDS: a full-form event is rendered as its IdP's SCIM answers render it."""
        cached = self._tenants.get(idp_id)
        if cached is None or time.monotonic() - cached[0] > TENANT_SECONDS:
            try:
                schema = (await self.store.get_idp(idp_id)).schema
            except AdminError:  # the IdP was deleted: its events render with the default types
                schema = SchemaConfig()
            cached = self._tenants[idp_id] = (time.monotonic(), schema.tenant)
        return cached[1]

    def forget(self, known: set[str]) -> None:
        """Drop the opened secrets of subscriptions that are gone."""
        for gone in self._secrets.keys() - known:
            del self._secrets[gone]

    def secret(self, subscription: Subscription) -> str:
        if subscription.id not in self._secrets:
            self._secrets[subscription.id] = self.sealer.open(subscription.secret)
        return self._secrets[subscription.id]

    async def claims(self, subscription: Subscription, event: OutboxEvent) -> dict:
        data = event.data
        if event.kind in ("create", "put") and data is not None:
            rtype = (await self.tenant(event.idp_id)).type_named(event.rtype)
            data = to_resource(
                rtype,
                event.resource_id,
                data["doc"],
                version=event.version or 1,
                created=data.get("created", event.time),
                modified=event.time,
                base_url=self.settings.tenant_url(event.idp_id),
                members=data.get("members"),
            )
        return set_claims(
            issuer=self.settings.tenant_url(event.idp_id),
            audience=subscription.audience,
            jti=jti_of(subscription.id, event.seq),
            issued=epoch_of(event.time),
            txn=event.txn,
            rtype=event.rtype,
            resource_id=event.resource_id,
            external_id=event.external_id,
            kind=event.kind,
            form=subscription.form,
            attributes=event.attributes,
            data=data,
            version=etag(event.version) if event.version is not None else None,
        )

    async def token(self, subscription: Subscription, event: OutboxEvent) -> str:
        claims = await self.claims(subscription, event)
        return await sign(claims, subscription.alg, self.secret(subscription), self.keys)


def is_wanted(subscription: Subscription, event: OutboxEvent) -> bool:
    return wanted(subscription.events, event.kind, event.rtype, event.attributes)


class EventDelivery:
    """The push delivery task of this process (see the module)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sets: SetMaker,
        observe: Callable[[str, float], None] = lambda outcome, latency: None,
    ) -> None:
        self.store = store
        self.settings = settings.events
        self.sets = sets
        self.observe = observe  # (outcome, seconds from commit to answer) of each attempt: /metrics
        self.owner = new_resource_id()
        self._wake = asyncio.Event()
        self._rounds: dict[str, asyncio.Task] = {}
        self._backoff: dict[str, Backoff] = {}
        self._leases: dict[str, float] = {}
        self._subscriptions: list[Subscription] = []
        self._listed_at = -1e9
        self.client = httpx.AsyncClient(timeout=settings.events.delivery_timeout, follow_redirects=False)

    def wake(self) -> None:
        self._wake.set()

    def refresh(self) -> None:
        """A subscription was made or changed in this process: read them again now."""
        self._listed_at = -1e9
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    await self._start_rounds()
                except Exception:
                    log.exception("event delivery could not read its subscriptions; it will try again")
                await asyncio.sleep(0.02)  # writes that come together are delivered together
        finally:
            for task in self._rounds.values():
                task.cancel()
            await self.client.aclose()

    async def _start_rounds(self) -> None:
        """Start a round for each active push subscription that is due. The list is read at most
        every LIST_SECONDS (a wake per SCIM write must not cost a read each); each round reads
        its subscription again, so it starts from the current cursor."""
        moment = time.monotonic()
        if moment - self._listed_at >= LIST_SECONDS:
            self._subscriptions = await self.store.subscriptions()
            self._listed_at = moment
            known = {subscription.id for subscription in self._subscriptions}
            for kept in (self._rounds, self._backoff, self._leases):
                for gone in kept.keys() - known:  # deleted: nothing of it stays in memory
                    del kept[gone]
            self.sets.forget(known)
        for subscription in self._subscriptions:
            if subscription.delivery != "push" or subscription.state != "active":
                self._backoff.pop(subscription.id, None)
                continue
            running = self._rounds.get(subscription.id)
            if running is not None and not running.done():
                continue
            backoff = self._backoff.get(subscription.id)
            if backoff is not None and backoff.not_before > moment:
                continue
            self._rounds[subscription.id] = asyncio.create_task(self._guarded(self._round(subscription)))

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("an event delivery round failed; it will be tried again")

    async def _claim(self, subscription: Subscription) -> bool:
        moment = time.time()
        if self._leases.get(subscription.id, 0) - moment > LEASE_SECONDS / 2:
            return True
        until = moment + LEASE_SECONDS
        if not await self.store.claim_subscription(subscription.id, self.owner, format_timestamp(until), now()):
            return False
        self._leases[subscription.id] = until
        return True

    async def _round(self, listed: Subscription) -> None:
        if not await self._claim(listed):
            # Another instance delivers it: look again when its lease could have run out, not at
            # every wake (each look is a write).
            self._backoff[listed.id] = Backoff(not_before=time.monotonic() + LEASE_SECONDS / 2)
            return
        subscription = await self.store.subscription(listed.id)
        if subscription is None or subscription.state != "active":
            self._listed_at = -1e9  # deleted, paused or failed meanwhile
            return
        events = await self.store.outbox_after(subscription.idp_id, subscription.cursor, READ_BATCH)
        done = RoundProgress(subscription.id, subscription.cursor)
        for event in events:
            if not is_wanted(subscription, event):
                done.cursor = event.seq
                continue
            attempt = await self._send(subscription, event)
            if attempt.outcome == "retry":
                done.attempts.append(attempt)
                await self._retry(subscription, done)
                return
            done.handed(event.seq, attempt)
            if len(done.attempts) >= DELIVERED_PER_WRITE:
                await self.store.record_delivery(done.progress())
                done = RoundProgress(subscription.id, done.cursor)
        self._backoff.pop(subscription.id, None)
        if done.cursor != subscription.cursor or done.attempts or subscription.retry_since is not None:
            await self.store.record_delivery(done.progress())
        if len(events) == READ_BATCH:
            self.wake()  # more after these

    async def _retry(self, subscription: Subscription, done: RoundProgress) -> None:
        """The round's last attempt asks for a retry: store what the round did, and wait, or fail
        the subscription when the event has failed for events.retry_limit seconds."""
        failed = done.attempts[-1]
        # The event that failed before (the cursor has not moved): its retry clock keeps running.
        since = failed.time
        if done.cursor == subscription.cursor and subscription.retry_since is not None:
            since = subscription.retry_since
        state = None
        if epoch_of(failed.time) - epoch_of(since) >= self.settings.retry_limit:
            done.attempts[-1] = replace(failed, outcome="failed")
            state = "failed"
            log.warning("event subscription %s failed: %s", subscription.id, failed.error)
        backoff = self._backoff.setdefault(subscription.id, Backoff())
        delay = min(self.settings.retry_max_delay, FIRST_RETRY_SECONDS * 2**backoff.failures)
        backoff.failures += 1
        backoff.not_before = time.monotonic() + delay * random.uniform(0.5, 1.0)
        done.last_error = failed.error
        await self.store.record_delivery(done.progress(state=state, retry_since=since))

    async def _send(self, subscription: Subscription, event: OutboxEvent) -> DeliveryAttempt:
        try:
            token = await self.sets.token(subscription, event)
        except (SealError, AdminError) as exc:  # no key to sign with: retried, and failed past the limit
            return DeliveryAttempt(subscription.id, event.seq, now(), "retry", None, str(exc))
        started = time.perf_counter()
        status = None
        try:
            response = await self.client.post(
                subscription.url, content=token, headers={"Content-Type": CONTENT_TYPE, "Accept": "application/json"}
            )
            status = response.status_code
            if 200 <= status < 300:
                outcome, error = "delivered", None
            elif status == 400:
                outcome, error = "rejected", rejection(response.content)
            else:
                outcome, error = "retry", f"the receiver answered {status}"
        except httpx.TimeoutException:
            outcome, error = "retry", f"no answer within {self.settings.delivery_timeout} s"
        except httpx.HTTPError as exc:
            outcome, error = "retry", f"cannot reach the receiver: {exc or type(exc).__name__}"
        elapsed = time.perf_counter() - started
        self.observe(outcome, time.time() - epoch_of(event.time))
        return DeliveryAttempt(subscription.id, event.seq, now(), outcome, status, error, round(elapsed * 1000, 2))


def rejection(body: bytes) -> str:
    """An RFC 8935 §2.3 error answer in words: "err: description"."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the receiver answered 400 without an RFC 8935 error"
    if not isinstance(answer, dict) or not isinstance(answer.get("err"), str):
        return "the receiver answered 400 without an RFC 8935 error"
    description = answer.get("description")
    return f"{answer['err']}: {description}" if isinstance(description, str) else answer["err"]
