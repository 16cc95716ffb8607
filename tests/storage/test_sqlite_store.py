"""What only the SQLite backend promises, on a real temporary SQLite file: migrations, the file's
contents, changes made by another process's connection, checkpoints and query plans. What every
backend promises is the contract suite's (tests/storage/contract/)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

import storage.sqlite.engine
from scim.errors import ScimError
from scim.patch import Member
from storage import Query
from storage.common import AUTH_RECHECK_SECONDS
from storage.records import MEMBER_CHUNK
from storage.sqlite import MIGRATIONS, SqliteStore, migrate, pending_migrations
from storage.sqlite.engine import MAX_STREAMS


def user_doc(name: str, **extra: object) -> dict:
    return {"userName": name, "name": {"givenName": "G", "familyName": "F"}, **extra}


def add_tenants(path: str) -> None:
    """The IdPs these tests write to, by the ids they use (a write needs its IdP to exist)."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO idps (id, name, created) VALUES (?, ?, '2026-01-01T00:00:00.000Z')",
            [(tenant, f"tenant {tenant}") for tenant in ("idp", "idp1", "idp2")],
        )


@pytest.fixture
async def store(tmp_path: Path):
    path = str(tmp_path / "store.db")
    migrate(path)
    add_tenants(path)
    store = SqliteStore(path)
    await store.open()
    yield store
    await store.close()


async def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    all_files = sorted(f.name for f in MIGRATIONS.glob("*.sql"))
    assert all_files[0] == "001_initial.sql"
    assert migrate(path) == all_files
    assert migrate(path) == []
    with sqlite3.connect(path) as conn:
        assert pending_migrations(conn) == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_api_key_secret_is_stored_only_as_hash(store: SqliteStore) -> None:
    key, secret = await store.create_api_key("k", "desc", True, False)
    assert len(secret) >= 43  # 32 random bytes, base64url
    with sqlite3.connect(store.path) as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump
    idp = await store.create_idp("idp", "key", "k")
    principal = store.authenticate(idp.id, secret)
    assert principal is not None and principal.users_write and not principal.groups_write
    assert store.authenticate(idp.id, secret + "x") is None
    assert store.authenticate("other", secret) is None


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE api_keys SET revoked = '2026-01-01T00:00:00.000Z'",
        "UPDATE api_keys SET users_write = 0",
        "DELETE FROM api_keys",
        "UPDATE idps SET api_key_id = NULL",
        "DELETE FROM idps",
    ],
)
async def test_changes_made_by_another_process_reach_a_remembered_sign_in(store: SqliteStore, change: str) -> None:
    _, secret = await store.create_api_key("k", "", True, True)
    idp = await store.create_idp("idp", "key", "k")
    assert store.authenticate(idp.id, secret).users_write
    with sqlite3.connect(store.path) as other:  # as the CLI would, from its own connection
        other.execute(change)
    await asyncio.sleep(AUTH_RECHECK_SECONDS * 1.5)
    principal = store.authenticate(idp.id, secret)
    assert principal is None or not principal.users_write


async def test_commits_reach_the_database_file_without_waiting_for_a_full_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's own checkpoint (at 1,000 WAL pages) is off; a separate connection checkpoints
    # every CHECKPOINT_SECONDS after a commit, so even a small burst of writes reaches the file.
    monkeypatch.setattr(storage.sqlite.engine, "CHECKPOINT_SECONDS", 0.1)
    path = tmp_path / "checkpoint.db"
    migrate(str(path))
    add_tenants(str(path))
    store = SqliteStore(str(path))
    await store.open()
    try:
        before = path.stat().st_size
        await asyncio.gather(*[store.create("User", "idp", user_doc(f"u{i}", title="t" * 1000)) for i in range(300)])
        for _ in range(50):
            if path.stat().st_size > before + 300 * 1000:
                break
            await asyncio.sleep(0.1)
        assert path.stat().st_size > before + 300 * 1000
        total, _ = await store.search("User", "idp", Query(count=0))
        assert total == 300
    finally:
        await store.close()


async def test_planner_never_walks_an_idp_to_find_ids(store: SqliteStore) -> None:
    with sqlite3.connect(store.path) as conn:
        member_check = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM users WHERE idp_id = ? AND id IN (?, ?)", ("i", "a", "b")
        ).fetchall()
        page = conn.execute(
            "EXPLAIN QUERY PLAN SELECT t.id FROM users AS t WHERE t.idp_id = ? ORDER BY t.rowid LIMIT 10", ("i",)
        ).fetchall()
    assert "sqlite_autoindex_users_1 (id=?)" in str(member_check)
    assert "users_idp (idp_id=?)" in str(page) and "TEMP B-TREE" not in str(page)


async def test_member_streams_past_max_streams_wait_then_get_503(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.sqlite.engine, "STREAM_WAIT_SECONDS", 0.2)
    people = [await store.create("User", "idp", user_doc(f"m{i}@x")) for i in range(MEMBER_CHUNK + 1)]
    group = await store.create("Group", "idp", {"displayName": "Big"}, [Member(u.id, "User") for u in people])
    held = [await store.stream_members("idp", group.id, orjson.dumps) for _ in range(MAX_STREAMS)]
    with pytest.raises(ScimError) as refused:
        await store.stream_members("idp", group.id, orjson.dumps)
    assert refused.value.status == 503 and f"{MAX_STREAMS} group member lists" in refused.value.detail
    # One closed frees its slot for the next; every one closed, they all may open again.
    first = held.pop()
    assert first is not None
    await first.aclose()
    held.append(await store.stream_members("idp", group.id, orjson.dumps))
    for stream in held:
        assert stream is not None
        await stream.aclose()
    again = [await store.stream_members("idp", group.id, orjson.dumps) for _ in range(MAX_STREAMS)]
    for stream in again:
        assert stream is not None
        await stream.aclose()
