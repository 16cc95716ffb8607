"""Event subscriptions as the console, the admin API and the CLI manage them: one implementation."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from scim.events import FORMS, SELECTABLE
from settings import Settings
from storage import AdminError, DeliveryAttempt, OutboxEvent, Store, Subscription
from storage.common import new_api_secret, new_resource_id, now
from web.events.delivery import SetMaker, jti_of
from web.events.keys import ALGORITHMS, Sealer, SigningKeys

DELIVERIES = ("push", "poll")


class Subscriptions:
    def __init__(self, store: Store, settings: Settings, sealer: Sealer, keys: SigningKeys) -> None:
        self.store = store
        self.settings = settings
        self.sealer = sealer
        self.keys = keys
        self.sets = SetMaker(store, settings, sealer, keys)
        # Told of every change made here: this process's delivery task reads the subscriptions at
        # once instead of within a second (app.py sets it to EventDelivery.refresh).
        self.changed: Callable[[], None] = lambda: None

    async def subscribe(
        self,
        idp_id: str,
        *,
        url: str = "",
        events: list[str] | None = None,
        form: str = "full",
        audience: str = "",
        alg: str = "HS256",
        delivery: str = "push",
    ) -> tuple[Subscription, str]:
        """A new subscription and its secret (shown only now). Raises AdminError 400 saying what to
        fix, 404 for an unknown IdP."""
        if delivery not in DELIVERIES:
            raise AdminError(f"delivery must be push or poll, not {delivery!r}")
        url = url.strip()
        if delivery == "push":
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise AdminError(f"url must be the receiver's http or https URL, not {url!r}")
        elif url:
            raise AdminError("a poll subscription has no url: its receiver fetches the events")
        chosen = list(dict.fromkeys(events)) if events else list(SELECTABLE)
        unknown = [name for name in chosen if name not in SELECTABLE]
        if unknown:
            raise AdminError(f"unknown event {unknown[0]!r}; choose from {', '.join(SELECTABLE)}")
        if form not in FORMS:
            raise AdminError(f"form must be full or notice, not {form!r}")
        if alg not in ALGORITHMS:
            raise AdminError(f"alg must be one of {', '.join(ALGORITHMS)}, not {alg!r}")
        await self.store.get_idp(idp_id)  # 404 for an unknown IdP
        secret = new_api_secret()
        subscription = Subscription(
            id=new_resource_id(),
            idp_id=idp_id,
            delivery=delivery,
            url=url,
            events=chosen,
            form=form,
            audience=audience.strip() or url or self.settings.tenant_url(idp_id),
            alg=alg,
            secret=self.sealer.seal(secret),
            state="active",
            cursor=0,
            created=now(),
        )
        if alg != "HS256":
            await self.keys.signing(alg)  # the key exists before the first SET, and in the JWKS
        stored = await self.store.add_subscription(subscription)
        self.changed()
        return stored, secret

    async def get(self, subscription_id: str) -> Subscription:
        subscription = await self.store.subscription(subscription_id)
        if subscription is None:
            raise unknown(subscription_id)
        return subscription

    async def of_idp(self, idp_id: str | None = None) -> list[Subscription]:
        if idp_id is not None:
            await self.store.get_idp(idp_id)
        return await self.store.subscriptions(idp_id)

    async def pause(self, subscription_id: str) -> Subscription:
        return await self._set_state(subscription_id, "paused")

    async def resume(self, subscription_id: str) -> Subscription:
        return await self._set_state(subscription_id, "active")

    async def redeliver(self, subscription_id: str, from_seq: int | None = None) -> Subscription:
        """Deliver again from the event `from_seq` (None: from the first not done with), and
        make a failed or paused subscription active."""
        if from_seq is not None and from_seq < 1:
            raise AdminError("from must be an event's number (1 or more)")
        return await self._set_state(subscription_id, "active", from_seq - 1 if from_seq is not None else None)

    async def _set_state(self, subscription_id: str, state: str, cursor: int | None = None) -> Subscription:
        if not await self.store.set_subscription_state(subscription_id, state, cursor):
            raise unknown(subscription_id)
        self.changed()
        return await self.get(subscription_id)

    async def delete(self, subscription_id: str) -> None:
        if not await self.store.delete_subscription(subscription_id):
            raise unknown(subscription_id)
        self.changed()

    async def json(self, subscription: Subscription) -> dict:
        """The subscription as the API and the CLI show it (never its secret)."""
        pending = await self.store.pending_count(subscription)
        body = {
            "id": subscription.id,
            "idp": subscription.idp_id,
            "delivery": subscription.delivery,
            "url": subscription.url,
            "events": subscription.events,
            "form": subscription.form,
            "audience": subscription.audience,
            "alg": subscription.alg,
            "state": subscription.state,
            "created": subscription.created,
            "cursor": subscription.cursor,
            "delivered": subscription.delivered,
            "rejected": subscription.rejected,
            "pending": pending,
            "dropped": subscription.dropped,
            "last_error": subscription.last_error,
            "last_error_at": subscription.last_error_at,
            "last_delivered_at": subscription.last_delivered_at,
            "retrying_since": subscription.retry_since,
        }
        if subscription.delivery == "poll":
            body["poll_url"] = f"{self.settings.base_url}/v1/events/{subscription.id}/poll"
        return body

    async def events(self, subscription: Subscription, limit: int = 50) -> list[dict]:
        """The latest events of the subscription's IdP around its cursor (the oldest not done
        with first, then the newest done with), each with its SET's claims and its attempts."""
        after = max(0, subscription.cursor - limit)
        events = await self.store.outbox_after(subscription.idp_id, after, limit * 2)
        return [await self.event_json(subscription, event) for event in events[-limit:]]

    async def event_json(self, subscription: Subscription, event: OutboxEvent) -> dict:
        attempts = await self.store.delivery_attempts(subscription.id, event.seq, 20)
        return {
            "seq": event.seq,
            "jti": jti_of(subscription.id, event.seq),
            "time": event.time,
            "kind": event.kind,
            "resource": f"/{event.rtype}s/{event.resource_id}",
            "done": event.seq <= subscription.cursor,
            "set": await self.sets.claims(subscription, event),
            "attempts": [attempt_json(a) for a in attempts],
        }


def unknown(subscription_id: str) -> AdminError:
    return AdminError(f"No event subscription has the id {subscription_id}", 404)


def attempt_json(attempt: DeliveryAttempt) -> dict:
    return {
        "time": attempt.time,
        "outcome": attempt.outcome,
        "status": attempt.status,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    }
