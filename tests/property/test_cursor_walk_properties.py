"""Keyset walks under concurrent writes (ResourceStore.walk, behind RFC 9865 cursors): whatever is
created and deleted between pages, a walk forward or back meets every resource that exists from its
start to its end exactly once, and never one resource twice. On each backend."""

from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Query, Store
from tests.conftest import Tenant

EXAMPLES = int(os.environ.get("SCIMLET_PROPERTY_EXAMPLES", "150")) // 3
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Between two pages: how many users to create, and which of the users there are to delete (by index).
writes = st.lists(st.tuples(st.integers(0, 4), st.lists(st.integers(0, 200), max_size=4)), min_size=1, max_size=12)


async def make(store: Store, idp: str, name: str) -> str:
    doc = {"userName": name, "name": {"givenName": "G", "familyName": "F"}}
    return (await store.create("User", idp, doc, None)).id


@PROPERTY
@given(
    stable=st.integers(0, 25),
    doomed=st.integers(0, 10),
    count=st.integers(1, 6),
    between=writes,
    backward=st.booleans(),
)
async def test_a_walk_meets_each_stable_resource_exactly_once(
    tenant: Tenant, stable: int, doomed: int, count: int, between: list, backward: bool
) -> None:
    store = tenant.store
    idp = (await store.create_idp(f"walk {uuid.uuid4().hex}", "key", None)).id
    kept = [await make(store, idp, f"s{n}") for n in range(stable)]
    deletable = [await make(store, idp, f"d{n}") for n in range(doomed)]
    seen: list[str] = []
    step = 0
    page = await store.walk("User", idp, Query(count=count, members=False, before=2**62 if backward else None))
    while True:
        seen += [row.id for row in page.rows]
        # Writes between the first pages only: a walk slower than the creates would never end.
        created, deletes = between[step] if step < len(between) else (0, [])
        step += 1
        for n in range(created):
            deletable.append(await make(store, idp, f"n{step}-{n}"))
        for index in deletes:
            if deletable:
                await store.delete("User", idp, deletable.pop(index % len(deletable)))
        more = page.more_before if backward else page.more_after
        if not more or not page.rows:
            break
        if backward:
            keyset = Query(count=count, members=False, before=page.rows[0].position)
        else:
            keyset = Query(count=count, members=False, after=page.rows[-1].position)
        page = await store.walk("User", idp, keyset)
    assert len(seen) == len(set(seen)), "a resource was met twice"
    assert set(kept) <= set(seen), "a resource that existed throughout was skipped"
