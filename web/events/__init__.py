"""SCIM events (RFC 9967) leaving scimlet: subscriptions, signing, push delivery (RFC 8935) and
poll delivery (RFC 8936). What a change's events are is scim/events.py; the outbox is storage's."""

from __future__ import annotations

import time

from settings import EventsSettings, Settings
from storage import Store
from storage.common import format_timestamp
from web.events.delivery import SetMaker
from web.events.keys import Sealer, SigningKeys, key_encryption_key
from web.events.subscriptions import Subscriptions


class Events:
    """The events' keys and SET maker, and the subscriptions' management, of one store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.sealer = Sealer(key_encryption_key(settings))
        self.keys = SigningKeys(store, self.sealer, settings.events.key_overlap_hours)
        self.subscriptions = Subscriptions(store, settings, self.sealer, self.keys)
        self.sets: SetMaker = self.subscriptions.sets


async def prune_outbox(store: Store, settings: EventsSettings) -> int:
    """Apply the outbox's bounds (events.outbox_max_rows, events.outbox_max_days)."""
    older_than = format_timestamp(time.time() - settings.outbox_max_days * 86400)
    return await store.prune_outbox(settings.outbox_max_rows, older_than)
