"""Storage contract, keyset walks (ResourceStore.walk): pages in creation order by position, forward
and backward, filtered, with what comes before and after, under writes between the pages."""

from __future__ import annotations

from scim.filters import parse_filter
from scim.patch import Member
from scim.schemas import USER_TYPE
from storage import Query, Store


def user_doc(name: str, **extra: object) -> dict:
    return {"userName": name, "name": {"givenName": "G", "familyName": "F"}, **extra}


async def walk_all(store: Store, idp: str, count: int, **query: object) -> list[str]:
    """Every page forward, following the last row's position while more follow."""
    seen: list[str] = []
    after = None
    while True:
        page = await store.walk("User", idp, Query(count=count, members=False, after=after, **query))
        seen += [row.doc["userName"] for row in page.rows]
        if not page.more_after:
            return seen
        after = page.rows[-1].position


async def test_a_walk_pages_forward_and_back_in_creation_order(store: Store, idp: str, other_idp: str) -> None:
    names = [f"user{n:02}" for n in range(10)]
    for name in names:
        await store.create("User", idp, user_doc(name), None)
    await store.create("User", other_idp, user_doc("elsewhere"), None)
    first = await store.walk("User", idp, Query(count=4, members=False))
    assert [row.doc["userName"] for row in first.rows] == names[:4]
    assert (first.total, first.more_before, first.more_after) == (10, False, True)
    positions = [row.position for row in first.rows]
    assert all(isinstance(p, int) for p in positions) and positions == sorted(positions)
    second = await store.walk("User", idp, Query(count=4, members=False, after=first.rows[-1].position))
    assert [row.doc["userName"] for row in second.rows] == names[4:8]
    assert (second.more_before, second.more_after) == (True, True)
    last = await store.walk("User", idp, Query(count=4, members=False, after=second.rows[-1].position))
    assert [row.doc["userName"] for row in last.rows] == names[8:]
    assert (last.more_before, last.more_after) == (True, False)
    back = await store.walk("User", idp, Query(count=4, members=False, before=last.rows[0].position))
    assert [row.doc["userName"] for row in back.rows] == names[4:8]
    start = await store.walk("User", idp, Query(count=4, members=False, before=back.rows[0].position))
    assert [row.doc["userName"] for row in start.rows] == names[:4]
    assert (start.more_before, start.more_after) == (False, True)
    past = await store.walk("User", idp, Query(count=4, members=False, after=last.rows[-1].position))
    assert (past.rows, past.total, past.more_before, past.more_after) == ([], 10, True, False)
    assert await walk_all(store, idp, 3) == names


async def test_a_filtered_walk_meets_each_stable_resource_once_under_writes(store: Store, idp: str) -> None:
    ids = {}
    for n in range(12):
        row = await store.create("User", idp, user_doc(f"u{n:02}", title="keep" if n % 2 else "drop"), None)
        ids[n] = row.id
    where = parse_filter('title eq "keep"', USER_TYPE)
    seen: list[str] = []
    page = await store.walk("User", idp, Query(where=where, count=2, members=False))
    seen += [row.doc["userName"] for row in page.rows]
    # Between pages: a stable resource's neighbour deleted, new ones created (after all positions).
    await store.delete("User", idp, ids[5])
    await store.create("User", idp, user_doc("late1", title="keep"), None)
    while page.more_after:
        page = await store.walk("User", idp, Query(where=where, count=2, members=False, after=page.rows[-1].position))
        seen += [row.doc["userName"] for row in page.rows]
        await store.create("User", idp, user_doc(f"late-{len(seen)}", title="keep"), None)
    stable = {"u01", "u03", "u07", "u09", "u11"}
    assert stable <= set(seen)
    assert len(seen) == len(set(seen))
    assert "u05" not in seen and not any(name.startswith("u") and name not in stable for name in seen)


async def test_walking_groups_loads_members_when_asked(store: Store, idp: str) -> None:
    user = await store.create("User", idp, user_doc("m1"), None)
    await store.create("Group", idp, {"displayName": "g1"}, [Member(user.id, "User")])
    page = await store.walk("Group", idp, Query(count=10, members=True))
    assert [row.doc["displayName"] for row in page.rows] == ["g1"]
    assert page.rows[0].members is not None and [m["value"] for m in page.rows[0].members] == [user.id]
