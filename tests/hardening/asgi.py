"""An in-process app with chosen settings (SCIMLET_* names), for hardening tests that need no socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app import create_app
from settings import load_settings
from storage import create_store
from storage.sqlite import migrate
from tests.conftest import Tenant


@contextlib.asynccontextmanager
async def configured_tenant(
    tmp_path: Path, client: tuple[str, int] = ("127.0.0.1", 50000), **env: object
) -> AsyncIterator[Tenant]:
    """Like the `tenant` fixture, with settings such as server_body_timeout=1 and a client address."""
    settings = load_settings(
        environ={
            "SCIMLET_DATABASE_PATH": str(tmp_path / "scimlet.db"),
            "SCIMLET_SERVER_BASE_URL": "https://scim.test",
            **{f"SCIMLET_{key.upper()}": str(value) for key, value in env.items()},
        }
    )
    migrate(settings.database.path)
    store = create_store(settings)
    await store.open()
    try:
        key, secret = await store.create_api_key("test", "", True, True)
        idp = await store.create_idp("test", "key", key.id)
        app = create_app(settings, store)
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
