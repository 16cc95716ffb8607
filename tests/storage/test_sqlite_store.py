"""Storage contract tests on a real temporary SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

import pytest

import storage.sqlite.engine
from scim.errors import ScimError
from scim.filters import format_datetime, parse_filter
from scim.patch import Member, MemberOp
from scim.paths import resolve_text
from scim.schemas import GROUP_TYPE, USER_TYPE
from storage import AdminError, Change, Query
from storage.common import AUTH_RECHECK_SECONDS
from storage.sqlite import MIGRATIONS, SqliteStore, migrate, pending_migrations


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
    with pytest.raises(AdminError):
        await store.create_api_key("K", "", True, True)
    with pytest.raises(AdminError):
        await store.create_idp("x", "key", "no-such-key")


async def test_changes_made_here_end_a_sign_in_at_once(store: SqliteStore) -> None:
    first, first_secret = await store.create_api_key("first", "", True, True)
    _, second_secret = await store.create_api_key("second", "", True, True)
    idp = await store.create_idp("idp", "key", "first")
    assert store.authenticate(idp.id, first_secret) is not None  # now remembered
    await store.set_idp_api_key(idp.id, "second")
    assert store.authenticate(idp.id, first_secret) is None
    assert store.authenticate(idp.id, second_secret) is not None
    await store.revoke_api_key("second")
    assert store.authenticate(idp.id, second_secret) is None
    other = await store.create_idp("other", "key", first.id)
    assert store.authenticate(other.id, first_secret) is not None
    await store.delete_idp(other.id)
    assert store.authenticate(other.id, first_secret) is None


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


async def test_create_get_and_case_insensitive_uniqueness(store: SqliteStore) -> None:
    row = await store.create("User", "idp1", user_doc("Alice"))
    assert row.version == 1 and row.groups == []
    got = await store.get("User", "idp1", row.id)
    assert got.doc == user_doc("Alice")
    assert await store.get("User", "idp2", row.id) is None  # tenants never see each other
    with pytest.raises(ScimError) as err:
        await store.create("User", "idp1", user_doc("ALICE"))
    assert err.value.status == 409 and err.value.scim_type == "uniqueness"
    other_tenant = await store.create("User", "idp2", user_doc("alice"))
    assert other_tenant.id != row.id


async def test_concurrent_duplicate_creates_give_exactly_one(store: SqliteStore) -> None:
    names = ["Zed", "zed", "ZED", "zEd"] * 10
    results = await asyncio.gather(*[store.create("User", "idp", user_doc(n)) for n in names], return_exceptions=True)
    created = [r for r in results if not isinstance(r, Exception)]
    assert len(created) == 1
    assert all(isinstance(r, ScimError) and r.status == 409 for r in results if isinstance(r, Exception))


async def test_failing_write_in_a_batch_does_not_affect_others(store: SqliteStore) -> None:
    await store.create("User", "idp", user_doc("taken"))
    results = await asyncio.gather(
        store.create("User", "idp", user_doc("a")),
        store.create("User", "idp", user_doc("taken")),
        store.create("User", "idp", user_doc("b")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Row", "ScimError", "Row"]
    total, _ = await store.search("User", "idp", Query())
    assert total == 3


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


async def test_update_bumps_version_only_on_change(store: SqliteStore) -> None:
    row = await store.create("User", "idp", user_doc("u"))
    same = await store.update("User", "idp", row.id, lambda current: Change(doc=dict(current.doc)))
    assert same.version == 1
    changed = await store.update("User", "idp", row.id, lambda current: Change(doc={**current.doc, "title": "T"}))
    assert changed.version == 2 and changed.doc["title"] == "T"
    with pytest.raises(ScimError) as err:
        await store.update("User", "idp", "missing", lambda current: Change())
    assert err.value.status == 404


async def test_filtered_columns_follow_every_kind_of_update(store: SqliteStore) -> None:
    row = await store.create("User", "idp", user_doc("Col@x", externalId="e1", active=True))

    async def found(text: str) -> list[str]:
        _, rows = await store.search("User", "idp", Query(where=parse_filter(text, USER_TYPE)))
        return [r.id for r in rows]

    async def change(**fields: object) -> None:
        await store.update("User", "idp", row.id, lambda current: Change(doc={**current.doc, **fields}))

    await change(title="only the document")
    assert await found('externalId eq "e1" and active eq true and userName eq "col@x"') == [row.id]
    await change(active=False)
    assert await found("active eq true") == [] and await found("active eq false") == [row.id]
    await change(userName="Renamed@x", externalId="e2")
    assert await found('userName eq "col@x"') == [] and await found('userName eq "renamed@x"') == [row.id]
    assert await found('externalId eq "e1"') == [] and await found('externalId eq "e2"') == [row.id]
    with pytest.raises(ScimError) as taken:
        await store.create("User", "idp", user_doc("RENAMED@X"))
    assert taken.value.status == 409


async def test_failed_change_leaves_the_row_untouched(store: SqliteStore) -> None:
    user = await store.create("User", "idp", user_doc("u"))
    group = await store.create("Group", "idp", {"displayName": "g"})

    def change(current):
        return Change(
            doc={"displayName": "renamed"}, member_ops=[MemberOp("add", (Member(user.id), Member("unknown")))]
        )

    with pytest.raises(ScimError) as err:
        await store.update("Group", "idp", group.id, change)
    assert "unknown" in err.value.detail
    after = await store.get("Group", "idp", group.id)
    assert after.doc == {"displayName": "g"} and after.members == [] and after.version == 1


async def test_member_deltas_and_search(store: SqliteStore) -> None:
    users = [await store.create("User", "idp", user_doc(f"u{i}")) for i in range(5)]
    group = await store.create("Group", "idp", {"displayName": "g"}, [Member(u.id) for u in users[:3]])
    assert {m["value"] for m in group.members} == {u.id for u in users[:3]}
    ops = [MemberOp("remove", (Member(users[0].id),)), MemberOp("add", (Member(users[4].id, "User"),))]
    updated = await store.update("Group", "idp", group.id, lambda current: Change(member_ops=ops))
    assert {m["value"] for m in updated.members} == {users[1].id, users[2].id, users[4].id}
    where = parse_filter(f'members eq "{users[4].id}"', GROUP_TYPE)
    total, rows = await store.search("Group", "idp", Query(where=where, members=False))
    assert total == 1 and rows[0].members is None
    wrong_type = [MemberOp("add", (Member(users[3].id, "Group"),))]
    with pytest.raises(ScimError):
        await store.update("Group", "idp", group.id, lambda current: Change(member_ops=wrong_type))


async def test_search_paging_and_sorting(store: SqliteStore) -> None:
    for name in ["c", "a", "b", "e", "d"]:
        await store.create("User", "idp", user_doc(name))
    sort = parse_filter("userName pr", USER_TYPE)
    total, rows = await store.search(
        "User", "idp", Query(where=sort, start_index=2, count=2, sort_by=resolve_text(USER_TYPE, "userName"))
    )
    assert total == 5 and [r.doc["userName"] for r in rows] == ["b", "c"]
    total, rows = await store.search("User", "idp", Query(start_index=9))
    assert total == 5 and rows == []


async def test_delete_idp_removes_its_data(store: SqliteStore) -> None:
    key, _ = await store.create_api_key("k", "", True, True)
    idp = await store.create_idp("i", "key", key.id)
    await store.create("User", idp.id, user_doc("x"))
    await store.delete_idp(idp.id)
    total, _ = await store.search("User", idp.id, Query())
    assert total == 0 and {i.id for i in await store.list_idps()} == {"idp", "idp1", "idp2"}  # the fixture's


async def test_ids_are_time_ordered_uuids(store: SqliteStore) -> None:
    first = await store.create("User", "idp", user_doc("first"))
    await asyncio.sleep(0.002)
    second = await store.create("User", "idp", user_doc("second"))
    assert uuid.UUID(first.id).version == 7 and uuid.UUID(second.id).version == 7
    assert first.id < second.id  # new rows go to the end of the id indexes


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


async def test_new_ids_are_uuid7_in_creation_order_and_stamps_read_as_filters_write_them(store: SqliteStore) -> None:
    rows = []
    for i in range(3):
        rows.append(await store.create("User", "idp", user_doc(f"order{i}@x")))
        await asyncio.sleep(0.002)  # ids order by millisecond
    parsed = [uuid.UUID(row.id) for row in rows]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    assert len({row.id for row in rows}) == 3
    created = rows[0].created
    assert created == format_datetime(datetime.fromisoformat(created))
    assert created.endswith("Z") and len(created) == len("2026-01-01T00:00:00.000Z")
