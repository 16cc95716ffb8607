"""The SQLite backend: one file in WAL mode, one writer with group commit, a few readers.

One module per concern, each a part of `SqliteStore` built on the connection engine:
engine.py (connections, reads, group-committed writes, checkpoints, unavailability as 503),
maintenance.py (migrations, backup, readiness, sizes, check-config's report), auth.py (API keys,
IdPs, the sign-in cache), resources.py (users, groups, members), provisioning_log.py, console.py
(console settings and sessions), directory.py (the console's directory pages) and events.py (event
subscriptions, the outbox, delivery attempts). The schema is in migrations/*.sql.
"""

from __future__ import annotations

import logging

from scim.errors import ScimError
from settings import Settings
from storage.sqlite.auth import KeysAndIdps
from storage.sqlite.console import ConsoleData
from storage.sqlite.directory import Directory
from storage.sqlite.events import EventData
from storage.sqlite.faults import FaultRules
from storage.sqlite.maintenance import MIGRATIONS, Maintenance, backup, migrate, pending_migrations
from storage.sqlite.provisioning_log import ProvisioningLog
from storage.sqlite.resources import Resources

__all__ = ["MIGRATIONS", "SqliteStore", "backup", "from_settings", "migrate", "path_of", "pending_migrations"]
log = logging.getLogger("scimlet.storage")


class SqliteStore(Maintenance, EventData, KeysAndIdps, Resources, ProvisioningLog, ConsoleData, FaultRules, Directory):
    """The Store protocol (storage/interfaces.py) on SQLite."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        readers: int = 2,
        max_write_queue: int = 0,
        max_size_bytes: int = 0,
        max_user_groups: int = 5000,
        min_free_bytes: int = 0,
        read_timeout: float = 0,
    ) -> None:
        super().__init__(
            path,
            synchronous=synchronous,
            readers=readers,
            max_write_queue=max_write_queue,
            max_size_bytes=max_size_bytes,
            max_user_groups=max_user_groups,
            min_free_bytes=min_free_bytes,
            read_timeout=read_timeout,
        )
        self._start_auth_cache()

    async def close(self) -> None:
        if self._writer_task is not None:
            try:
                await self.flush_last_used()
            except ScimError as exc:  # the database is gone or full: the last-used times are not worth a hang
                log.warning("API key last-used times not saved: %s", exc.detail)
        await super().close()


def from_settings(settings: Settings) -> SqliteStore:
    """The store for database.url (a sqlite:/// URL) or, when it is not set, database.path."""
    db = settings.database
    return SqliteStore(
        path_of(db.backend_url),
        synchronous=db.synchronous,
        readers=db.readers,
        max_write_queue=settings.scim.max_write_queue,
        max_size_bytes=db.max_size_bytes,
        max_user_groups=settings.scim.max_user_groups,
        min_free_bytes=db.min_free_bytes,
        read_timeout=db.read_timeout_ms / 1000,
    )


def path_of(url: str) -> str:
    """The file a sqlite:///PATH URL names (sqlite:////PATH: an absolute path)."""
    return url.removeprefix("sqlite:///")
