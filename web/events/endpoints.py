"""The events' HTTP endpoints: the JWKS that verifies RS256/ES256 SETs, and poll delivery (RFC 8936).

Poll: a receiver POSTs to /v1/events/<subscription id>/poll with `Authorization: Bearer <the
subscription's secret>` and a JSON body: `ack` (the jti of SETs it has processed), `setErrs`
(jti -> {"err", "description"} of SETs it refused), `maxEvents` (at most this many SETs back; 0:
only acknowledge) and `returnImmediately` (false: wait up to POLL_WAIT_SECONDS for one). The
answer is {"sets": {jti: SET}, "moreAvailable": bool}. A SET is sent again in every answer until
it is acknowledged or refused; never after.
"""

from __future__ import annotations

import asyncio
import hmac

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage import AdminError, DeliveryAttempt, DeliveryProgress, OutboxEvent, Store, Subscription
from storage.common import now
from web.events.delivery import SetMaker, is_wanted, jti_of, seq_of_jti
from web.events.keys import SealError, SigningKeys

POLL_WAIT_SECONDS = 10.0
POLL_MAX_EVENTS = 1000
DEFAULT_MAX_EVENTS = 100
POLL_PAGE = 500  # outbox events read at a time
MAX_POLL_BODY = 1_048_576
DRAIN_BYTES = 4 * MAX_POLL_BODY


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(err: str, description: str, status: int = 400) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="scimlet-events"'} if status == 401 else None
    return _json({"err": err, "description": description}, status, headers)


class EventEndpoints:
    def __init__(self, store: Store, sets: SetMaker, keys: SigningKeys) -> None:
        self.store = store
        self.sets = sets
        self.keys = keys
        self._new_events = asyncio.Event()

    def wake(self) -> None:
        """A write made events: waiting polls look again."""
        self._new_events.set()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/events/jwks.json", self.jwks, methods=["GET"]),
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/v1/events/{subscription}/poll", self.poll, methods=["POST"]),
        ]

    async def jwks(self, request: Request) -> Response:
        return _json(await self.keys.jwks(), headers={"Cache-Control": "max-age=300"})

    async def poll(self, request: Request) -> Response:
        subscription = await self.store.subscription(request.path_params["subscription"])
        given = request.headers.get("authorization", "")
        if subscription is None or subscription.delivery != "poll":
            return _error("not_found", "No poll subscription at this URL", 404)
        try:
            secret = self.sets.secret(subscription)
        except (SealError, AdminError) as exc:
            return _error("unavailable", str(exc), 503)
        if not given.lower().startswith("bearer ") or not hmac.compare_digest(
            given[7:].strip().encode(), secret.encode()
        ):
            return _error("authentication_failed", "Send Authorization: Bearer <the subscription's secret>", 401)
        raw = await capped_body(request, MAX_POLL_BODY)
        if raw is None:
            return _error("invalid_request", f"A poll request may be at most {MAX_POLL_BODY} bytes", 413)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            return _error("invalid_request", f"The body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error("invalid_request", "Send a JSON object: {ack, setErrs, maxEvents, returnImmediately}")
        problem = _check_poll(body)
        if problem:
            return _error("invalid_request", problem)
        subscription = await self._acknowledge(subscription, body.get("ack", []), body.get("setErrs", {}))
        limit = body.get("maxEvents", DEFAULT_MAX_EVENTS)
        if limit == 0 or subscription.state == "paused":
            return _json({"sets": {}, "moreAvailable": False})
        sets, more = await self._outstanding(subscription, limit)
        if not sets and body.get("returnImmediately") is False:
            waited = 0.0
            while not sets and waited < POLL_WAIT_SECONDS:
                self._new_events.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._new_events.wait()
                except TimeoutError:
                    pass
                waited += 1.0
                sets, more = await self._outstanding(subscription, limit)
        return _json(
            {
                "sets": {jti_of(subscription.id, e.seq): await self.sets.token(subscription, e) for e in sets},
                "moreAvailable": more,
            }
        )

    async def _acknowledge(self, subscription: Subscription, acks: list, errors: dict) -> Subscription:
        """Record the acknowledgements and refusals of events still outstanding (an ack sent again,
        as RFC 8936 lets a receiver do when unsure, counts once; a jti of no such event is
        ignored), and move the cursor past every event done with at its head."""
        stamp = now()
        done = await self.store.acked_after(subscription.id, subscription.cursor)
        refused = {}
        for jti, error in errors.items():
            seq = seq_of_jti(subscription.id, jti)
            if seq is not None:
                refused[seq] = f"{error.get('err')}: {error.get('description', '')}".rstrip(": ")
        named = {seq_of_jti(subscription.id, jti) for jti in acks} | refused.keys()
        claimed = {seq for seq in named if seq is not None and seq > subscription.cursor and seq not in done}
        highest = max(claimed, default=0)
        attempts: list[DeliveryAttempt] = []
        cursor, at_head, after = subscription.cursor, True, subscription.cursor
        while True:
            events = await self.store.outbox_after(subscription.idp_id, after, POLL_PAGE)
            for event in events:
                if event.seq in claimed:
                    outcome = "rejected" if event.seq in refused else "acked"
                    attempts.append(
                        DeliveryAttempt(subscription.id, event.seq, stamp, outcome, error=refused.get(event.seq))
                    )
                    done.add(event.seq)
                at_head = at_head and (event.seq in done or not is_wanted(subscription, event))
                if at_head:
                    cursor = event.seq
            if len(events) < POLL_PAGE or not (at_head or highest > events[-1].seq):
                break
            after = events[-1].seq
        if attempts or cursor != subscription.cursor:
            delivered = sum(1 for a in attempts if a.outcome == "acked")
            await self.store.record_delivery(
                DeliveryProgress(
                    subscription.id,
                    cursor,
                    delivered,
                    len(attempts) - delivered,
                    tuple(attempts),
                    last_delivered_at=stamp if delivered else None,
                    last_error=next((a.error for a in attempts if a.outcome == "rejected"), None),
                )
            )
            subscription = await self.store.subscription(subscription.id) or subscription
        return subscription

    async def _outstanding(self, subscription: Subscription, limit: int) -> tuple[list[OutboxEvent], bool]:
        """Up to `limit` wanted events after the cursor not acknowledged or refused, and whether more wait."""
        done = await self.store.acked_after(subscription.id, subscription.cursor)
        found: list[OutboxEvent] = []
        after = subscription.cursor
        while True:
            events = await self.store.outbox_after(subscription.idp_id, after, POLL_PAGE)
            for event in events:
                if event.seq not in done and is_wanted(subscription, event):
                    if len(found) == limit:
                        return found, True
                    found.append(event)
            if len(events) < POLL_PAGE:
                return found, False
            after = events[-1].seq


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit`: never held past it. A body over the limit
    is read on and dropped up to DRAIN_BYTES, so that the client, still sending, reads the 413
    instead of a closed connection."""
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            parts.append(part)
    return b"".join(parts) if size <= limit else None


def _check_poll(body: dict) -> str | None:
    unknown = sorted(set(body) - {"ack", "setErrs", "maxEvents", "returnImmediately"})
    if unknown:
        return f"Unknown member {unknown[0]!r}; send ack, setErrs, maxEvents, returnImmediately"
    if not isinstance(body.get("ack", []), list) or not all(isinstance(j, str) for j in body.get("ack", [])):
        return "ack must be an array of jti strings"
    errors = body.get("setErrs", {})
    if not isinstance(errors, dict) or not all(isinstance(e, dict) for e in errors.values()):
        return "setErrs must be an object of jti -> {err, description}"
    limit = body.get("maxEvents", DEFAULT_MAX_EVENTS)
    if type(limit) is not int or not 0 <= limit <= POLL_MAX_EVENTS:
        return f"maxEvents must be a whole number from 0 to {POLL_MAX_EVENTS}"
    if not isinstance(body.get("returnImmediately", True), bool):
        return "returnImmediately must be true or false"
    return None
