"""The storage backends the suite runs on, and a store on each opened the way the server opens one."""

from __future__ import annotations

import importlib.util

from app import create_store
from settings import load_settings
from storage.sqlite import SqliteStore, migrate

# The backends a `backend`-parameterized test runs on: those storage/ has (a package per backend).
BACKENDS = ["sqlite", *(["postgresql"] if importlib.util.find_spec("storage.postgresql") else [])]
SQLITE_PREFIX = "sqlite:///"


async def open_store(database_url: str, **settings: str) -> SqliteStore:
    """A migrated, opened store on the database at `database_url`, built from settings as `serve`
    builds it; `settings` adds SCIMLET_* ones (scim_max_user_groups="2" → SCIMLET_SCIM_MAX_USER_GROUPS)."""
    if not database_url.startswith(SQLITE_PREFIX):
        raise AssertionError(f"no store factory for {database_url.split(':', 1)[0]} in this tree")
    path = database_url.removeprefix(SQLITE_PREFIX)
    migrate(path)
    environ = {f"SCIMLET_{name.upper()}": value for name, value in settings.items()}
    store = create_store(load_settings(environ={**environ, "SCIMLET_DATABASE_PATH": path}))
    await store.open()
    return store
