"""database.read_timeout_ms on each backend: a filter that scans a big directory is stopped with 400
tooMany saying what to do, never a 500 or a reader held for minutes, and the server (its connections
included) answers the next requests as before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app import create_app
from settings import load_settings
from storage import create_store
from tests.backends import open_store
from tests.conftest import entra_user, sqlite_url
from tests.hardening.asgi import configured_tenant
from tests.hardening.test_limits import assert_error

USERS = 20_000
STAMP = "2026-01-01T00:00:00.000Z"
# No user has this title: the filter reads every row of the IdP, and its count again.
SCAN = 'title co "no-such-title"'


async def seed_directory(database_url: str, scratch: Path) -> tuple[str, str]:
    """An IdP of USERS users (about 1 KB each) imported straight into the empty database at
    `database_url`, as copy-database would; returns its id and its key's secret."""
    source = await open_store(sqlite_url(scratch / "seed.db"))
    try:
        key, secret = await source.create_api_key("big", "", True, True)
        idp = await source.create_idp("big", "key", key.id)
        tables = {
            table: [row async for batch in source.export_rows(table, 100) for row in batch]
            for table in ("api_keys", "idps")
        }
    finally:
        await source.close()

    def user(i: int) -> dict:
        name = f"user{i:06d}@big.example"
        doc = entra_user(name, title=f"Engineer {i}", displayName=f"Person {i} " + "x" * 600)
        del doc["schemas"], doc["meta"]
        return {
            "seq": i + 1,
            "id": str(uuid.uuid4()),
            "idp_id": idp.id,
            "user_name": name,
            "external_id": doc["externalId"],
            "active": True,
            "doc": doc,
            "version": 1,
            "created": STAMP,
            "modified": STAMP,
        }

    async def batches() -> AsyncIterator[tuple[str, list[dict]]]:
        for table, rows in tables.items():
            yield table, rows
        for start in range(0, USERS, 2000):
            yield "users", [user(i) for i in range(start, min(USERS, start + 2000))]

    await create_store(load_settings(environ={"SCIMLET_DATABASE_URL": database_url})).import_rows(batches())
    return idp.id, secret


def idp_client(app: object, idp_id: str, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url=f"https://scim.test/v1/scim/{idp_id}",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


async def test_a_scan_past_the_read_timeout_is_400_too_many_and_the_next_requests_work(
    database_url: str, tmp_path: Path
) -> None:
    big_idp, big_secret = await seed_directory(database_url, tmp_path)
    async with configured_tenant(database_url, database_read_timeout_ms=1) as small:
        async with idp_client(small.app, big_idp, big_secret) as big:
            for _ in range(3):  # each time on a reader connection that then serves the next request
                scan = await big.get("/Users", params={"filter": SCAN})
                detail = assert_error(scan, 400, "tooMany")["detail"]
                assert "database.read_timeout_ms" in detail and "narrow the filter" in detail
                assert "userName" in detail and "externalId" in detail
                searched = await big.post("/Users/.search", json={"filter": SCAN, "count": 10})
                assert_error(searched, 400, "tooMany")
                # A lookup by an indexed attribute answers at once, on the same big directory.
                found = await big.get("/Users", params={"filter": 'userName eq "user012345@big.example"'})
                assert found.status_code == 200, found.text
                [user] = found.json()["Resources"]
                assert user["title"] == "Engineer 12345"
                by_id = await big.get(f"/Users/{user['id']}")
                assert by_id.status_code == 200 and by_id.json()["userName"] == "user012345@big.example"
            # Writes are not cut: a create and a PATCH in the big IdP are stored.
            created = await big.post("/Users", json=entra_user("new@big.example", title="written later"))
            assert created.status_code == 201, created.text
            patch = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            }
            patched = await big.patch(f"/Users/{created.json()['id']}", json=patch)
            assert patched.status_code in (200, 204), patched.text
        # A small directory's scan is within the timeout: the timed reads work on the same connections.
        await small.client.post("/Users", json=entra_user("one@small.example", title="Engineer"))
        listed = await small.client.get("/Users", params={"filter": 'title co "engineer"'})
        assert listed.status_code == 200, listed.text
        assert [u["userName"] for u in listed.json()["Resources"]] == ["one@small.example"]
    # With the default timeout (30 s) the same scan answers: it found nothing, and the create is there.
    store = await open_store(database_url)
    app = create_app(load_settings(environ={"SCIMLET_DATABASE_URL": database_url}), store)
    async with idp_client(app, big_idp, big_secret) as big:
        scan = await big.get("/Users", params={"filter": SCAN})
        assert scan.status_code == 200, scan.text
        assert scan.json()["totalResults"] == 0
        created = await big.get("/Users", params={"filter": 'title eq "written later"'})
        assert [u["userName"] for u in created.json()["Resources"]] == ["new@big.example"]
        assert created.json()["Resources"][0]["active"] is False
    await store.close()
