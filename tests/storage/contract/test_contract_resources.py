"""Storage contract, SCIM resources: create, get, search, update, delete, members, and their rules
under concurrency (names unique per IdP regardless of ASCII case, versions, deltas, preconditions)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import pytest

from scim.errors import ScimError
from scim.extensions import parse_declarations
from scim.filters import format_datetime, parse_filter
from scim.patch import Member, MemberOp
from scim.paths import resolve_text
from scim.schemas import GROUP_TYPE, USER_TYPE
from scim.tenant import tenant
from scim.validate import server_unique
from storage import Change, Query, Row, Store, UniqueValue
from tests.backends import open_store


def user_doc(name: str, **extra: object) -> dict:
    return {"userName": name, "name": {"givenName": "G", "familyName": "F"}, **extra}


def ids(rows: list[Row]) -> list[str]:
    return [row.id for row in rows]


def member_ids(row: Row) -> set[str]:
    assert row.members is not None
    return {m["value"] for m in row.members}


def precondition(version: int):
    """A change function that checks the version first, as an If-Match request's does."""

    def check(current: Row) -> None:
        if current.version != version:
            raise ScimError(412, f"version {current.version}, not {version}")

    return check


async def search_users(store: Store, idp: str, text: str | None = None, **query: object) -> tuple[int, list[Row]]:
    where = None if text is None else parse_filter(text, USER_TYPE)
    return await store.search("User", idp, Query(where=where, **query))  # type: ignore[arg-type]


async def test_create_returns_the_stored_row_and_get_reads_it_back(store: Store, idp: str, other_idp: str) -> None:
    row = await store.create("User", idp, user_doc("Alice", externalId="e1"))
    assert row.version == 1 and row.groups == [] and row.doc == user_doc("Alice", externalId="e1")
    assert row.created == row.modified == format_datetime(datetime.fromisoformat(row.created))  # UTC ms Z
    got = await store.get("User", idp, row.id)
    assert got is not None
    assert (got.id, got.doc, got.version, got.created, got.modified, got.groups) == (
        row.id,
        row.doc,
        1,
        row.created,
        row.modified,
        [],
    )
    assert await store.get("User", other_idp, row.id) is None  # tenants never see each other
    assert await store.get("User", idp, str(uuid.uuid4())) is None
    assert await store.get("Group", idp, row.id) is None  # a user is no group
    encoded = await store.get("User", idp, row.id, encode=lambda r: json.dumps(r.doc).encode())
    assert encoded is not None and json.loads(encoded.encoded or b"") == row.doc
    bare = await store.get("User", idp, row.id, members=False)
    assert bare is not None and bare.groups is None


async def test_documents_keep_every_json_type_and_text(store: Store, idp: str) -> None:
    doc = user_doc(
        'ünïcödé \U0001f600 "quoted" \\back',
        title="",
        active=False,
        nickName=None,
        emails=[{"value": "a@x", "primary": True}, {"value": "b@x"}],
        x={"n": 1.5, "big": 2**53, "neg": -1, "nested": [[], {}]},
    )
    row = await store.create("User", idp, doc)
    got = await store.get("User", idp, row.id)
    assert got is not None and got.doc == doc


async def test_ids_are_uuid7_in_creation_order(store: Store, idp: str) -> None:
    rows = []
    for i in range(3):
        rows.append(await store.create("User", idp, user_doc(f"order{i}")))
        await asyncio.sleep(0.002)  # ids order by millisecond
    parsed = [uuid.UUID(row.id) for row in rows]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids(rows) == sorted(ids(rows)) and len(set(ids(rows))) == 3


@pytest.mark.parametrize("rtype, attribute", [("User", "userName"), ("Group", "displayName")])
async def test_names_are_unique_per_idp_regardless_of_ascii_case(
    store: Store, idp: str, other_idp: str, rtype: str, attribute: str
) -> None:
    first = await store.create(rtype, idp, {attribute: "Alice.Smith@Contoso.com"})
    for taken in ["alice.smith@contoso.com", "ALICE.SMITH@CONTOSO.COM", "Alice.Smith@Contoso.com"]:
        with pytest.raises(ScimError) as err:
            await store.create(rtype, idp, {attribute: taken})
        assert err.value.status == 409 and err.value.scim_type == "uniqueness"
        assert attribute in err.value.detail and "letter case" in err.value.detail
    other = await store.create(rtype, other_idp, {attribute: "alice.smith@contoso.com"})  # another IdP
    assert other.id != first.id
    # Only ASCII letters fold: these are different names (as the filters compare them).
    for distinct in ["ÄLICE", "älice", "Straße", "STRASSE", "ǅ"]:
        await store.create(rtype, idp, {attribute: distinct})
    with pytest.raises(ScimError):
        await store.create(rtype, idp, {attribute: "äLICE"})  # folds to "älice"
    rows = (await store.search(rtype, idp, Query()))[1]
    assert len(rows) == 6


async def test_a_rename_to_a_taken_name_is_refused_and_changes_nothing(store: Store, idp: str) -> None:
    await store.create("User", idp, user_doc("taken"))
    row = await store.create("User", idp, user_doc("mine"))
    with pytest.raises(ScimError) as err:
        await store.update("User", idp, row.id, lambda current: Change(doc={**current.doc, "userName": "TAKEN"}))
    assert err.value.status == 409 and err.value.scim_type == "uniqueness"
    after = await store.get("User", idp, row.id)
    assert after is not None and after.doc["userName"] == "mine" and after.version == 1
    renamed = await store.update("User", idp, row.id, lambda current: Change(doc={**current.doc, "userName": "MINE"}))
    assert renamed.doc["userName"] == "MINE" and renamed.version == 2  # its own name in another case


async def test_concurrent_creates_of_one_name_in_mixed_case_give_exactly_one_row(store: Store, idp: str) -> None:
    names = ["Zed", "zed", "ZED", "zEd"] * 10
    results = await asyncio.gather(*[store.create("User", idp, user_doc(n)) for n in names], return_exceptions=True)
    created = [r for r in results if isinstance(r, Row)]
    refused = [r for r in results if isinstance(r, ScimError) and r.status == 409 and r.scim_type == "uniqueness"]
    assert len(created) == 1 and len(refused) == 39, results
    total, rows = await search_users(store, idp)
    assert total == 1 and ids(rows) == ids(created)


async def test_a_failing_write_among_concurrent_ones_leaves_the_others_stored(store: Store, idp: str) -> None:
    await store.create("User", idp, user_doc("taken"))
    results = await asyncio.gather(
        store.create("User", idp, user_doc("a")),
        store.create("User", idp, user_doc("taken")),
        store.create("User", idp, user_doc("b")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Row", "ScimError", "Row"]
    assert (await search_users(store, idp))[0] == 3


ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
UNIQUE_BADGE = tenant(
    "rfc7643",
    False,
    json.dumps(
        parse_declarations(
            [
                {
                    "id": ACME,
                    "attributes": [
                        {"name": "badge", "type": "integer", "uniqueness": "server"},
                        {"name": "code", "uniqueness": "server"},
                    ],
                }
            ]
        )
    ),
).user


def badge_doc(name: str, badge: int, code: str = "") -> dict:
    return {"userName": name, ACME: {"badge": badge, **({"code": code} if code else {})}}


def unique_of(doc: dict) -> tuple[UniqueValue, ...]:
    return tuple(UniqueValue(where, detail) for where, detail in server_unique(UNIQUE_BADGE, doc))


async def test_declared_unique_values_are_refused_when_another_resource_holds_them(
    store: Store, idp: str, other_idp: str
) -> None:
    first = badge_doc("a", 7, "x-1")
    await store.create("User", idp, first, unique=unique_of(first))
    for taken in (badge_doc("b", 7), badge_doc("b", 8, "X-1")):  # the code in another case: caseExact is false
        with pytest.raises(ScimError) as err:
            await store.create("User", idp, taken, unique=unique_of(taken))
        assert (
            err.value.status == 409
            and err.value.scim_type == "uniqueness"
            and "already another User's" in err.value.detail
        )
    assert (await search_users(store, idp))[0] == 1
    elsewhere = badge_doc("a", 7, "x-1")  # another IdP's users are apart
    await store.create("User", other_idp, elsewhere, unique=unique_of(elsewhere))
    second = badge_doc("b", 8)
    row = await store.create("User", idp, second, unique=unique_of(second))

    def take(badge: int):
        def change(current: Row) -> Change:
            doc = {**current.doc, ACME: {"badge": badge}, "title": f"t{badge}"}
            return Change(doc=doc, unique=unique_of(doc))

        return change

    with pytest.raises(ScimError) as err:
        await store.update("User", idp, row.id, take(7))
    assert err.value.status == 409
    after = await store.get("User", idp, row.id)
    assert after is not None and after.doc == second and after.version == 1
    kept = await store.update("User", idp, row.id, take(8))  # its own value is no conflict
    assert kept.version == 2 and kept.doc["title"] == "t8" and kept.groups == []


async def test_concurrent_creates_of_one_unique_value_give_exactly_one_row(
    store: Store, idp: str, database_url: str
) -> None:
    other = await open_store(database_url)  # another instance on the same database
    try:
        docs = [badge_doc(f"u{n}", 42) for n in range(20)]
        results = await asyncio.gather(
            *[
                (store if n % 2 else other).create("User", idp, doc, unique=unique_of(doc))
                for n, doc in enumerate(docs)
            ],
            return_exceptions=True,
        )
    finally:
        await other.close()
    created = [r for r in results if isinstance(r, Row)]
    refused = [r for r in results if isinstance(r, ScimError) and r.status == 409]
    assert len(created) == 1 and len(refused) == 19, results
    assert (await search_users(store, idp))[0] == 1


async def test_a_write_to_an_unknown_idp_is_refused(store: Store) -> None:
    with pytest.raises(ScimError) as err:
        await store.create("User", "no-such-idp", user_doc("x"))
    assert err.value.status == 401
    with pytest.raises(ScimError) as missing:
        await store.update("User", "no-such-idp", str(uuid.uuid4()), lambda current: Change())
    assert missing.value.status == 401


async def test_update_bumps_the_version_only_on_a_real_change(store: Store, idp: str) -> None:
    row = await store.create("User", idp, user_doc("u"))
    same = await store.update("User", idp, row.id, lambda current: Change(doc=dict(current.doc)))
    assert same.version == 1 and same.modified == row.modified
    kept = await store.update("User", idp, row.id, lambda current: Change())  # no document: kept
    assert kept.version == 1 and kept.doc == row.doc
    await asyncio.sleep(0.002)
    changed = await store.update("User", idp, row.id, lambda current: Change(doc={**current.doc, "title": "T"}))
    assert changed.version == 2 and changed.doc["title"] == "T" and changed.modified > row.modified
    assert changed.created == row.created and changed.groups == []
    got = await store.get("User", idp, row.id)
    assert got is not None and (got.version, got.doc, got.modified) == (2, changed.doc, changed.modified)
    with pytest.raises(ScimError) as err:
        await store.update("User", idp, str(uuid.uuid4()), lambda current: Change())
    assert err.value.status == 404


async def test_the_change_function_sees_the_current_row(store: Store, idp: str) -> None:
    row = await store.create("User", idp, user_doc("u", title="t1"))
    await store.update("User", idp, row.id, lambda current: Change(doc={**current.doc, "title": "t2"}))
    seen: list[Row] = []

    def change(current: Row) -> Change:
        seen.append(current)
        return Change()

    await store.update("User", idp, row.id, change)
    assert seen[0].doc["title"] == "t2" and seen[0].version == 2 and seen[0].id == row.id


async def test_a_failed_precondition_changes_nothing(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    group = await store.create("Group", idp, {"displayName": "g"})
    await store.update("Group", idp, group.id, lambda current: Change(doc={"displayName": "g2"}))

    def stale(current: Row) -> Change:
        precondition(1)(current)  # the client read version 1; it is 2 now
        return Change(doc={"displayName": "g3"}, member_ops=[MemberOp("add", (Member(user.id),))])

    with pytest.raises(ScimError) as err:
        await store.update("Group", idp, group.id, stale)
    assert err.value.status == 412
    after = await store.get("Group", idp, group.id)
    assert after is not None and after.doc == {"displayName": "g2"} and after.members == [] and after.version == 2


async def test_an_exception_from_the_change_function_changes_nothing(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    group = await store.create("Group", idp, {"displayName": "g"})

    def unknown_member(current: Row) -> Change:
        return Change(doc={"displayName": "renamed"}, member_ops=[MemberOp("add", (Member(user.id), Member("nope")))])

    with pytest.raises(ScimError) as err:
        await store.update("Group", idp, group.id, unknown_member)
    assert err.value.status == 400 and err.value.scim_type == "invalidValue" and "nope" in err.value.detail
    after = await store.get("Group", idp, group.id)
    assert after is not None and after.doc == {"displayName": "g"} and after.members == [] and after.version == 1


async def test_concurrent_if_match_updates_let_exactly_one_through(store: Store, idp: str) -> None:
    row = await store.create("User", idp, user_doc("u"))

    def titled(i: int):
        def change(current: Row) -> Change:
            precondition(1)(current)
            return Change(doc={**current.doc, "title": f"writer {i}"})

        return change

    results = await asyncio.gather(
        *[store.update("User", idp, row.id, titled(i)) for i in range(10)], return_exceptions=True
    )
    won = [r for r in results if isinstance(r, Row)]
    assert len(won) == 1 and all(isinstance(r, ScimError) and r.status == 412 for r in results if r not in won)
    after = await store.get("User", idp, row.id)
    assert after is not None and after.version == 2 and after.doc["title"] == won[0].doc["title"]


async def test_filtered_columns_follow_every_kind_of_update(store: Store, idp: str) -> None:
    row = await store.create("User", idp, user_doc("Col@x", externalId="e1", active=True))

    async def found(text: str) -> list[str]:
        return ids((await search_users(store, idp, text))[1])

    async def change(**fields: object) -> None:
        await store.update("User", idp, row.id, lambda current: Change(doc={**current.doc, **fields}))

    await change(title="only the document")
    assert await found('externalId eq "e1" and active eq true and userName eq "col@x"') == [row.id]
    await change(active=False)
    assert await found("active eq true") == [] and await found("active eq false") == [row.id]
    await change(userName="Renamed@x", externalId="e2")
    assert await found('userName eq "col@x"') == [] and await found('userName eq "renamed@x"') == [row.id]
    assert await found('externalId eq "e1"') == [] and await found('externalId eq "e2"') == [row.id]
    await store.create("User", idp, user_doc("col@x"))  # the old name is free again


async def test_members_are_added_removed_replaced_and_cleared_as_deltas(store: Store, idp: str) -> None:
    users = [await store.create("User", idp, user_doc(f"u{i}")) for i in range(5)]
    child = await store.create("Group", idp, {"displayName": "child"})
    group = await store.create("Group", idp, {"displayName": "g"}, [Member(u.id) for u in users[:3]])
    assert member_ids(group) == {u.id for u in users[:3]} and group.version == 1
    by_id = {m["value"]: m for m in group.members or []}
    assert by_id[users[0].id] == {"value": users[0].id, "type": "User", "display": "u0"}

    async def apply(*ops: MemberOp) -> Row:
        return await store.update("Group", idp, group.id, lambda current: Change(member_ops=list(ops)))

    updated = await apply(MemberOp("remove", (Member(users[0].id),)), MemberOp("add", (Member(users[4].id, "User"),)))
    assert member_ids(updated) == {users[1].id, users[2].id, users[4].id} and updated.version == 2
    again = await apply(MemberOp("add", (Member(users[4].id),)), MemberOp("remove", (Member(users[0].id),)))
    assert again.version == 2  # adding a member it has and removing one it lacks change nothing
    nested = await apply(MemberOp("add", (Member(child.id, "Group"),)))
    assert {m["value"]: m["type"] for m in nested.members or []}[child.id] == "Group"
    replaced = await apply(MemberOp("replace", (Member(users[0].id), Member(users[1].id), Member(users[0].id))))
    assert member_ids(replaced) == {users[0].id, users[1].id} and replaced.version == 4
    cleared = await apply(MemberOp("clear"))
    assert cleared.members == [] and cleared.version == 5
    assert (await apply(MemberOp("clear"))).version == 5
    for wrong in [
        MemberOp("add", (Member(users[3].id, "Group"),)),  # a user declared a group
        MemberOp("add", (Member(group.id),)),  # itself
        MemberOp("add", (Member(str(uuid.uuid4())),)),  # unknown
    ]:
        with pytest.raises(ScimError) as err:
            await apply(wrong)
        assert err.value.status == 400 and err.value.scim_type == "invalidValue"
    assert (await store.get("Group", idp, group.id)).version == 5  # type: ignore[union-attr]


async def test_members_must_be_in_the_same_idp(store: Store, idp: str, other_idp: str) -> None:
    stranger = await store.create("User", other_idp, user_doc("stranger"))
    with pytest.raises(ScimError) as err:
        await store.create("Group", idp, {"displayName": "g"}, [Member(stranger.id)])
    assert err.value.status == 400 and err.value.scim_type == "invalidValue"
    assert (await store.search("Group", idp, Query()))[0] == 0  # the create stored nothing


async def test_concurrent_member_deltas_lose_nothing(store: Store, idp: str) -> None:
    users = [await store.create("User", idp, user_doc(f"m{i}")) for i in range(20)]
    group = await store.create("Group", idp, {"displayName": "g"})

    async def delta(op: str, user: Row) -> Row:
        return await store.update(
            "Group", idp, group.id, lambda current: Change(member_ops=[MemberOp(op, (Member(user.id),))])
        )

    await asyncio.gather(*[delta("add", u) for u in users])
    after = await store.get("Group", idp, group.id)
    assert after is not None and member_ids(after) == {u.id for u in users} and after.version == 21
    await asyncio.gather(*[delta("remove", u) for u in users[:10]])
    after = await store.get("Group", idp, group.id)
    assert after is not None and member_ids(after) == {u.id for u in users[10:]} and after.version == 31


async def test_a_user_reads_its_direct_and_nested_groups(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    inner = await store.create("Group", idp, {"displayName": "inner"}, [Member(user.id)])
    outer = await store.create("Group", idp, {"displayName": "outer"}, [Member(inner.id)])
    got = await store.get("User", idp, user.id)
    assert got is not None and got.groups == [
        {"value": inner.id, "display": "inner", "type": "direct"},
        {"value": outer.id, "display": "outer", "type": "indirect"},
    ]
    total, rows = await search_users(store, idp, 'userName eq "u"')
    assert total == 1 and rows[0].groups == got.groups
    updated = await store.update("User", idp, user.id, lambda current: Change(doc={**current.doc, "title": "t"}))
    assert updated.groups == got.groups


async def test_deleting_a_member_bumps_its_groups_versions(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    kept = await store.create("User", idp, user_doc("kept"))
    group = await store.create("Group", idp, {"displayName": "g"}, [Member(user.id), Member(kept.id)])
    untouched = await store.create("Group", idp, {"displayName": "other"}, [Member(kept.id)])
    parent = await store.create("Group", idp, {"displayName": "parent"}, [Member(group.id)])
    await asyncio.sleep(0.002)
    await store.delete("User", idp, user.id)
    after = await store.get("Group", idp, group.id)
    assert after is not None and member_ids(after) == {kept.id}
    assert after.version == 2 and after.modified > group.modified
    assert (await store.get("Group", idp, untouched.id)).version == 1  # type: ignore[union-attr]
    await store.delete("Group", idp, group.id)
    parent_after = await store.get("Group", idp, parent.id)
    assert parent_after is not None and parent_after.members == [] and parent_after.version == 2
    kept_after = await store.get("User", idp, kept.id)
    assert kept_after is not None and [g["value"] for g in kept_after.groups or []] == [untouched.id]


async def test_delete_removes_the_row_and_checks_first(store: Store, idp: str, other_idp: str) -> None:
    row = await store.create("User", idp, user_doc("u"))
    with pytest.raises(ScimError) as refused:
        await store.delete("User", idp, row.id, precondition(7))
    assert refused.value.status == 412
    assert await store.get("User", idp, row.id) is not None  # the check failed: nothing deleted
    with pytest.raises(ScimError) as elsewhere:
        await store.delete("User", other_idp, row.id)
    assert elsewhere.value.status == 404
    checked: list[Row] = []
    await store.delete("User", idp, row.id, checked.append)
    assert ids(checked) == [row.id] and checked[0].version == 1
    assert await store.get("User", idp, row.id) is None
    with pytest.raises(ScimError) as again:
        await store.delete("User", idp, row.id)
    assert again.value.status == 404
    await store.create("User", idp, user_doc("U"))  # the name is free again
    with pytest.raises(ScimError) as no_idp:
        await store.delete("User", "no-such-idp", row.id)
    assert no_idp.value.status == 401


async def test_search_pages_sorts_and_counts(store: Store, idp: str) -> None:
    for name in ["c", "A", "b", "e", "D"]:
        await store.create("User", idp, user_doc(name))
    by_name = resolve_text(USER_TYPE, "userName")
    total, rows = await search_users(store, idp, "userName pr", start_index=2, count=2, sort_by=by_name)
    assert total == 5 and [r.doc["userName"] for r in rows] == ["b", "c"]  # ASCII case folded
    total, rows = await search_users(store, idp, sort_by=by_name, descending=True)
    assert [r.doc["userName"] for r in rows] == ["e", "D", "c", "b", "A"]
    total, rows = await search_users(store, idp)
    assert total == 5 and [r.doc["userName"] for r in rows] == ["c", "A", "b", "e", "D"]  # creation order
    assert await search_users(store, idp, start_index=9) == (5, [])
    total, rows = await search_users(store, idp, count=0)
    assert total == 5 and rows == []
    total, rows = await search_users(store, idp, 'userName sw "z"')
    assert (total, rows) == (0, [])
    total, rows = await search_users(store, idp, count=2, start_index=5)
    assert total == 5 and len(rows) == 1


async def test_search_ends_a_page_at_max_bytes_with_at_least_one_row(store: Store, idp: str) -> None:
    for i in range(5):
        await store.create("User", idp, user_doc(f"u{i}", title="x" * 100))

    def encode(row: Row) -> bytes:
        return json.dumps(row.doc).encode()

    size = len(encode(Row("", user_doc("u0", title="x" * 100), 1, "", "")))
    total, rows = await store.search("User", idp, Query(max_bytes=size * 2 + 1), encode)
    assert total == 5 and len(rows) == 2 and all(json.loads(r.encoded or b"") == r.doc for r in rows)
    total, rows = await store.search("User", idp, Query(max_bytes=1), encode)
    assert total == 5 and len(rows) == 1


async def test_search_by_member_and_without_loading_members(store: Store, idp: str) -> None:
    users = [await store.create("User", idp, user_doc(f"u{i}")) for i in range(2)]
    group = await store.create("Group", idp, {"displayName": "g"}, [Member(users[0].id)])
    await store.create("Group", idp, {"displayName": "empty"})
    where = parse_filter(f'members eq "{users[0].id}"', GROUP_TYPE)
    total, rows = await store.search("Group", idp, Query(where=where, members=False))
    assert total == 1 and ids(rows) == [group.id] and rows[0].members is None
    total, rows = await store.search("Group", idp, Query(where=parse_filter('displayName eq "G"', GROUP_TYPE)))
    assert total == 1 and member_ids(rows[0]) == {users[0].id}
    total, rows = await search_users(store, idp, f'groups eq "{group.id}"')
    assert ids(rows) == [users[0].id]


async def test_counts_per_idp(store: Store, idp: str, other_idp: str) -> None:
    assert await store.counts(idp) == {"users": 0, "groups": 0}
    for i in range(3):
        await store.create("User", idp, user_doc(f"u{i}"))
    await store.create("Group", idp, {"displayName": "g"})
    await store.create("User", other_idp, user_doc("x"))
    assert await store.counts(idp) == {"users": 3, "groups": 1}
    assert await store.counts(other_idp) == {"users": 1, "groups": 0}


async def test_members_show_their_current_names(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("before"))
    child = await store.create("Group", idp, {"displayName": "child before"})
    group = await store.create("Group", idp, {"displayName": "g"}, [Member(user.id), Member(child.id)])
    await store.update("User", idp, user.id, lambda current: Change(doc={**current.doc, "userName": "after"}))
    await store.update("Group", idp, child.id, lambda current: Change(doc={"displayName": "child after"}))
    after = await store.get("Group", idp, group.id)
    assert after is not None and after.version == 1  # a member's rename is no change of the group
    assert sorted(m["display"] for m in after.members or []) == ["after", "child after"]
    user_row = await store.get("User", idp, user.id)
    assert user_row is not None and user_row.groups == [{"value": group.id, "display": "g", "type": "direct"}]


async def test_nested_groups_in_a_cycle_list_each_group_once(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    first = await store.create("Group", idp, {"displayName": "first"}, [Member(user.id)])
    second = await store.create("Group", idp, {"displayName": "second"}, [Member(first.id)])
    await store.update(
        "Group", idp, first.id, lambda current: Change(member_ops=[MemberOp("add", (Member(second.id),))])
    )
    got = await store.get("User", idp, user.id)
    assert got is not None and got.groups == [
        {"value": first.id, "display": "first", "type": "direct"},
        {"value": second.id, "display": "second", "type": "indirect"},
    ]


async def test_a_user_in_more_groups_than_an_answer_lists_is_read_as_too_many(database_url: str) -> None:
    store = await open_store(database_url, scim_max_user_groups="2")
    try:
        idp = (await store.create_idp("i", "", None)).id
        user = await store.create("User", idp, user_doc("u"))
        for name in ["a", "b"]:
            await store.create("Group", idp, {"displayName": name}, [Member(user.id)])
        got = await store.get("User", idp, user.id)
        assert got is not None and len(got.groups or []) == 2  # at the limit: listed
        await store.create("Group", idp, {"displayName": "c"}, [Member(user.id)])
        with pytest.raises(ScimError) as err:
            await store.get("User", idp, user.id)
        assert err.value.status == 400 and err.value.scim_type == "tooMany" and "max_user_groups" in err.value.detail
        bare = await store.get("User", idp, user.id, members=False)
        assert bare is not None and bare.groups is None
        updated = await store.update("User", idp, user.id, lambda current: Change(doc={**current.doc, "title": "t"}))
        assert updated.version == 2 and updated.groups is None  # written; its groups not listed
        total, rows = await store.search("User", idp, Query(members=False))
        assert total == 1 and rows[0].groups is None
    finally:
        await store.close()


async def test_reads_encode_rows_where_they_read_them(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("u"))
    group = await store.create("Group", idp, {"displayName": "g"}, [Member(user.id)])

    def encode(row: Row) -> bytes:
        return json.dumps({"id": row.id, "members": row.members, "groups": row.groups}).encode()

    got = await store.get("Group", idp, group.id, encode=encode)
    assert got is not None and json.loads(got.encoded or b"")["members"] == got.members == group.members
    total, rows = await store.search("User", idp, Query(), encode)
    assert json.loads(rows[0].encoded or b"")["groups"] == [{"value": group.id, "display": "g", "type": "direct"}]
    updated = await store.update("Group", idp, group.id, lambda current: Change(), members=False)
    assert updated.members is None and updated.version == 1


async def test_writes_waiting_beyond_max_write_queue_are_refused_with_429(database_url: str) -> None:
    store = await open_store(database_url, scim_max_write_queue="1")
    try:
        idp = (await store.create_idp("i", "", None)).id
        results = await asyncio.gather(
            *[store.create("User", idp, user_doc(f"u{i}")) for i in range(50)], return_exceptions=True
        )
        busy = [r for r in results if isinstance(r, ScimError) and r.status == 429]
        created = [r for r in results if isinstance(r, Row)]
        assert busy and len(busy) + len(created) == 50, results
        total, rows = await store.search("User", idp, Query())
        assert total == len(created) and {r.id for r in rows} == set(ids(created))  # a refused write stored nothing
        assert store.write_queue_depth == 0
        await store.create("User", idp, user_doc("after the burst"))
    finally:
        await store.close()


async def test_a_full_page_counts_every_match_before_in_and_after_it(store: Store, idp: str, other_idp: str) -> None:
    created = []
    for i in range(6):
        created.append(await store.create("User", idp, user_doc(f"u{i}")))
        await store.create("User", other_idp, user_doc(f"u{i}"))  # positions of the two IdPs interleave
    await store.delete("User", idp, created[2].id)
    total, rows = await search_users(store, idp, count=2)
    assert total == 5 and ids(rows) == ids(created[:2])
    total, rows = await search_users(store, idp, 'userName sw "u"', start_index=2, count=2)
    assert total == 5 and ids(rows) == [created[1].id, created[3].id]
    total, rows = await search_users(store, idp, start_index=3, count=2)
    assert total == 5 and ids(rows) == [created[3].id, created[4].id]
    total, rows = await search_users(store, idp, 'userName ne "u5"', start_index=3, count=2)
    assert total == 4 and ids(rows) == [created[3].id, created[4].id]
