"""Event subscriptions, outbox events and attempts as rows, alike on every backend: the columns
each table is read with and the record each row makes."""

from __future__ import annotations

from dataclasses import fields

import orjson

from storage.records import DeliveryAttempt, OutboxEvent, Subscription

# Every column of Subscription, in its field order; the events list is the one stored as JSON text.
SUBSCRIPTION_FIELDS = [f.name for f in fields(Subscription)]
SUBSCRIPTION_COLUMNS = ", ".join(SUBSCRIPTION_FIELDS)
EVENTS_INDEX = SUBSCRIPTION_FIELDS.index("events")
ATTEMPT_COLUMNS = "subscription_id, seq, time, outcome, status, error, duration_ms"


def subscription_values(subscription: Subscription) -> tuple:
    values = [getattr(subscription, name) for name in SUBSCRIPTION_FIELDS]
    values[EVENTS_INDEX] = orjson.dumps(subscription.events).decode()
    return tuple(values)


def subscription_of(row: tuple) -> Subscription:
    values = list(row)
    values[EVENTS_INDEX] = orjson.loads(values[EVENTS_INDEX])
    return Subscription(*values)


def outbox_event_of(row: tuple) -> OutboxEvent:
    seq, idp_id, txn, time, rtype, resource_id, external_id, kind, version, attributes, data = row
    return OutboxEvent(
        seq,
        idp_id,
        txn,
        time,
        rtype,
        resource_id,
        external_id,
        kind,
        version,
        orjson.loads(attributes),
        None if data is None else orjson.loads(data),
    )


def attempt_values(attempt: DeliveryAttempt) -> tuple:
    return (
        attempt.subscription_id,
        attempt.seq,
        attempt.time,
        attempt.outcome,
        attempt.status,
        attempt.error,
        attempt.duration_ms,
    )


def attempt_of(row: tuple) -> DeliveryAttempt:
    return DeliveryAttempt(*row)
