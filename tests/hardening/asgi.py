"""An in-process app with chosen settings (SCIMLET_* names), for hardening tests that need no socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from app import create_app
from settings import load_settings
from tests.backends import open_store
from tests.conftest import Tenant
from tests.live_server import settings_env


@contextlib.asynccontextmanager
async def configured_tenant(
    database_url: str, client: tuple[str, int] = ("127.0.0.1", 50000), **env: object
) -> AsyncIterator[Tenant]:
    """Like the `tenant` fixture, on the database at `database_url` (the `database_url` fixture, or a
    SQLite file for a test that reads it), with settings such as server_body_timeout=1 and a client address."""
    settings = {"server_base_url": "https://scim.test", **{key: str(value) for key, value in env.items()}}
    store = await open_store(database_url, **settings)
    try:
        key, secret = await store.create_api_key("test", "", True, True)
        idp = await store.create_idp("test", "key", key.id)
        environ = {**settings_env(**settings), "SCIMLET_DATABASE_URL": database_url}
        app = create_app(load_settings(environ=environ), store)
        url = f"https://scim.test/v1/scim/{idp.id}"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client),
            base_url=url,
            headers={"Authorization": f"Bearer {secret}"},
        ) as http:
            tenant = Tenant(http, store, idp.id, secret, url)
            tenant.app = app
            yield tenant
    finally:
        await store.close()
