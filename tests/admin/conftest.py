"""The admin console and admin API through the ASGI app on a real temporary SQLite file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app import create_app
from settings import Settings, load_settings
from storage.sqlite import SqliteStore, migrate
from web.admin.auth import AdminAuth

PASSWORD = "correct horse battery staple"
TOKEN = "admin-token-for-tests-0123456789abcdef"
BASE = "https://scim.test"
CLIENT_ADDRESS = ("203.0.113.7", 50000)


def admin_settings(tmp_path: Path, **extra: str) -> Settings:
    environ = {
        "SCIMLET_DATABASE_PATH": str(tmp_path / "admin.db"),
        "SCIMLET_SERVER_BASE_URL": BASE,
        "SCIMLET_ADMIN_PASSWORD": PASSWORD,
        "SCIMLET_ADMIN_TOKEN": TOKEN,
    }
    environ.update(extra)
    return load_settings(environ={k: v for k, v in environ.items() if v is not None})


def hidden_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def meta_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    assert match, "no CSRF meta tag in the page"
    return match.group(1)


@dataclass
class Admin:
    """A browser-like client of the console (cookies kept), the store and a SCIM helper."""

    client: httpx.AsyncClient
    store: SqliteStore
    app: Starlette
    settings: Settings
    csrf: str = ""

    @property
    def auth(self) -> AdminAuth:
        return self.app.state.admin_auth

    async def sign_in(self, password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/admin/login")
        response = await self.client.post(
            "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": password, "next": "/admin/"}
        )
        if response.status_code == 303:
            home = await self.client.get("/admin/")
            assert home.status_code == 200
            self.csrf = meta_csrf(home.text)
        return response

    async def post(self, path: str, data: dict | None = None, *, csrf: str | None = None) -> httpx.Response:
        """A console form post carrying the session's CSRF token (or the one given)."""
        return await self.client.post(path, data={"csrf_token": self.csrf if csrf is None else csrf, **(data or {})})

    async def idp_with_key(self, name: str = "Entra", users: bool = True, groups: bool = True) -> Tenant:
        key, secret = await self.store.create_api_key(f"{name} key", "", users, groups)
        idp = await self.store.create_idp(name, "cloud", key.id)
        url = f"{BASE}/v1/scim/{idp.id}"
        scim = httpx.AsyncClient(
            transport=self.client._transport, base_url=url, headers={"Authorization": f"Bearer {secret}"}
        )
        return Tenant(idp.id, key.id, secret, url, scim)

    async def flush_logs(self) -> None:
        """The ASGI transport runs no lifespan, so the log buffer's timer never runs: flush by hand."""
        await self.app.state.provisioning_log.flush()


@dataclass
class Tenant:
    idp_id: str
    key_id: str
    secret: str
    url: str
    scim: httpx.AsyncClient


async def open_admin(settings: Settings) -> tuple[SqliteStore, Starlette]:
    migrate(settings.database.path)
    store = SqliteStore(settings.database.path)
    await store.open()
    return store, create_app(settings, store)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    """Not signed in yet."""
    settings = admin_settings(tmp_path)
    store, app = await open_admin(settings)
    transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Admin(client, store, app, settings)
    await store.close()


@pytest.fixture
async def signed_in(admin: Admin) -> Admin:
    response = await admin.sign_in()
    assert response.status_code == 303
    return admin
