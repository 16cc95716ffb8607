"""Storage: the records and the interfaces the HTTP layer uses (storage/interfaces.py), and
`create_store`, which builds the backend that `database.url` names. A backend is a package
(storage/sqlite/, storage/postgresql/) implementing `Store`; nothing outside storage/ imports one."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from settings import ConfigError, Settings
from storage.errors import AdminError
from storage.interfaces import (
    AdminStore,
    ConsoleStore,
    EventStore,
    FaultStore,
    LogStore,
    OperationsStore,
    ResourceStore,
    StorageStats,
    Store,
)
from storage.records import (
    AdminSession,
    ApiKey,
    Change,
    ChangeFn,
    CheckFn,
    DeliveryAttempt,
    DeliveryProgress,
    DirectoryPage,
    Encoder,
    EventSource,
    FailureGroup,
    FaultRule,
    Idp,
    IgnoredAttribute,
    LogCounters,
    LogQuery,
    LogRecord,
    MemberEncoder,
    MemberStream,
    OutboxEvent,
    Principal,
    Query,
    Row,
    SchemaConfig,
    SignInFailure,
    Subscription,
    UniqueValue,
    WalkPage,
)

__all__ = [
    "AdminError",
    "AdminSession",
    "AdminStore",
    "ApiKey",
    "BACKENDS",
    "Change",
    "ChangeFn",
    "CheckFn",
    "ConsoleStore",
    "DeliveryAttempt",
    "DeliveryProgress",
    "DirectoryPage",
    "Encoder",
    "EventSource",
    "EventStore",
    "FaultRule",
    "FaultStore",
    "Idp",
    "IgnoredAttribute",
    "FailureGroup",
    "LogCounters",
    "LogQuery",
    "LogRecord",
    "LogStore",
    "MemberEncoder",
    "MemberStream",
    "OperationsStore",
    "OutboxEvent",
    "Principal",
    "SignInFailure",
    "Query",
    "ResourceStore",
    "Row",
    "SchemaConfig",
    "Subscription",
    "UniqueValue",
    "WalkPage",
    "StorageStats",
    "Store",
    "create_store",
]


def _sqlite(settings: Settings) -> Store:
    # Each backend is imported only when chosen: a SQLite deployment never loads another's driver.
    from storage.sqlite import from_settings

    return from_settings(settings)


def _postgresql(settings: Settings) -> Store:
    from storage.postgresql import from_settings

    return from_settings(settings)


# database.url's scheme -> the function that builds that backend's store from the settings.
BACKENDS: dict[str, Callable[[Settings], Store]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "postgres": _postgresql,  # libpq accepts both spellings
}


def create_store(settings: Settings) -> Store:
    """The store `database.url` names (else the SQLite file `database.path`), not opened yet.

    Raises settings.ConfigError for a scheme no backend serves."""
    scheme = urlsplit(settings.database.backend_url).scheme
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise ConfigError(f"database.url: no storage backend for {scheme}://; use one of {known}")
    return backend(settings)
