"""Storage contract, a group's members streamed (stream_members): every member once, in get()'s order,
MEMBER_CHUNK at a time, from one snapshot coherent with the row's version, and nothing held once the
stream is closed, also when it is closed before its end."""

from __future__ import annotations

import asyncio

import orjson

from scim.patch import Member, MemberOp
from storage import Change, MemberStream, Row, Store
from storage.records import MEMBER_CHUNK


def encode(members: list[dict]) -> bytes:
    return orjson.dumps(members)


async def users(store: Store, idp: str, count: int, prefix: str = "member") -> list[Row]:
    made: list[Row] = []
    for start in range(0, count, 500):
        made += await asyncio.gather(
            *(
                store.create("User", idp, {"userName": f"{prefix}{i:05d}@x"})
                for i in range(start, min(count, start + 500))
            )
        )
    return made


async def read_all(stream: MemberStream) -> list[list[dict]]:
    try:
        return [orjson.loads(chunk) async for chunk in stream.chunks]
    finally:
        await stream.aclose()


async def test_the_stream_lists_every_member_as_get_does_a_chunk_at_a_time(store: Store, idp: str) -> None:
    people = await users(store, idp, 2 * MEMBER_CHUNK + 3)
    nested = await store.create("Group", idp, {"displayName": "Nested"})
    group = await store.create(
        "Group",
        idp,
        {"displayName": "Everyone"},
        [*(Member(u.id, "User") for u in people), Member(nested.id, "Group")],
    )
    stream = await store.stream_members(idp, group.id, encode)
    assert stream is not None
    assert (stream.row.id, stream.row.doc, stream.row.version, stream.row.created, stream.row.modified) == (
        group.id,
        {"displayName": "Everyone"},
        group.version,
        group.created,
        group.modified,
    )
    assert stream.row.members is None
    chunks = await read_all(stream)
    assert [len(chunk) for chunk in chunks] == [MEMBER_CHUNK, MEMBER_CHUNK, 4]
    got = await store.get("Group", idp, group.id)
    assert got is not None
    assert [m for chunk in chunks for m in chunk] == got.members
    assert got.members is not None and got.members == sorted(got.members, key=lambda m: m["value"])
    assert {"value": nested.id, "type": "Group", "display": "Nested"} in got.members
    assert {"value": people[5].id, "type": "User", "display": "member00005@x"} in got.members


async def test_a_group_whose_members_fill_whole_chunks_ends_without_an_empty_one(store: Store, idp: str) -> None:
    people = await users(store, idp, MEMBER_CHUNK)
    group = await store.create("Group", idp, {"displayName": "Exact"}, [Member(u.id, "User") for u in people])
    stream = await store.stream_members(idp, group.id, encode)
    assert stream is not None
    assert [len(chunk) for chunk in await read_all(stream)] == [MEMBER_CHUNK]


async def test_a_group_without_members_streams_no_chunk_and_unknown_groups_none(
    store: Store, idp: str, other_idp: str
) -> None:
    group = await store.create("Group", idp, {"displayName": "Empty"})
    stream = await store.stream_members(idp, group.id, encode)
    assert stream is not None and stream.row.version == 1
    assert await read_all(stream) == []
    assert await store.stream_members(other_idp, group.id, encode) is None
    assert await store.stream_members(idp, "no-such-group", encode) is None
    user = await store.create("User", idp, {"userName": "not-a-group@x"})
    assert await store.stream_members(idp, user.id, encode) is None


async def test_the_stream_reads_one_snapshot_whatever_is_written_meanwhile(store: Store, idp: str) -> None:
    people = await users(store, idp, MEMBER_CHUNK + 10)
    group = await store.create("Group", idp, {"displayName": "Before"}, [Member(u.id, "User") for u in people])
    stream = await store.stream_members(idp, group.id, encode)
    assert stream is not None
    try:
        first = orjson.loads(await anext(stream.chunks))
        # Meanwhile: the last members leave, a newcomer joins, the group and a member are renamed.
        newcomer = await store.create("User", idp, {"userName": "newcomer@x"})
        ops = [MemberOp("remove", tuple(Member(u.id) for u in people[-10:])), MemberOp("add", (Member(newcomer.id),))]
        await store.update("Group", idp, group.id, lambda row: Change(doc={"displayName": "After"}, member_ops=ops))
        last = people[-11]
        await store.update("User", idp, last.id, lambda row: Change(doc={"userName": "renamed@x"}))
        rest = [orjson.loads(chunk) async for chunk in stream.chunks]
    finally:
        await stream.aclose()
    streamed = first + [m for chunk in rest for m in chunk]
    assert stream.row.version == group.version and stream.row.doc == {"displayName": "Before"}
    assert [m["value"] for m in streamed] == sorted(u.id for u in people)
    assert {"value": last.id, "type": "User", "display": last.doc["userName"]} in streamed
    after = await store.stream_members(idp, group.id, encode)
    assert after is not None and after.row.version == group.version + 1
    now_listed = [m for chunk in await read_all(after) for m in chunk]
    assert newcomer.id in {m["value"] for m in now_listed} and len(now_listed) == MEMBER_CHUNK + 1
    assert {"value": last.id, "type": "User", "display": "renamed@x"} in now_listed


async def test_streams_closed_before_their_end_give_their_readers_back(store: Store, idp: str) -> None:
    people = await users(store, idp, MEMBER_CHUNK + 1)
    group = await store.create("Group", idp, {"displayName": "Big"}, [Member(u.id, "User") for u in people])
    # More streams than any backend has readers or pooled connections: each one left open would
    # hold one, and the next would wait for it (or fail) instead of opening.
    for round_ in range(3):
        for _ in range(12):
            stream = await asyncio.wait_for(store.stream_members(idp, group.id, encode), 10)
            assert stream is not None
            if round_:
                assert len(orjson.loads(await anext(stream.chunks))) == MEMBER_CHUNK
            await stream.aclose()
            await stream.aclose()  # again: harmless
        held = [await asyncio.wait_for(store.stream_members(idp, group.id, encode), 10) for _ in range(3)]
        for stream in held:
            assert stream is not None
            await stream.aclose()
    await store.update("Group", idp, group.id, lambda row: Change(doc={"displayName": "Still writable"}))
    stream = await store.stream_members(idp, group.id, encode)
    assert stream is not None and stream.row.doc == {"displayName": "Still writable"}
    assert sum(len(chunk) for chunk in await read_all(stream)) == MEMBER_CHUNK + 1
