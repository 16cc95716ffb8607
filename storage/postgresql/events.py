"""Event subscriptions, the outbox and delivery attempts on PostgreSQL (EventStore), shared by
every instance: a subscription's delivery rounds go to whichever instance holds its lease."""

from __future__ import annotations

from dataclasses import replace

from storage import AdminError, DeliveryAttempt, DeliveryProgress, OutboxEvent, Subscription
from storage.events_rows import (
    ATTEMPT_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    attempt_of,
    attempt_values,
    outbox_event_of,
    subscription_of,
    subscription_values,
)
from storage.postgresql.auth import KeysAndIdps
from storage.postgresql.engine import Connection, status_count

MARKS = ", ".join(f"${n}" for n in range(1, len(SUBSCRIPTION_COLUMNS.split(", ")) + 1))
# The outbox as read: a user's create or put event without data reads the user's row (storage/outbox.py).
OUTBOX_READ = (
    "SELECT e.seq, e.idp_id, e.txn, e.time, e.rtype, e.resource_id, e.external_id, e.kind, e.version, "
    "e.attributes, coalesce(e.data, CASE WHEN e.kind IN ('create', 'put') AND u.id IS NOT NULL "
    "THEN jsonb_build_object('doc', u.doc, 'created', u.created)::text END) "
    "FROM events AS e LEFT JOIN users AS u ON e.data IS NULL AND e.rtype = 'User' AND u.id = e.resource_id"
)


class EventData(KeysAndIdps):
    """EventStore on PostgreSQL."""

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        async def run(conn: Connection) -> Subscription:
            if await conn.fetchval("SELECT 1 FROM idps WHERE id = $1 FOR KEY SHARE", subscription.idp_id) is None:
                raise AdminError(f"No IdP has the IdP ID {subscription.idp_id}", 404)
            # Under the IdP's events lock (resources.write_events): no write of the IdP is between
            # its insert and its commit, so every event after this cursor is one committed later.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"scimlet-events:{subscription.idp_id}")
            newest = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
            stored = replace(subscription, cursor=newest)
            await conn.execute(
                f"INSERT INTO event_subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ({MARKS})",
                *subscription_values(stored),
            )
            return stored

        stored = await self.write(run)
        await self._reload_bindings()
        return stored

    async def subscriptions(self, idp_id: str | None = None) -> list[Subscription]:
        if idp_id is None:
            rows = await self.read(
                lambda conn: conn.fetch(f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions ORDER BY created, id")
            )
        else:
            rows = await self.read(
                lambda conn: conn.fetch(
                    f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE idp_id = $1 ORDER BY created, id",
                    idp_id,
                )
            )
        return [subscription_of(tuple(row)) for row in rows]

    async def subscription(self, subscription_id: str) -> Subscription | None:
        row = await self.read(
            lambda conn: conn.fetchrow(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE id = $1", subscription_id
            )
        )
        return subscription_of(tuple(row)) if row is not None else None

    async def set_subscription_state(self, subscription_id: str, state: str, cursor: int | None = None) -> bool:
        async def run(conn: Connection) -> bool:
            return (
                status_count(
                    await conn.execute(
                        "UPDATE event_subscriptions SET state = $1, cursor = coalesce($2, cursor), "
                        "retry_since = NULL WHERE id = $3",
                        state,
                        cursor,
                        subscription_id,
                    )
                )
                > 0
            )

        return await self.write(run)

    async def delete_subscription(self, subscription_id: str) -> bool:
        async def run(conn: Connection) -> bool:
            await conn.execute("DELETE FROM event_attempts WHERE subscription_id = $1", subscription_id)
            return (
                status_count(await conn.execute("DELETE FROM event_subscriptions WHERE id = $1", subscription_id)) > 0
            )

        deleted = await self.write(run)
        await self._reload_bindings()
        return deleted

    async def claim_subscription(self, subscription_id: str, owner: str, until: str, now: str) -> bool:
        async def run(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE event_subscriptions SET lease_owner = $1, lease_until = $2 WHERE id = $3 "
                "AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $4)",
                owner,
                until,
                subscription_id,
                now,
            )
            return status_count(status) > 0

        return await self.write(run)

    async def outbox_after(self, idp_id: str, after: int, limit: int) -> list[OutboxEvent]:
        rows = await self.read(
            lambda conn: conn.fetch(
                f"{OUTBOX_READ} WHERE e.idp_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
                idp_id,
                after,
                limit,
            )
        )
        return [outbox_event_of(tuple(row)) for row in rows]

    async def outbox_event(self, seq: int) -> OutboxEvent | None:
        row = await self.read(lambda conn: conn.fetchrow(f"{OUTBOX_READ} WHERE e.seq = $1", seq))
        return outbox_event_of(tuple(row)) if row is not None else None

    async def record_delivery(self, progress: DeliveryProgress) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "UPDATE event_subscriptions SET cursor = GREATEST(cursor, $1), delivered = delivered + $2, "
                "rejected = rejected + $3, state = coalesce($4, state), last_error = coalesce($5, last_error), "
                "last_error_at = CASE WHEN $5::text IS NULL THEN last_error_at ELSE $6 END, retry_since = $7, "
                "last_delivered_at = coalesce($8, last_delivered_at) WHERE id = $9",
                progress.cursor,
                progress.delivered,
                progress.rejected,
                progress.state,
                progress.last_error,
                progress.attempts[-1].time if progress.attempts else None,
                progress.retry_since,
                progress.last_delivered_at,
                progress.subscription_id,
            )
            if progress.attempts:
                await conn.executemany(
                    f"INSERT INTO event_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    [attempt_values(attempt) for attempt in progress.attempts],
                )

        await self.write(run)

    async def delivery_attempts(
        self, subscription_id: str, seq: int | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        rows = await self.read(
            lambda conn: conn.fetch(
                f"SELECT {ATTEMPT_COLUMNS} FROM event_attempts WHERE subscription_id = $1 "
                "AND ($2::bigint IS NULL OR seq = $2) ORDER BY id DESC LIMIT $3",
                subscription_id,
                seq,
                limit,
            )
        )
        return [attempt_of(tuple(row)) for row in rows]

    async def acked_after(self, subscription_id: str, after: int) -> set[int]:
        rows = await self.read(
            lambda conn: conn.fetch(
                "SELECT seq FROM event_attempts WHERE subscription_id = $1 AND seq > $2 "
                "AND outcome IN ('acked', 'rejected')",
                subscription_id,
                after,
            )
        )
        return {row[0] for row in rows}

    async def outbox_stats(self) -> dict[str, int]:
        async def run(conn: Connection) -> dict[str, int]:
            events = await conn.fetchval("SELECT count(*) FROM events")
            newest = await conn.fetchval("SELECT pg_sequence_last_value(pg_get_serial_sequence('events', 'seq'))")
            pending = await conn.fetchval(
                "SELECT coalesce(sum((SELECT count(*) FROM events AS e "
                "WHERE e.idp_id = s.idp_id AND e.seq > s.cursor)), 0) FROM event_subscriptions AS s"
            )
            return {"events": events, "newest": newest or 0, "pending": pending}

        return await self.read(run)

    async def pending_count(self, subscription: Subscription) -> int:
        return await self.read(
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM events WHERE idp_id = $1 AND seq > $2", subscription.idp_id, subscription.cursor
            )
        )

    async def prune_outbox(self, max_rows: int, older_than: str | None) -> int:
        async def run(conn: Connection) -> int:
            # The newest row always stays, as on SQLite (where seq is a rowid that must never come again).
            newest = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
            deleted = status_count(
                await conn.execute(
                    "DELETE FROM events WHERE idp_id NOT IN (SELECT idp_id FROM event_subscriptions) AND seq < $1",
                    newest,
                )
            )
            bounds = []
            if max_rows:
                bounds.append(
                    await conn.fetchval("SELECT seq FROM events ORDER BY seq DESC OFFSET $1 LIMIT 1", max_rows)
                )
            if older_than is not None:
                bounds.append(await conn.fetchval("SELECT max(seq) FROM events WHERE time < $1", older_than))
            bound = max((b for b in bounds if b is not None), default=None)
            if bound is not None:
                bound = min(bound, newest - 1)
                await conn.execute(
                    "UPDATE event_subscriptions AS s SET dropped = dropped + (SELECT count(*) FROM events AS e "
                    "WHERE e.idp_id = s.idp_id AND e.seq > s.cursor AND e.seq <= $1), cursor = GREATEST(cursor, $1)",
                    bound,
                )
                deleted += status_count(await conn.execute("DELETE FROM events WHERE seq <= $1", bound))
            await conn.execute(
                "DELETE FROM event_attempts WHERE seq < (SELECT coalesce(min(seq), 4611686018427387904) FROM events) "
                "OR subscription_id NOT IN (SELECT id FROM event_subscriptions)"
            )
            return deleted

        return await self.write(run)
