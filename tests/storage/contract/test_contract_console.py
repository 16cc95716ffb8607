"""Storage contract, the admin console's reads and the provisioning log: directory pages, a group's
members, log records (append, query, get, counters) and their retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scim.errors import ScimError
from scim.filters import format_datetime, parse_filter
from scim.patch import Member
from scim.schemas import GROUP_TYPE, USER_TYPE
from storage import Change, DirectoryPage, LogQuery, LogRecord, Row, Store


def names(page: DirectoryPage) -> list[str]:
    return [row.doc.get("userName") or row.doc["displayName"] for row in page.rows]


async def add_users(store: Store, idp: str, user_names: list[str]) -> dict[str, str]:
    """userName -> id."""
    created = {}
    for name in user_names:
        created[name] = (await store.create("User", idp, {"userName": name})).id
    return created


async def test_directory_pages_walk_forwards_and_backwards_in_name_order(store: Store, idp: str) -> None:
    await add_users(store, idp, ["delta", "Alpha", "charlie", "Echo", "bravo", "foxtrot", "Golf"])
    first = await store.directory_page("User", idp, None, limit=3)
    assert (first.total, names(first), first.has_previous, first.has_next) == (
        7,
        ["Alpha", "bravo", "charlie"],
        False,
        True,
    )
    assert (first.first, first.last) == ("Alpha", "charlie")
    second = await store.directory_page("User", idp, None, after=first.last, limit=3)
    assert (names(second), second.has_previous, second.has_next) == (["delta", "Echo", "foxtrot"], True, True)
    last = await store.directory_page("User", idp, None, after=second.last, limit=3)
    assert (names(last), last.has_previous, last.has_next) == (["Golf"], True, False)
    back = await store.directory_page("User", idp, None, before=last.first, limit=3)
    assert (names(back), back.has_previous, back.has_next) == (["delta", "Echo", "foxtrot"], True, True)
    # Fewer than a page before the cursor: the first page, shown full.
    start = await store.directory_page("User", idp, None, before="charlie", limit=3)
    assert (names(start), start.has_previous, start.has_next) == (["Alpha", "bravo", "charlie"], False, True)
    # A cursor is a name: it pages on whatever its case, and from a name no row has.
    assert names(await store.directory_page("User", idp, None, after="ECHO", limit=2)) == ["foxtrot", "Golf"]
    assert names(await store.directory_page("User", idp, None, after="d", limit=2)) == ["delta", "Echo"]
    empty = await store.directory_page("User", idp, None, after="zulu")
    assert (empty.total, empty.rows, empty.first, empty.last, empty.has_next) == (7, [], None, None, False)


async def test_directory_pages_filter_and_search_text(store: Store, idp: str, other_idp: str) -> None:
    ids = await add_users(store, idp, ["ann@x", "bob@x", "ANNA@y"])
    await store.update(
        "User",
        idp,
        ids["bob@x"],
        lambda current: _with(current, name={"givenName": "Annette", "familyName": "Smith"}, externalId="ext-7"),
    )
    await store.create("User", other_idp, {"userName": "ann@other"})

    async def search(text: str) -> list[str]:
        return names(await store.directory_page("User", idp, None, text=text))

    assert await search("ann") == ["ann@x", "ANNA@y", "bob@x"]  # name contains it, any case; given name too
    assert await search("SMITH") == ["bob@x"]  # family name
    assert await search("ext-7") == ["bob@x"]  # externalId, whole
    assert await search("ext") == []  # not part of an externalId
    assert await search(ids["ann@x"]) == ["ann@x"]  # id
    assert await search("%") == [] and await search("_") == [] and await search('"') == []  # no wildcards
    filtered = await store.directory_page("User", idp, parse_filter('userName ew "@x"', USER_TYPE), text="ann")
    assert (filtered.total, names(filtered)) == (2, ["ann@x", "bob@x"])
    with pytest.raises(ScimError) as bad:
        await store.directory_page("Group", idp, parse_filter("members.display pr", GROUP_TYPE))
    assert bad.value.status == 400 and bad.value.scim_type == "invalidFilter"


def _with(current: Row, **fields: object) -> Change:
    return Change(doc={**current.doc, **fields})


async def test_directory_pages_show_groups_and_member_counts(store: Store, idp: str) -> None:
    ids = await add_users(store, idp, ["u1", "u2", "u3"])
    big = await store.create("Group", idp, {"displayName": "Big"}, [Member(i) for i in ids.values()])
    await store.create("Group", idp, {"displayName": "empty", "externalId": "e-empty"})
    groups = await store.directory_page("Group", idp, None)
    assert names(groups) == ["Big", "empty"]
    assert groups.member_counts == {big.id: 3, groups.rows[1].id: 0}
    assert names(await store.directory_page("Group", idp, None, text="e-empty")) == ["empty"]
    assert names(await store.directory_page("Group", idp, None, text="BI")) == ["Big"]
    users = await store.directory_page("User", idp, None)
    assert [row.groups for row in users.rows] == [[{"value": big.id, "display": "Big", "type": "direct"}]] * 3


async def test_group_members_counts_all_and_lists_the_first(store: Store, idp: str, other_idp: str) -> None:
    ids = await add_users(store, idp, [f"u{i}" for i in range(5)])
    child = await store.create("Group", idp, {"displayName": "child"})
    group = await store.create(
        "Group", idp, {"displayName": "g"}, [*(Member(i) for i in ids.values()), Member(child.id)]
    )
    total, listed = await store.group_members(idp, group.id, 3)
    assert total == 6 and len(listed) == 3
    total, listed = await store.group_members(idp, group.id, 100)
    expected = [{"value": i, "type": "User", "display": name} for name, i in ids.items()]
    expected.append({"value": child.id, "type": "Group", "display": "child"})
    assert total == 6 and sorted(listed, key=str) == sorted(expected, key=str)
    assert await store.group_members(other_idp, group.id, 10) == (0, [])
    assert await store.group_members(idp, "no-such-group", 10) == (0, [])


def record(time: str, idp_id: str | None = "i1", status: int = 200, **fields: object) -> LogRecord:
    values: dict[str, object] = {
        "time": time,
        "idp_id": idp_id,
        "api_key_id": "key",
        "method": "POST",
        "path": "/Users",
        "operation": "Create User",
        "resource_type": "User",
        "resource_id": None,
        "target": "alice@x",
        "status": status,
        "scim_type": None if status < 400 else "uniqueness",
        "detail": None if status < 400 else "userName taken",
        "duration_ms": 1.5,
        "client": "192.0.2.1",
        "request_body": '{"userName": "alice@x"}',
        "response_body": "{}",
    }
    values.update(fields)
    return LogRecord(**values)  # type: ignore[arg-type]


def ago(**delta: float) -> str:
    return format_datetime(datetime.now(UTC) - timedelta(**delta))


async def test_log_records_are_stored_and_read_back_whole(store: Store, idp: str) -> None:
    user = await store.create("User", idp, {"userName": "Alice"})
    written = [
        record(ago(minutes=2), idp),
        record(ago(minutes=1), idp, method="PATCH", resource_id=user.id, target=user.id, operation="Update User"),
        record(ago(seconds=1), None, status=401, api_key_id=None, request_body=None, duration_ms=0.25),
    ]
    await store.append_logs(written)
    await store.append_logs([])  # nothing to write
    records, more = await store.query_logs(LogQuery())
    assert more is False and len(records) == 3
    assert [r._replace(id=None, resource_name=None) for r in records] == written[::-1]  # newest first
    assert all(isinstance(r.id, int) for r in records) and len({r.id for r in records}) == 3
    patch = records[1]
    assert patch.resource_name == "Alice" and patch.label == "Alice"  # the resource's name now
    assert await store.get_log(patch.id or 0) == patch
    assert await store.get_log(10**9) is None


async def test_a_list_of_log_records_comes_without_bodies_and_changes(store: Store, idp: str) -> None:
    written = record(ago(seconds=1), idp, changes='{"title": [null, "Boss"]}', ignored='["x"]', injected="429")
    await store.append_logs([written])
    (whole,), _ = await store.query_logs(LogQuery())
    (listed,), _ = await store.query_logs(LogQuery(bodies=False))
    assert whole.request_body == written.request_body and whole.changes == written.changes
    assert listed == whole._replace(request_body=None, response_body=None, changes=None)
    assert listed.ignored == '["x"]' and listed.injected == "429"  # what a list shows stays


async def test_log_queries_narrow_by_every_field_and_page_by_keyset(store: Store, idp: str) -> None:
    user = await store.create("User", idp, {"userName": "Renamed@x"})
    await store.append_logs(
        [
            record(ago(hours=3), "i1", target="old@x"),
            record(ago(hours=2), "i2", status=409, target="dup@x"),
            record(ago(hours=1), "i1", method="DELETE", operation="Delete User", resource_id=user.id, target=user.id),
            record(ago(minutes=1), "i2", status=500, detail="100% broken_thing", target=None),
        ]
    )

    async def targets(**query: object) -> list[str | None]:
        records, _ = await store.query_logs(LogQuery(**query))  # type: ignore[arg-type]
        return [r.target if r.target != user.id else "deleted" for r in records]

    assert await targets(idp_id="i1") == ["deleted", "old@x"]
    assert await targets(failures=True) == [None, "dup@x"]
    assert await targets(failures=False) == ["deleted", "old@x"]
    assert await targets(operation="Delete User") == ["deleted"]
    assert await targets(text="DUP") == ["dup@x"]  # target, any case
    assert await targets(text="100%") == [None]  # detail; % is no wildcard
    assert await targets(text="0%") == [None] and await targets(text="x%") == []
    assert await targets(text="renamed") == ["deleted"]  # the resource's current name
    assert await targets(text=user.id) == ["deleted"]
    assert await targets(text="/Users") == [None, "deleted", "dup@x", "old@x"]  # path
    assert await targets(since=ago(minutes=90)) == [None, "deleted"]
    assert await targets(until=ago(minutes=90)) == ["dup@x", "old@x"]
    assert await targets(idp_id="i2", failures=True, since=ago(minutes=150)) == [None, "dup@x"]
    first, more = await store.query_logs(LogQuery(limit=3))
    assert len(first) == 3 and more is True
    rest, more = await store.query_logs(LogQuery(limit=3, before_id=first[-1].id))
    assert [r.target for r in rest] == ["old@x"] and more is False


async def test_log_records_of_one_moment_page_without_loss(store: Store) -> None:
    moment = ago(minutes=5)
    await store.append_logs([record(moment, target=f"t{i}") for i in range(7)])
    seen: list[str | None] = []
    before = None
    for _ in range(4):
        page, more = await store.query_logs(LogQuery(limit=3, before_id=before))
        seen += [r.target for r in page]
        if not more:
            break
        before = page[-1].id
    assert sorted(seen, key=str) == [f"t{i}" for i in range(7)]
    assert seen == [f"t{i}" for i in reversed(range(7))]  # newest first: the later id first


async def test_log_counters_per_idp(store: Store) -> None:
    newest = ago(minutes=1)
    await store.append_logs(
        [
            record(ago(days=3), "i1", status=500),
            record(ago(hours=2), "i1"),
            record(ago(hours=1), "i1", status=404),
            record(newest, "i1"),
            record(ago(hours=5), "i2", status=400),
        ]
    )
    counters = await store.log_counters(["i1", "i2", "i3"], ago(days=1))
    assert (counters["i1"].operations, counters["i1"].failures, counters["i1"].last_activity) == (3, 1, newest)
    assert (counters["i2"].operations, counters["i2"].failures) == (1, 1)
    assert (counters["i3"].operations, counters["i3"].failures, counters["i3"].last_activity) == (0, 0, None)
    assert await store.log_counters([], ago(days=1)) == {}


async def test_prune_logs_by_age_and_by_rows(store: Store) -> None:
    await store.append_logs([record(ago(days=40), target="old"), record(ago(days=31), target="older than 30")])
    await store.append_logs([record(ago(days=2, minutes=-i), target=f"recent {i}") for i in range(5)])
    assert await store.prune_logs(0, 0) == 0  # no limits
    assert await store.prune_logs(30, 0) == 2
    records, _ = await store.query_logs(LogQuery())
    assert [r.target for r in records] == [f"recent {i}" for i in reversed(range(5))]
    assert await store.prune_logs(30, 100) == 0
    assert await store.prune_logs(0, 2) == 3  # the newest two kept
    records, _ = await store.query_logs(LogQuery())
    assert [r.target for r in records] == ["recent 4", "recent 3"]
    assert await store.prune_logs(0, 2) == 0


async def test_ignored_attributes_are_summed_per_name_most_requests_first(store: Store) -> None:
    urn = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User:costCenter"
    await store.append_logs(
        [
            record(ago(hours=3), "i1", ignored=f'["{urn}", "nickName"]'),
            record(ago(hours=2), "i1", ignored=f'["{urn}"]'),
            record(ago(hours=1), "i1"),
            record(ago(minutes=5), "i1", ignored='["adresses", "x\\"y"]'),
            record(ago(minutes=1), "i2", ignored=f'["{urn}"]'),
        ]
    )
    summary = await store.ignored_attributes("i1")
    assert [(a.name, a.requests) for a in summary] == [(urn, 2), ("adresses", 1), ("nickName", 1), ('x"y', 1)]
    assert summary[0].first < summary[0].last
    assert [a.name for a in await store.ignored_attributes("i1", limit=2)] == [urn, "adresses"]
    assert [(a.name, a.requests) for a in await store.ignored_attributes("i2")] == [(urn, 1)]
    assert await store.ignored_attributes("i3") == []
    records, _ = await store.query_logs(LogQuery(idp_id="i1", limit=1))
    assert records[0].ignored == '["adresses", "x\\"y"]'  # read back as written


async def test_activity_counts_per_time_bucket_without_probes(store: Store) -> None:
    idp = (await store.create_idp("charted", "key", None)).id
    await store.append_logs(
        [
            record("2026-12-06T10:05:00.000Z", idp),
            record("2026-12-06T10:59:59.999Z", idp, status=409),
            record("2026-12-06T12:00:00.000Z", idp, status=401, operation="Test connection"),  # a probe
            record("2026-12-06T12:30:00.000Z", idp, status=500),
            record("2026-12-06T09:00:00.000Z", idp, status=500),  # before the window
            record("2026-12-06T10:30:00.000Z", "another", status=500),
        ]
    )
    assert await store.activity(idp, "2026-12-06T10:00:00.000Z", 13) == [
        ("2026-12-06T10", 2, 1),
        ("2026-12-06T12", 2, 1),
    ]
    by_minute = await store.activity(idp, "2026-12-06T10:00:00.000Z", 16)
    assert [bucket for bucket, _, _ in by_minute] == [
        "2026-12-06T10:05",
        "2026-12-06T10:59",
        "2026-12-06T12:00",
        "2026-12-06T12:30",
    ]
    assert await store.activity(idp, "2999-01-01T00:00:00.000Z", 13) == []


async def test_records_after_an_id_come_oldest_first(store: Store) -> None:
    await store.append_logs([record(ago(minutes=5), target=f"t{i}") for i in range(5)])
    everything, _ = await store.query_logs(LogQuery())
    second = everything[-2].id  # the second oldest
    newer, more = await store.query_logs(LogQuery(after_id=second, limit=2))
    assert [r.target for r in newer] == ["t2", "t3"] and more
    rest, more = await store.query_logs(LogQuery(after_id=newer[-1].id, limit=2))
    assert [r.target for r in rest] == ["t4"] and not more
    assert await store.query_logs(LogQuery(after_id=rest[-1].id)) == ([], False)


async def test_failure_groups_count_failures_alike(store: Store) -> None:
    idp = (await store.create_idp("grouped", "key", None)).id
    moment = ago(minutes=2)
    await store.append_logs(
        [record(moment, idp, status=429, client="10.0.0.5") for _ in range(4)]
        + [record(moment, idp, status=429, client="10.0.0.6")]  # alone: not a group
        + [record(moment, idp, status=201, client="10.0.0.5") for _ in range(3)]  # successes
        + [record(moment, idp, status=401, operation="Test connection") for _ in range(3)]  # probes
        + [record(ago(days=2), idp, status=429, client="10.0.0.5") for _ in range(9)]  # too old
    )
    groups = await store.failure_groups(ago(hours=1))
    assert [(g.idp_id, g.status, g.client, g.count) for g in groups] == [(idp, 429, "10.0.0.5", 4)]
    assert groups[0].first == groups[0].last == moment
