"""The storage contract suite's fixtures: a fresh, opened store on each backend, and IdPs in it.

Every test takes `store` and so runs once per backend (tests/backends.py), each on a database of its
own (a SQLite file in tmp_path, a new PostgreSQL database): the suite is parallel-safe under xdist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import Store
from tests.backends import open_store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await open_store(database_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def idp(store: Store) -> str:
    """An IdP's id: resources are written in an IdP, which must exist."""
    return (await store.create_idp("tenant one", "key", None)).id


@pytest.fixture
async def other_idp(store: Store) -> str:
    return (await store.create_idp("tenant two", "key", None)).id
