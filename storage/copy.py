"""copy-database: every row of one store copied into another, of either backend, then verified.

Backend-neutral: it sees the stores only through OperationsStore.export_rows and import_rows, so
the rows pass through here as plain values (bool, dict, ISO text), a batch at a time. The source is
read from one snapshot while the target writes everything in one transaction; each side's rows are
then hashed (SHA-256 over the canonical JSON of every row, keys sorted) and compared."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from storage.errors import AdminError
from storage.interfaces import TABLES, Store

BATCH_SIZE = 1000
# The boolean and document columns: stored as INTEGER and TEXT by SQLite, boolean and jsonb by PostgreSQL.
BOOLEANS = {"api_keys": ("users_write", "groups_write"), "idps": ("schema_strict",), "users": ("active",)}
DOCUMENTS = {"users": ("doc",), "groups": ("doc",)}


@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def matches(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


class _Digest:
    def __init__(self) -> None:
        self.rows = 0
        self.sha = hashlib.sha256()

    def add(self, rows: list[dict]) -> None:
        self.rows += len(rows)
        for row in rows:
            self.sha.update(orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
            self.sha.update(b"\n")


async def _digest(store: Store, table: str) -> _Digest:
    digest = _Digest()
    async for rows in store.export_rows(table, BATCH_SIZE):
        digest.add(rows)
    return digest


async def copy_database(source: Store, target: Store) -> list[TableCheck]:
    """Copy every table of `source` into `target` (migrated first; refused with AdminError unless
    it is empty) and verify it: per table, the rows and the hash of what was read from the source
    against what the target holds once committed."""
    sent = {table: _Digest() for table in TABLES}

    async def batches() -> AsyncIterator[tuple[str, list[dict]]]:
        for table in TABLES:
            async for rows in source.export_rows(table, BATCH_SIZE):
                sent[table].add(rows)
                yield table, rows

    await target.import_rows(batches())
    checks = []
    for table in TABLES:
        stored = await _digest(target, table)
        checks.append(
            TableCheck(table, sent[table].rows, stored.rows, sent[table].sha.hexdigest(), stored.sha.hexdigest())
        )
    return checks


def refuse_non_empty(counts: dict[str, int], where: str) -> None:
    """The AdminError import_rows raises when the target has rows: copying never merges."""
    full = {table: n for table, n in counts.items() if n}
    if full:
        listed = ", ".join(f"{table}: {n}" for table, n in full.items())
        raise AdminError(f"The target database {where} is not empty ({listed}); copy into an empty database")
