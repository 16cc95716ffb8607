"""An app on a real SQLite file with one IdP, and clients for its SCIM tenant and its root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from app import create_app
from settings import Settings, load_settings
from storage.sqlite import SqliteStore, migrate

BASE = "https://scim.test"


@dataclass
class Ops:
    app: Starlette
    store: SqliteStore
    idp_id: str
    secret: str
    root: httpx.AsyncClient  # the server's root, no credentials
    scim: httpx.AsyncClient  # the IdP's tenant URL, with its bearer secret


@contextlib.asynccontextmanager
async def open_ops(settings: Settings) -> AsyncIterator[Ops]:
    migrate(settings.database.path)
    store = SqliteStore(settings.database.path)
    await store.open()
    try:
        key, secret = await store.create_api_key("entra", "", True, True)
        idp = await store.create_idp("Entra", "key", key.id)
        app = create_app(settings, store)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE) as root,
            httpx.AsyncClient(
                transport=transport, base_url=f"{BASE}/v1/scim/{idp.id}", headers={"Authorization": f"Bearer {secret}"}
            ) as scim,
        ):
            yield Ops(app, store, idp.id, secret, root, scim)
    finally:
        await store.close()


def settings_for(tmp_path: object, **env: str) -> Settings:
    return load_settings(
        environ={"SCIMLET_DATABASE_PATH": f"{tmp_path}/scimlet.db", "SCIMLET_SERVER_BASE_URL": BASE, **env}
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite only, unlike the shared fixture: these tests read the store's files (size, WAL, paths)."""
    return settings_for(tmp_path)


@pytest.fixture
async def ops(settings: Settings) -> AsyncIterator[Ops]:
    async with open_ops(settings) as opened:
        yield opened


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of label pairs): value} from the Prometheus text format."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], metric: str, /, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet), as Prometheus treats a counter."""
    return samples.get((metric, frozenset(labels.items())), 0.0)
