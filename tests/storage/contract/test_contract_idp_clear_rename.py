"""Storage contract: clearing an IdP's users and groups, and renaming an IdP, on every backend."""

from __future__ import annotations

from unittest import mock

import pytest

from scim.patch import Member
from storage import Query, Store
from storage.errors import AdminError


def user_doc(name: str) -> dict:
    return {"userName": name}


async def test_clearing_an_idp_deletes_its_resources_and_keeps_the_idp(store: Store) -> None:
    _, secret = await store.create_api_key("k", "", True, True)
    idp = await store.create_idp("cleared", "cloud", "k")
    other = await store.create_idp("other", "key", None)
    users = [await store.create("User", idp.id, user_doc(f"u{n}")) for n in range(7)]
    inner = await store.create("Group", idp.id, {"displayName": "inner"}, [Member(u.id) for u in users[:3]])
    await store.create("Group", idp.id, {"displayName": "outer"}, [Member(inner.id, "Group"), Member(users[5].id)])
    elsewhere = await store.create("User", other.id, user_doc("u0"))
    kept_group = await store.create("Group", other.id, {"displayName": "inner"}, [Member(elsewhere.id)])

    assert await store.clear_idp(idp.id) == (7, 2)

    assert await store.counts(idp.id) == {"users": 0, "groups": 0}
    assert await store.search("User", idp.id, Query()) == (0, [])
    assert await store.search("Group", idp.id, Query()) == (0, [])
    # The IdP is as it was: same key, sign-in still works, name and icon kept.
    same = await store.get_idp(idp.id)
    assert (same.name, same.icon, same.api_key_id) == ("cleared", "cloud", idp.api_key_id)
    assert store.authenticate(idp.id, secret) is not None
    # Names are free again, and another IdP's resources are untouched.
    assert (await store.create("User", idp.id, user_doc("u0"))).id not in {u.id for u in users}
    group = await store.get("Group", other.id, kept_group.id)
    assert group is not None and [m["value"] for m in group.members or []] == [elsewhere.id]
    with pytest.raises(AdminError) as missing:
        await store.clear_idp("no-such-idp")
    assert missing.value.status == 404


async def test_a_clear_runs_in_chunks_and_removes_every_membership(store: Store) -> None:
    idp = await store.create_idp("big", "key", None)
    users = [await store.create("User", idp.id, user_doc(f"u{n}")) for n in range(9)]
    groups = [
        await store.create("Group", idp.id, {"displayName": f"g{n}"}, [Member(u.id) for u in users[n:]])
        for n in range(5)
    ]
    with mock.patch(f"{type(store).__module__}.auth.CLEAR_CHUNK", 2):  # several short transactions per table
        assert await store.clear_idp(idp.id) == (9, 5)
    assert await store.counts(idp.id) == {"users": 0, "groups": 0}
    # A group made after the clear with a reused name has no left-over members.
    again = await store.create("Group", idp.id, {"displayName": "g0"})
    row = await store.get("Group", idp.id, again.id)
    assert row is not None and row.members == []
    assert groups[0].id != again.id


async def test_renaming_an_idp(store: Store) -> None:
    _, secret = await store.create_api_key("k", "", True, True)
    idp = await store.create_idp("Entra", "key", "k")
    await store.create_idp("Okta", "key", None)
    renamed = await store.rename_idp(idp.id, "  Entra production  ", "cloud")
    assert (renamed.id, renamed.name, renamed.icon, renamed.api_key_id) == (
        idp.id,
        "Entra production",
        "cloud",
        idp.api_key_id,
    )
    stored = await store.get_idp(idp.id)
    assert (stored.name, stored.icon) == ("Entra production", "cloud")
    assert store.authenticate(idp.id, secret) is not None
    # Only the letter case: allowed (the IdP's own name).
    assert (await store.rename_idp(idp.id, "ENTRA production", "cloud")).name == "ENTRA production"
    for name, status in (("okta", 409), ("   ", 400)):
        with pytest.raises(AdminError) as err:
            await store.rename_idp(idp.id, name, "key")
        assert err.value.status == status, name
    assert (await store.get_idp(idp.id)).name == "ENTRA production"
    with pytest.raises(AdminError) as missing:
        await store.rename_idp("no-such-idp", "x", "key")
    assert missing.value.status == 404
