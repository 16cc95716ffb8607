"""Event subscriptions, outbox events and attempts as rows, alike on every backend: the columns
each table is read with and the record each row makes."""

from __future__ import annotations

from dataclasses import fields

import orjson

from storage.records import DeliveryAttempt, OutboxEvent, Subscription

# Every column of Subscription, in its field order (the events list stored as JSON text).
SUBSCRIPTION_COLUMNS = ", ".join(f.name for f in fields(Subscription))
ATTEMPT_COLUMNS = "subscription_id, seq, time, outcome, status, error, duration_ms"


def subscription_values(subscription: Subscription) -> tuple:
    values = [getattr(subscription, f.name) for f in fields(Subscription)]
    values[[f.name for f in fields(Subscription)].index("events")] = orjson.dumps(subscription.events).decode()
    return tuple(values)


def subscription_of(row: tuple) -> Subscription:
    values = list(row)
    index = [f.name for f in fields(Subscription)].index("events")
    values[index] = orjson.loads(values[index])
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
