"""Storage contract: key rotation without a gap. A second key signs in beside an IdP's key until
one of them is revoked; revoking the IdP's key makes the second its key. On every backend, and seen
by another store on the same database (another instance, the CLI) within a second."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage import Store
from storage.errors import AdminError
from tests.backends import open_store


async def test_both_keys_sign_in_until_the_old_one_is_revoked(store: Store) -> None:
    old, old_secret = await store.create_api_key("old", "", True, True)
    new, new_secret = await store.create_api_key("new", "", True, False)
    idp = await store.create_idp("Entra", "key", "old")
    assert store.authenticate(idp.id, new_secret) is None

    rotating = await store.set_idp_second_key(idp.id, "new")
    assert (rotating.api_key_id, rotating.second_api_key_id) == (old.id, new.id)
    by_old, by_new = store.authenticate(idp.id, old_secret), store.authenticate(idp.id, new_secret)
    assert by_old is not None and by_old.api_key_id == old.id and by_old.groups_write
    # Each sign-in is the key it used, with that key's privileges: the log names it.
    assert by_new is not None and by_new.api_key_id == new.id and not by_new.groups_write

    await store.revoke_api_key("old")
    assert store.authenticate(idp.id, old_secret) is None
    assert store.authenticate(idp.id, new_secret) is not None
    after = await store.get_idp(idp.id)
    assert (after.api_key_id, after.second_api_key_id) == (new.id, None)


async def test_removing_or_revoking_the_second_key_ends_the_rotation(store: Store) -> None:
    await store.create_api_key("old", "", True, True)
    _, second_secret = await store.create_api_key("second", "", True, True)
    _, third_secret = await store.create_api_key("third", "", True, True)
    idp = await store.create_idp("Entra", "key", "old")
    await store.set_idp_second_key(idp.id, "second")
    assert (await store.set_idp_second_key(idp.id, None)).second_api_key_id is None
    assert store.authenticate(idp.id, second_secret) is None
    await store.set_idp_second_key(idp.id, "third")
    await store.revoke_api_key("third")
    assert store.authenticate(idp.id, third_secret) is None
    stays = await store.get_idp(idp.id)
    assert stays.second_api_key_id is None and stays.api_key_id is not None


async def test_a_second_key_belongs_to_one_idp_too(store: Store) -> None:
    own, _ = await store.create_api_key("own", "", True, True)
    spare, _ = await store.create_api_key("spare", "", True, True)
    await store.create_api_key("gone", "", True, True)
    await store.revoke_api_key("gone")
    idp = await store.create_idp("Entra", "key", "own")
    other = await store.create_idp("Okta", "key", None)
    await store.set_idp_second_key(idp.id, "spare")
    for target, key, status in (
        (other.id, "spare", 409),  # the second key of another IdP
        (idp.id, "own", 400),  # the IdP's key already
        (idp.id, "gone", 400),  # revoked
        (idp.id, "missing", 404),
        ("no-such-idp", "spare", 404),
    ):
        with pytest.raises(AdminError) as err:
            await store.set_idp_second_key(target, key)
        assert err.value.status == status, (target, key)
    with pytest.raises(AdminError) as taken:
        await store.set_idp_api_key(other.id, "spare")
    assert taken.value.status == 409
    # Selecting the second key as the IdP's key ends the rotation on it.
    promoted = await store.set_idp_api_key(idp.id, "spare")
    assert (promoted.api_key_id, promoted.second_api_key_id) == (spare.id, None)
    assert own.id != spare.id


async def test_another_store_sees_the_rotation(store: Store, database_url: str) -> None:
    await store.create_api_key("old", "", True, True)
    _, new_secret = await store.create_api_key("new", "", True, True)
    idp = await store.create_idp("Entra", "key", "old")
    elsewhere = await open_store(database_url)
    try:
        assert elsewhere.authenticate(idp.id, new_secret) is None
        await store.set_idp_second_key(idp.id, "new")
        deadline = time.monotonic() + 1.0
        while elsewhere.authenticate(idp.id, new_secret) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert elsewhere.authenticate(idp.id, new_secret) is not None
    finally:
        await elsewhere.close()
