"""The PostgreSQL backend: several scimlet instances may share one database.

One module per concern, each a part of `PostgresqlStore` built on the connection engine:
engine.py (the pool, reads, write transactions, unreachability as 503), maintenance.py (migrations
under an advisory lock, readiness, size, check-config's report), auth.py (API keys, IdPs, the
in-memory sign-ins kept current by LISTEN/NOTIFY), resources.py (users, groups, members),
provisioning_log.py, console.py (console settings, sessions and directory pages), dialect.py (the
filter translator's PostgreSQL SQL). The schema is in migrations/*.sql.
"""

from __future__ import annotations

import logging

from scim.errors import ScimError
from settings import Settings
from storage.postgresql.auth import KeysAndIdps
from storage.postgresql.console import ConsoleData
from storage.postgresql.events import EventData
from storage.postgresql.faults import FaultRules
from storage.postgresql.maintenance import Maintenance
from storage.postgresql.provisioning_log import ProvisioningLog
from storage.postgresql.resources import Resources

__all__ = ["PostgresqlStore", "from_settings"]
log = logging.getLogger("scimlet.storage")


class PostgresqlStore(Maintenance, EventData, KeysAndIdps, Resources, ProvisioningLog, ConsoleData, FaultRules):
    """The Store protocol (storage/interfaces.py) on PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 2,
        pool_max: int = 10,
        connect_timeout: float = 5,
        statement_timeout: float = 30,
        retry_after: int = 5,
        max_write_queue: int = 0,
        max_user_groups: int = 5000,
        read_timeout: float = 0,
    ) -> None:
        super().__init__(
            url,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            retry_after=retry_after,
            max_write_queue=max_write_queue,
            max_user_groups=max_user_groups,
            read_timeout=read_timeout,
        )
        self._start_auth_cache()
        self._start_batchers()

    async def open(self) -> None:
        await super().open()
        try:
            await self._open_auth()
        except BaseException:
            await super().close()
            raise

    async def close(self) -> None:
        await self._close_auth()
        if self.pool is not None:
            try:
                await self.flush_last_used()
            except ScimError as exc:  # the database is gone: the last-used times are not worth a hang
                log.warning("API key last-used times not saved: %s", exc.detail)
        await super().close()


def from_settings(settings: Settings) -> PostgresqlStore:
    """The store for database.url (a postgresql:// URL), with the [postgresql] section's settings."""
    pg = settings.postgresql
    return PostgresqlStore(
        settings.database.backend_url,
        pool_min=pg.pool_min,
        pool_max=pg.pool_max,
        connect_timeout=pg.connect_timeout,
        statement_timeout=pg.statement_timeout,
        retry_after=pg.retry_after,
        max_write_queue=settings.scim.max_write_queue,
        max_user_groups=settings.scim.max_user_groups,
        read_timeout=settings.database.read_timeout_ms / 1000,
    )
