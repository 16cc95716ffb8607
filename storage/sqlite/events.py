"""Event subscriptions, the outbox and delivery attempts on SQLite (EventStore)."""

from __future__ import annotations

import sqlite3
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
from storage.sqlite.auth import KeysAndIdps
from storage.sqlite.engine import fetch

MARKS = ", ".join("?" * len(SUBSCRIPTION_COLUMNS.split(", ")))
# The outbox as read: a user's create or put event without data reads the user's row (storage/outbox.py).
OUTBOX_READ = (
    "SELECT e.seq, e.idp_id, e.txn, e.time, e.rtype, e.resource_id, e.external_id, e.kind, e.version, "
    "e.attributes, coalesce(e.data, CASE WHEN e.kind IN ('create', 'put') AND u.id IS NOT NULL "
    "THEN json_object('doc', json(u.doc), 'created', u.created) END) "
    "FROM events AS e LEFT JOIN users AS u ON e.data IS NULL AND e.rtype = 'User' AND u.id = e.resource_id"
)


class EventData(KeysAndIdps):
    """EventStore on SQLite."""

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        def run(conn: sqlite3.Connection) -> Subscription:
            if conn.execute("SELECT 1 FROM idps WHERE id = ?", (subscription.idp_id,)).fetchone() is None:
                raise AdminError(f"No IdP has the IdP ID {subscription.idp_id}", 404)
            newest = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            stored = replace(subscription, cursor=newest)
            conn.execute(
                f"INSERT INTO event_subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ({MARKS})",
                subscription_values(stored),
            )
            return stored

        stored = await self.write(run)
        self._auth_changed()
        return stored

    async def subscriptions(self, idp_id: str | None = None) -> list[Subscription]:
        if idp_id is None:
            rows = await self.read(
                fetch, f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions ORDER BY created, id", ()
            )
        else:
            rows = await self.read(
                fetch,
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE idp_id = ? ORDER BY created, id",
                (idp_id,),
            )
        return [subscription_of(row) for row in rows]

    async def subscription(self, subscription_id: str) -> Subscription | None:
        rows = await self.read(
            fetch, f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE id = ?", (subscription_id,)
        )
        return subscription_of(rows[0]) if rows else None

    async def set_subscription_state(self, subscription_id: str, state: str, cursor: int | None = None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE event_subscriptions SET state = ?, cursor = coalesce(?, cursor), retry_since = NULL "
                "WHERE id = ?",
                (state, cursor, subscription_id),
            ).rowcount
            return changed > 0

        return await self.write(run)

    async def delete_subscription(self, subscription_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM event_attempts WHERE subscription_id = ?", (subscription_id,))
            return conn.execute("DELETE FROM event_subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0

        deleted = await self.write(run)
        self._auth_changed()
        return deleted

    async def claim_subscription(self, subscription_id: str, owner: str, until: str, now: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE event_subscriptions SET lease_owner = ?, lease_until = ? WHERE id = ? "
                    "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)",
                    (owner, until, subscription_id, owner, now),
                ).rowcount
                > 0
            )

        return await self.write(run)

    async def outbox_after(self, idp_id: str, after: int, limit: int) -> list[OutboxEvent]:
        rows = await self.read(
            fetch,
            f"{OUTBOX_READ} WHERE e.idp_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
            (idp_id, after, limit),
        )
        return [outbox_event_of(row) for row in rows]

    async def outbox_event(self, seq: int) -> OutboxEvent | None:
        rows = await self.read(fetch, f"{OUTBOX_READ} WHERE e.seq = ?", (seq,))
        return outbox_event_of(rows[0]) if rows else None

    async def record_delivery(self, progress: DeliveryProgress) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE event_subscriptions SET cursor = max(cursor, ?), delivered = delivered + ?, "
                "rejected = rejected + ?, state = coalesce(?, state), "
                "last_error = coalesce(?, last_error), last_error_at = CASE WHEN ? IS NULL THEN last_error_at "
                "ELSE ? END, retry_since = ?, last_delivered_at = coalesce(?, last_delivered_at) WHERE id = ?",
                (
                    progress.cursor,
                    progress.delivered,
                    progress.rejected,
                    progress.state,
                    progress.last_error,
                    progress.last_error,
                    progress.attempts[-1].time if progress.attempts else None,
                    progress.retry_since,
                    progress.last_delivered_at,
                    progress.subscription_id,
                ),
            )
            conn.executemany(
                f"INSERT INTO event_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [attempt_values(attempt) for attempt in progress.attempts],
            )

        await self.write(run)

    async def delivery_attempts(
        self, subscription_id: str, seq: int | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        rows = await self.read(
            fetch,
            f"SELECT {ATTEMPT_COLUMNS} FROM event_attempts WHERE subscription_id = ? "
            "AND (? IS NULL OR seq = ?) ORDER BY id DESC LIMIT ?",
            (subscription_id, seq, seq, limit),
        )
        return [attempt_of(row) for row in rows]

    async def acked_after(self, subscription_id: str, after: int) -> set[int]:
        rows = await self.read(
            fetch,
            "SELECT seq FROM event_attempts WHERE subscription_id = ? AND seq > ? AND outcome IN ('acked', 'rejected')",
            (subscription_id, after),
        )
        return {row[0] for row in rows}

    async def outbox_stats(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            newest = conn.execute("SELECT max(seq) FROM events").fetchone()
            pending = conn.execute(
                "SELECT coalesce(sum((SELECT count(*) FROM events AS e "
                "WHERE e.idp_id = s.idp_id AND e.seq > s.cursor)), 0) FROM event_subscriptions AS s"
            ).fetchone()[0]
            return {"events": events, "newest": newest[0] or 0, "pending": pending}

        return await self.read(run)

    async def pending_count(self, subscription: Subscription) -> int:
        rows = await self.read(
            fetch,
            "SELECT count(*) FROM events WHERE idp_id = ? AND seq > ?",
            (subscription.idp_id, subscription.cursor),
        )
        return rows[0][0]

    async def prune_outbox(self, max_rows: int, older_than: str | None) -> int:
        aged = None
        if older_than is not None:
            # A scan on a reader (events has no index on time: see migration 012), not in the writer.
            rows = await self.read(fetch, "SELECT max(seq) FROM events WHERE time < ?", (older_than,))
            aged = rows[0][0]

        def run(conn: sqlite3.Connection) -> int:
            # An IdP without subscriptions keeps no events (its sign-ins may still make some
            # for a second after its last subscription is deleted).
            # The newest row always stays: seq is the rowid, which must never be handed out again.
            newest = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            deleted = conn.execute(
                "DELETE FROM events WHERE idp_id NOT IN (SELECT idp_id FROM event_subscriptions) AND seq < ?",
                (newest,),
            ).rowcount
            bounds = []
            if max_rows:
                bounds.append(
                    conn.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_rows,)).fetchone()
                )
            if aged is not None:
                bounds.append((aged,))
            bound = max((row[0] for row in bounds if row and row[0] is not None), default=None)
            if bound is not None:
                bound = min(bound, newest - 1)
                conn.execute(
                    "UPDATE event_subscriptions SET dropped = dropped + (SELECT count(*) FROM events AS e "
                    "WHERE e.idp_id = event_subscriptions.idp_id AND e.seq > event_subscriptions.cursor "
                    "AND e.seq <= ?), cursor = max(cursor, ?)",
                    (bound, bound),
                )
                deleted += conn.execute("DELETE FROM events WHERE seq <= ?", (bound,)).rowcount
            conn.execute(
                "DELETE FROM event_attempts WHERE seq < (SELECT coalesce(min(seq), 1 << 62) FROM events) "
                "OR subscription_id NOT IN (SELECT id FROM event_subscriptions)"
            )
            return deleted

        return await self.write(run)
