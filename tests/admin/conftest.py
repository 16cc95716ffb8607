"""The admin console and admin API through the ASGI app on a real temporary SQLite file."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette

from app import create_app
from settings import Settings, load_settings
from storage.sqlite import SqliteStore, migrate
from tests.live_server import Server, running, server_at
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


# The browser tests (test_admin_browser.py, test_browser_idp_care.py): Debian's Chromium, driven by its
# chromedriver, against a live first start of the server.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = (
    "the browser test needs Debian's Chromium and its driver: run `apt-get update && apt-get install -y "
    "chromium chromium-driver` as root (.ci/run does this in CI)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A first start, as an admin meets it: no IdP made by hand, and no admin password or token
    configured, so serve generates a password and prints it."""
    fresh = server_at(tmp_path / "e2e.db", tmp_path / "server.out", provision=False)
    for name in ("SCIMLET_ADMIN_PASSWORD", "SCIMLET_ADMIN_TOKEN", "SCIMLET_SERVER_BASE_URL", "SCIMLET_CONFIG"):
        fresh.env.pop(name, None)
    with running(fresh):
        fresh.extra["password"] = fresh.wait_for_output(r"Admin password: (\S+)").group(1)
        yield fresh


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(INSTALL_HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1440,900",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"{INSTALL_HINT}; starting it failed: {exc.msg}")
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
