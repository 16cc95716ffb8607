"""The storage backends the suite runs on, and a store on each opened the way the server opens one."""

from __future__ import annotations

import importlib.util

from settings import load_settings
from storage import Store, create_store

# The backends a `backend`-parameterized test runs on: those storage/ has (a package per backend).
BACKENDS = ["sqlite", *(["postgresql"] if importlib.util.find_spec("storage.postgresql") else [])]


async def open_store(database_url: str, **settings: str) -> Store:
    """A migrated, opened store on the database at `database_url`, built from settings as `serve`
    builds it; `settings` adds SCIMLET_* ones (scim_max_user_groups="2" → SCIMLET_SCIM_MAX_USER_GROUPS)."""
    environ = {f"SCIMLET_{name.upper()}": value for name, value in settings.items()}
    store = create_store(load_settings(environ={**environ, "SCIMLET_DATABASE_URL": database_url}))
    await store.migrate()
    await store.open()
    return store
