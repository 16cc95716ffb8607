"""Migrations, readiness, the size metric and check-config's report: the operations of a PostgreSQL database.

Migrations are numbered .sql files (migrations/), each applied in its own transaction and recorded
in schema_version. Instances starting together on one database take turns: whoever holds the
advisory lock applies what is pending, the others then find nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson

from scim.errors import ScimError
from storage import AdminError, StorageStats
from storage.common import now, probe_reads_and_writes
from storage.copy import DOCUMENTS, refuse_non_empty
from storage.interfaces import TABLES
from storage.postgresql.engine import UNAVAILABLE, Connection, Engine

health_log = logging.getLogger("scimlet.health")
MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_lock's key for migrations: any constant other software on the database does not use.
MIGRATION_LOCK = 0x5C1A_1E7


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("*.sql"))


def version_of(file: Path) -> int:
    return int(file.name.split("_", 1)[0])


async def applied_versions(conn: Connection) -> set[int]:
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return set()
    return {row[0] for row in await conn.fetch("SELECT version FROM schema_version")}


# The columns GENERATED ALWAYS AS IDENTITY: after a copy their sequences continue past the largest.
IDENTITIES = {"users": "seq", "groups": "seq", "provisioning_log": "id", "events": "seq", "event_attempts": "id"}
# The order export_rows reads in, the same bytewise order as SQLite's (COLLATE "C" columns).
ORDER = {"group_members": "group_id, member_id", **IDENTITIES}


class Maintenance(Engine):
    """OperationsStore's methods on PostgreSQL (migrate and describe use connections of their own)."""

    async def migrate(self) -> list[str]:
        conn = await self._connect_creating()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, name text, applied text)"
            )
            done = await applied_versions(conn)
            applied = []
            for file in migration_files():
                if version_of(file) in done:
                    continue
                async with conn.transaction():
                    await conn.execute(file.read_text())
                    await conn.execute(
                        "INSERT INTO schema_version VALUES ($1, $2, $3)", version_of(file), file.name, now()
                    )
                applied.append(file.name)
            return applied
        finally:
            await conn.close()  # the advisory lock ends with the session

    async def _connect_creating(self) -> Connection:
        """A connection to the database, created first when the server has none of that name (the
        role must be allowed to create databases; else the error says so)."""
        try:
            return await self.connect()
        except asyncpg.InvalidCatalogNameError:
            name = urlsplit(self.url).path.lstrip("/")
            server = await asyncpg.connect(
                urlsplit(self.url)._replace(path="/postgres").geturl(), timeout=self.connect_timeout
            )
            try:
                await server.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # another instance created it meanwhile
            finally:
                await server.close()
            return await self.connect()

    async def pending_migrations(self) -> list[str]:
        if self.pool is not None:
            done = await self.read(applied_versions)
        else:
            try:
                conn = await self.connect()
            except asyncpg.InvalidCatalogNameError:
                return [f.name for f in migration_files()]
            try:
                done = await applied_versions(conn)
            finally:
                await conn.close()
        return [f.name for f in migration_files() if version_of(f) not in done]

    async def backup(self, destination: str) -> dict[str, int]:
        raise AdminError(
            "A PostgreSQL database is backed up with PostgreSQL's own tools: "
            f"pg_dump --format=custom --file {destination} '{self.shown_url}' (or continuous archiving); "
            "`backup` copies SQLite databases only"
        )

    async def export_rows(self, table: str, batch_size: int) -> AsyncIterator[list[dict]]:
        conn = await self._copy_connection()
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                order = ORDER.get(table, "1")
                cursor = await conn.cursor(f"SELECT * FROM {table} ORDER BY {order}")
                while rows := await cursor.fetch(batch_size):
                    batch = [dict(row) for row in rows]
                    for row in batch:
                        for column in DOCUMENTS.get(table, ()):
                            row[column] = orjson.loads(row[column])
                    yield batch
        finally:
            await conn.close()

    async def import_rows(self, batches: AsyncIterable[tuple[str, list[dict]]]) -> dict[str, int]:
        try:
            await self.migrate()
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise AdminError(f"Cannot reach the target database {self.shown_url}: {exc}") from None
        conn = await self._copy_connection()
        counts = dict.fromkeys(TABLES, 0)
        try:
            async with conn.transaction():
                # No other writer meanwhile: the check for an empty database holds until the commit.
                await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
                refuse_non_empty(
                    {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}, self.shown_url
                )
                async for table, rows in batches:
                    if not rows:
                        continue
                    names = list(rows[0])
                    records = [
                        tuple(orjson.dumps(row[n]).decode() if n in DOCUMENTS.get(table, ()) else row[n] for n in names)
                        for row in rows
                    ]
                    # COPY writes identity columns as given (as INSERT ... OVERRIDING SYSTEM VALUE).
                    await conn.copy_records_to_table(table, records=records, columns=names)
                    counts[table] += len(rows)
                for table, column in IDENTITIES.items():
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"coalesce(max({column}), 0) + 1, false) FROM {table}"
                    )
        except asyncpg.PostgresError as exc:
            raise AdminError(f"The copy into {self.shown_url} failed: {exc}") from None
        finally:
            await conn.close()
        return counts

    async def _copy_connection(self) -> Connection:
        """A connection of its own for copy-database, without the statement timeout: a table may take longer."""
        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout)
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise AdminError(f"Cannot reach the database {self.shown_url}: {exc}") from None
        await conn.execute("SET statement_timeout = 0")
        return conn

    async def describe(self) -> list[str]:
        return [f"database {self.shown_url} (PostgreSQL): {await self._state()}"]

    async def _state(self) -> str:
        try:
            pending = await asyncio.wait_for(self.pending_migrations(), self.connect_timeout + 1)
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            return f"refuses the sign-in ({exc})"
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            return f"cannot be reached ({type(exc).__name__}: {exc})"
        if len(pending) == len(migration_files()):
            return "has no scimlet schema yet; `serve` or `migrate` creates it"
        if pending:
            return f"{len(pending)} pending migrations ({', '.join(pending)}); `migrate` or `serve` applies them"
        return "reachable, schema up to date"

    async def readiness(self, timeout: float) -> dict[str, str]:
        """A pooled connection answers a read and finds no pending migration, and a write
        transaction commits. PostgreSQL manages its own storage: "disk" reports a write refused
        for lack of space, which the writer check sees."""
        checks = {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        writer = await probe_reads_and_writes(
            checks, self.pending_migrations(), self.write(_nothing), timeout, "the database does not complete writes"
        )
        if writer is not None and "disk space" in str(writer):
            checks["disk"] = "full: PostgreSQL has no disk space left"
        return checks

    async def stats(self) -> StorageStats:
        sizes: dict[str, int] = {}
        if self.pool is not None:
            try:
                sizes["database"] = await self.read(
                    lambda conn: conn.fetchval("SELECT pg_database_size(current_database())")
                )
            except ScimError as exc:  # a scrape must still answer: the size is left out while unreachable
                health_log.debug("database size not read: %s", exc)
        return StorageStats(write_queue_depth=self.write_queue_depth, write_batches=self.batches, sizes=sizes)


async def _nothing(conn: Connection) -> None:
    """The empty unit of work the writer check sends through a write transaction."""
    await conn.execute("SELECT 1")
