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
DENSE_GROUPS = 300
# The scan takes 110-350 ms here and the walk 60-150 ms (both backends, two statements each); a
# read of a few rows, well under this.
TIMEOUT_MS = 10
STAMP = "2026-01-01T00:00:00.000Z"
# No user has this title: the filter reads every row of the IdP, and its count again.
SCAN = 'title co "no-such-title"'


async def seed_directory(database_url: str, scratch: Path) -> tuple[str, str, str]:
    """An IdP of USERS users (about 1 KB each) and DENSE_GROUPS groups that each contain all the
    others, imported straight into the empty database at `database_url` as copy-database would;
    returns its id, its key's secret and the id of the group the first user is in."""
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

    first_user = user(0)
    groups = [
        {
            "seq": i + 1,
            "id": str(uuid.uuid4()),
            "idp_id": idp.id,
            "display_name": f"dense-{i:03d}",
            "external_id": None,
            "doc": {"displayName": f"dense-{i:03d}"},
            "version": 1,
            "created": STAMP,
            "modified": STAMP,
        }
        for i in range(DENSE_GROUPS)
    ]
    # Each group contains every other one, and the first user is in the first group.
    members = [
        {"idp_id": idp.id, "group_id": group["id"], "member_id": other["id"], "type": "Group"}
        for group in groups
        for other in groups
        if other is not group
    ]
    members.append({"idp_id": idp.id, "group_id": groups[0]["id"], "member_id": first_user["id"], "type": "User"})

    async def batches() -> AsyncIterator[tuple[str, list[dict]]]:
        for table, rows in tables.items():
            yield table, rows
        yield "users", [first_user, *(user(i) for i in range(1, USERS))]
        yield "groups", groups
        yield "group_members", members

    await create_store(load_settings(environ={"SCIMLET_DATABASE_URL": database_url})).import_rows(batches())
    return idp.id, secret, groups[0]["id"]


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
    big_idp, big_secret, dense = await seed_directory(database_url, tmp_path)
    walk = f'groups.value eq "{dense}"'  # the users below a group: a walk down all 300 nested groups
    # One reader connection (SQLite) and a pool of one (PostgreSQL): every read after a stopped one
    # runs on the connection that was stopped.
    one_connection = {"database_readers": 1, "postgresql_pool_min": 1, "postgresql_pool_max": 1}
    async with (
        configured_tenant(database_url, database_read_timeout_ms=TIMEOUT_MS, **one_connection) as small,
        idp_client(small.app, big_idp, big_secret) as big,
    ):
        for _ in range(3):  # stopped, then the next requests on the same connection, three times
            scan = await big.get("/Users", params={"filter": SCAN})
            detail = assert_error(scan, 400, "tooMany")["detail"]
            assert "database.read_timeout_ms" in detail and "narrow the filter" in detail
            assert "userName" in detail and "externalId" in detail
            searched = await big.post("/Users/.search", json={"filter": SCAN, "count": 10})
            assert_error(searched, 400, "tooMany")
            assert_error(await big.get("/Users", params={"filter": walk}), 400, "tooMany")
            # A lookup by an indexed attribute answers at once, on the same big directory.
            found = await big.get("/Users", params={"filter": 'userName eq "user012345@big.example"'})
            assert found.status_code == 200, found.text
            [user] = found.json()["Resources"]
            assert user["title"] == "Engineer 12345"
            by_id = await big.get(f"/Users/{user['id']}")
            assert by_id.status_code == 200 and by_id.json()["userName"] == "user012345@big.example"
            # A timed read that is quick: a list of the small tenant's groups (there are none).
            listed = await small.client.get("/Groups")
            assert listed.status_code == 200 and listed.json()["totalResults"] == 0, listed.text
        # Writes are not cut: a create and a PATCH in the big IdP are stored.
        created = await big.post("/Users", json=entra_user("new@big.example", title="written later"))
        assert created.status_code == 201, created.text
        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        }
        patched = await big.patch(f"/Users/{created.json()['id']}", json=patch)
        assert patched.status_code in (200, 204), patched.text
    # With the default timeout (30 s) the same scan answers: it found nothing, and the create is there.
    store = await open_store(database_url)
    app = create_app(load_settings(environ={"SCIMLET_DATABASE_URL": database_url}), store)
    async with idp_client(app, big_idp, big_secret) as big:
        scan = await big.get("/Users", params={"filter": SCAN})
        assert scan.status_code == 200, scan.text
        assert scan.json()["totalResults"] == 0
        walked = await big.get("/Users", params={"filter": walk, "excludedAttributes": "groups"})
        assert walked.status_code == 200, walked.text
        assert [u["userName"] for u in walked.json()["Resources"]] == ["user000000@big.example"]
        created = await big.get("/Users", params={"filter": 'title eq "written later"'})
        assert [u["userName"] for u in created.json()["Resources"]] == ["new@big.example"]
        assert created.json()["Resources"][0]["active"] is False
    await store.close()
