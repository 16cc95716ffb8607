"""Migrations, backup, readiness, the size metrics and check-config's report: the operations of a SQLite database."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import orjson

from storage import (
    AdminError,
    StorageStats,
)
from storage.common import now, probe_reads_and_writes
from storage.copy import BOOLEANS, DOCUMENTS, refuse_non_empty
from storage.interfaces import TABLES
from storage.sqlite.engine import Engine

health_log = logging.getLogger("scimlet.health")
MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(path: str) -> list[str]:
    """Apply pending migrations (numbered .sql files); return the names applied."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT, applied TEXT)")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        applied = []
        for file in sorted(MIGRATIONS.glob("*.sql")):
            version = int(file.name.split("_", 1)[0])
            if version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(file.read_text()):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, file.name, now()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            applied.append(file.name)
        return applied
    finally:
        conn.close()


def backup(path: str, destination: str) -> dict[str, int]:
    """Copy the database to a new file with SQLite's online backup API; returns its row counts.

    The copy is made in one backup step, which reads a single snapshot under one read transaction:
    in WAL mode the running server keeps committing meanwhile, and the copy holds exactly the writes
    committed before it began. It is written beside the destination, converted to a standalone file
    (rollback journal, no -wal to carry along), checked with PRAGMA integrity_check, synced, and only
    then renamed into place, so a failed or interrupted backup never leaves a plausible-looking file.
    """
    if not Path(path).is_file():
        raise AdminError(f"There is no database at {path}")
    target = Path(destination)
    if target.exists():
        raise AdminError(f"{destination} already exists; back up to a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(path, isolation_level=None)
    copy = sqlite3.connect(partial, isolation_level=None)
    try:
        source.execute("PRAGMA busy_timeout=10000")
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise AdminError(f"The copy failed its integrity check: {'; '.join(problems[:5])}")
        counts = {table: copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("users", "groups")}
    except sqlite3.Error as exc:
        raise AdminError(f"The backup failed: {exc}") from None
    finally:
        copy.close()
        source.close()
    with open(partial, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(partial, target)
    return counts


def pending_migrations(conn: sqlite3.Connection) -> list[str]:
    try:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
    except sqlite3.OperationalError:
        done = set()
    return [f.name for f in sorted(MIGRATIONS.glob("*.sql")) if int(f.name.split("_", 1)[0]) not in done]


def _statements(script: str) -> list[str]:
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statements.append("\n".join(current))
            current = []
    return [s for s in statements if s.strip()]


def _neutral(table: str, names: list[str], values: tuple) -> dict:
    """A row as copy-database carries it: SQLite's rowid as seq, 0/1 as bool, documents parsed."""
    row = dict(zip(("seq" if name == "rowid" else name for name in names), values, strict=True))
    for column in BOOLEANS.get(table, ()):
        if row[column] is not None:
            row[column] = bool(row[column])
    for column in DOCUMENTS.get(table, ()):
        row[column] = orjson.loads(row[column])
    return row


def _stored(table: str, row: dict) -> dict:
    """The inverse of _neutral: the values as SQLite stores them."""
    stored = {("rowid" if name == "seq" else name): value for name, value in row.items()}
    for column in BOOLEANS.get(table, ()):
        if stored[column] is not None:
            stored[column] = int(stored[column])
    for column in DOCUMENTS.get(table, ()):
        stored[column] = orjson.dumps(stored[column]).decode()
    return stored


def _select_all(table: str) -> str:
    # rowid named explicitly: users and groups declare it as their INTEGER PRIMARY KEY, the creation order.
    order = "rowid" if table in ("users", "groups", "provisioning_log") else "1"
    if table == "group_members":
        order = "group_id, member_id"
    return f"SELECT * FROM {table} ORDER BY {order}"


class Maintenance(Engine):
    """OperationsStore's methods on SQLite (migrate and backup use connections of their own)."""

    async def migrate(self) -> list[str]:
        return await asyncio.to_thread(migrate, self.path)

    async def pending_migrations(self) -> list[str]:
        if self.readers:
            return await self.read(pending_migrations)
        return await asyncio.to_thread(self._pending_read_only)

    def _pending_read_only(self) -> list[str]:
        """Pending migrations from a read-only connection: asking creates no database file."""
        if not Path(self.path).exists():
            return [f.name for f in sorted(MIGRATIONS.glob("*.sql"))]
        conn = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return pending_migrations(conn)
        finally:
            conn.close()

    async def backup(self, destination: str) -> dict[str, int]:
        return await asyncio.to_thread(backup, self.path, destination)

    async def export_rows(self, table: str, batch_size: int) -> AsyncIterator[list[dict]]:
        if not Path(self.path).is_file():
            raise AdminError(f"There is no database at {self.path}")
        conn = sqlite3.connect(
            f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("BEGIN")  # one read transaction: every table from the same snapshot
            cursor = await asyncio.to_thread(conn.execute, _select_all(table))
            names = [column[0] for column in cursor.description]
            while rows := await asyncio.to_thread(cursor.fetchmany, batch_size):
                yield [_neutral(table, names, row) for row in rows]
        finally:
            conn.close()

    async def import_rows(self, batches: AsyncIterable[tuple[str, list[dict]]]) -> dict[str, int]:
        try:
            await self.migrate()
        except (sqlite3.Error, OSError) as exc:
            raise AdminError(f"Cannot open the target database {self.path}: {exc}") from None
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        counts = dict.fromkeys(TABLES, 0)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                refuse_non_empty(
                    {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}, self.path
                )
                async for table, rows in batches:
                    if not rows:
                        continue
                    stored = [_stored(table, row) for row in rows]
                    names = list(stored[0])
                    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                    await asyncio.to_thread(conn.executemany, sql, [tuple(row[n] for n in names) for row in stored])
                    counts[table] += len(rows)
                conn.execute("COMMIT")  # rowid continues past the largest by itself: no sequence to set
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise AdminError(f"The copy into {self.path} failed: {exc}") from None
        finally:
            conn.close()
        return counts

    async def describe(self) -> list[str]:
        return [f"database {self.path}: {await self._state()}"]

    async def _state(self) -> str:
        if not Path(self.path).exists():
            return "does not exist yet; `serve` or `migrate` creates it"
        try:
            pending = await self.pending_migrations()
        except sqlite3.Error as exc:
            return f"cannot be read ({exc})"
        return (
            f"{len(pending)} pending migrations ({', '.join(pending)}); `migrate` or `serve` applies them"
            if pending
            else "exists, schema up to date"
        )

    async def readiness(self, timeout: float) -> dict[str, str]:
        """The database file is where the config says (and is the file the server has open), a
        reader connection answers and finds no pending migration, a write goes through the single
        writer (an empty write joins the next group commit, so the check costs one batch slot, not
        a transaction of its own under load), and there is room to write: no write was refused for
        lack of space in the last minute and the disk has min_free_bytes free."""
        checks = {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        # Open connections keep reading and writing a database file that was deleted or replaced,
        # and everything written from then on is lost at the next restart: look at the path itself.
        if not os.path.isfile(self.path):
            health_log.warning("readiness: the database file %s is missing", self.path)
            checks["database"] = "the database file is missing"
        elif lost := self.check_files():
            checks["database"] = f"{lost}; restart the server"
        space = self.space_problem(self.min_free_bytes)
        if space:
            health_log.warning("readiness: the database is short of space: %s", space)
            checks["disk"] = space
        await probe_reads_and_writes(
            checks,
            self.read(pending_migrations),
            self.write(_nothing),
            timeout,
            "the database writer does not complete writes",
        )
        return checks

    async def stats(self) -> StorageStats:
        sizes = {}
        for label, suffix in (("database", ""), ("wal", "-wal")):
            try:
                sizes[label] = os.stat(self.path + suffix).st_size
            except OSError:
                sizes[label] = 0
        return StorageStats(write_queue_depth=len(self._queue), write_batches=self.batches, sizes=sizes)


def _nothing(conn: sqlite3.Connection) -> None:
    """The empty unit of work the writer check sends through the write queue."""
