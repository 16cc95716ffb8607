"""What only the PostgreSQL backend does: creating its database, check-config's report on a server
that has no schema or cannot be reached, readiness and sizes while PostgreSQL is up and while it is
away, and the backup command's refusal. The behaviour both backends share is the contract suite's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import storage.postgresql.engine
from scim.errors import ScimError
from scim.patch import Member
from settings import load_settings
from storage import AdminError, create_store
from storage.postgresql import PostgresqlStore
from storage.records import MEMBER_CHUNK
from tests import pg_server
from tests.backends import open_store


def store_at(url: str, **settings: str) -> PostgresqlStore:
    environ = {f"SCIMLET_{name.upper()}": value for name, value in settings.items()}
    store = create_store(load_settings(environ={**environ, "SCIMLET_DATABASE_URL": url}))
    assert isinstance(store, PostgresqlStore)
    return store


@pytest.fixture
def missing_database(postgresql_url: str) -> Iterator[str]:
    """The URL of a database that does not exist yet on the run's server (dropped after the test)."""
    url = pg_server.with_database(postgresql_url, f"scimlet_new_{uuid.uuid4().hex[:12]}")
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[pg_server.PostgresServer]:
    """A PostgreSQL server of this test's own, to stop and start without touching other tests."""
    bin_dir = pg_server.binaries()
    assert bin_dir is not None
    server = pg_server.PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_migrate_creates_the_database_it_is_pointed_at(missing_database: str) -> None:
    store = store_at(missing_database)
    assert await store.describe() == [
        f"database {missing_database} (PostgreSQL): has no scimlet schema yet; `serve` or `migrate` creates it"
    ]
    assert await store.pending_migrations() == [
        "001_initial.sql",
        "002_member_delta.sql",
        "003_idp_schema.sql",
        "004_deleted_idp_names.sql",
        "005_fault_rules.sql",
        "006_second_key.sql",
        "007_bulk_request.sql",
        "008_log_resource.sql",
        "009_log_changes.sql",
        "010_events.sql",
    ]
    assert await store.migrate() == [
        "001_initial.sql",
        "002_member_delta.sql",
        "003_idp_schema.sql",
        "004_deleted_idp_names.sql",
        "005_fault_rules.sql",
        "006_second_key.sql",
        "007_bulk_request.sql",
        "008_log_resource.sql",
        "009_log_changes.sql",
        "010_events.sql",
    ]
    assert await store.migrate() == []  # once only
    assert await store.pending_migrations() == []
    assert (await store.describe())[0].endswith(": reachable, schema up to date")
    name = missing_database.rsplit("/", 1)[1]
    assert pg_server.psql(missing_database, "SELECT current_database()").strip() == name


async def test_check_config_says_when_the_server_cannot_be_reached() -> None:
    port = pg_server.free_port()  # nothing listens there
    store = store_at(f"postgresql://scimlet:secret@127.0.0.1:{port}/scimlet", postgresql_connect_timeout="1")
    [line] = await store.describe()
    assert line.startswith(f"database postgresql://scimlet:********@127.0.0.1:{port}/scimlet (PostgreSQL): ")
    assert "cannot be reached" in line and "secret" not in line


async def test_an_open_store_is_ready_and_reports_the_database_size(postgresql_database: str) -> None:
    store = await open_store(postgresql_database)
    try:
        assert await store.readiness(2.0) == {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        stats = await store.stats()
        assert stats.sizes["database"] > 1_000_000  # pg_database_size: the catalog alone is megabytes
        assert stats.write_queue_depth == 0
    finally:
        await store.close()


async def test_backup_refuses_and_names_pg_dump(postgresql_database: str, tmp_path: Path) -> None:
    store = store_at(postgresql_database)
    with pytest.raises(AdminError) as refused:
        await store.backup(str(tmp_path / "copy.db"))
    assert "pg_dump" in str(refused.value)
    assert not (tmp_path / "copy.db").exists()


async def test_while_postgresql_is_away_readiness_names_the_checks_and_comes_back(
    own_server: pg_server.PostgresServer,
) -> None:
    url = pg_server.create_database(own_server.url)
    store = await open_store(url, postgresql_connect_timeout="1", postgresql_retry_after="7")
    try:
        await store.create_idp("before", "key", None)
        own_server.halt()
        away = await store.readiness(3.0)
        assert away["database"] != "ok" and away["writer"] != "ok"
        assert away["migrations"] == "unknown: the database does not answer"
        assert "database" not in (await store.stats()).sizes  # a scrape still answers, without the size
        with pytest.raises(Exception) as refused:
            await store.list_idps()
        assert getattr(refused.value, "status", None) == 503 and getattr(refused.value, "retry_after", None) == 7
        own_server.resume()
        assert await store.readiness(3.0) == {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        assert [idp.name for idp in await store.list_idps()] == ["before"]
    finally:
        await store.close()


async def test_member_streams_take_at_most_half_the_pool_and_past_it_get_503(
    postgresql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.postgresql.engine, "SNAPSHOT_WAIT_SECONDS", 0.2)
    store = await open_store(postgresql_database, postgresql_pool_max="4")
    try:
        idp = (await store.create_idp("streams", "key", None)).id
        people = [await store.create("User", idp, {"userName": f"m{i}@x"}) for i in range(MEMBER_CHUNK + 1)]
        group = await store.create("Group", idp, {"displayName": "Big"}, [Member(u.id, "User") for u in people])
        held = [await store.stream_members(idp, group.id, orjson.dumps) for _ in range(2)]
        with pytest.raises(ScimError) as refused:
            await store.stream_members(idp, group.id, orjson.dumps)
        assert refused.value.status == 503 and "2 group member lists" in refused.value.detail
        # The other half of the pool still answers everything else, small groups' members included.
        assert (await store.get("User", idp, people[0].id)) is not None
        small = await store.create("Group", idp, {"displayName": "Small"}, [Member(people[0].id, "User")])
        one = await store.stream_members(idp, small.id, orjson.dumps)
        assert one is not None and [orjson.loads(c) async for c in one.chunks] == [
            [{"value": people[0].id, "type": "User", "display": "m0@x"}]
        ]
        await one.aclose()
        for stream in held:
            assert stream is not None
            await stream.aclose()
        again = [await store.stream_members(idp, group.id, orjson.dumps) for _ in range(2)]
        for stream in again:
            assert stream is not None
            await stream.aclose()
    finally:
        await store.close()
