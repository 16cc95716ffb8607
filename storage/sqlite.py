"""The SQLite store: WAL, one writer connection with group commit, a few readers.

Each aiosqlite call is a hand-off to the connection's thread, so every request costs one hop: a
whole unit of work (read, run the pure SCIM change, write) runs as one function on that thread.
Concurrent writes queue up while a batch runs and then share one transaction (group commit); each
runs inside its own SAVEPOINT, so one failing write never affects another.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import secrets
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from scim.errors import ScimError, invalid_value, not_found, shown
from scim.filters import Node, format_datetime
from scim.patch import Member, MemberOp
from settings import Settings
from storage import (
    AdminError,
    AdminSession,
    ApiKey,
    Change,
    ChangeFn,
    CheckFn,
    DirectoryPage,
    Encoder,
    Idp,
    LogCounters,
    LogQuery,
    LogRecord,
    Principal,
    Query,
    Row,
    StorageStats,
)
from storage.common import format_timestamp, hash_secret, new_resource_id, now, readiness_failure
from storage.sql import GROUPS, USERS, TableMap, escape_like, is_point_lookup, order_clause, where_clause

log = logging.getLogger("scimlet.storage")
health_log = logging.getLogger("scimlet.health")
MIGRATIONS = Path(__file__).parent / "migrations"
# How long a change to keys or IdPs made by another process may take to reach a running server.
AUTH_RECHECK_SECONDS = 0.1
CHECKPOINT_SECONDS = 2.0
TABLES: dict[str, TableMap] = {"User": USERS, "Group": GROUPS}
MAX_BATCH = 256
# Primary result codes of a database that cannot store a write now (no space, an I/O error, the
# file gone read-only or locked by another process): the client gets 503 with Retry-After.
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)
FULL_RETRY_SECONDS = 30
# The files beside the database that the open connections keep using; another process that finds
# them gone makes new ones, and the two would no longer see each other's writes.
SIDE_FILES = {"-wal": "the database's write-ahead log (-wal)", "-shm": "the database's shared-memory index (-shm)"}
# How long /readyz reports a write refused for lack of space (readiness itself writes nothing).
FULL_REPORTED_SECONDS = 60.0
# Work done in place (a point read on the event loop, a user's groups in the writer's transaction
# after a PATCH) is stopped by SQLite after about this many VM instructions, a few milliseconds,
# and done again on a reader thread: a user's groups are a walk that may read every membership row
# of thousands of nested groups. A point read takes a few hundred; the groups of a user in a few
# groups a few thousand.
IN_PLACE_STEPS = 50_000
# A page of users whose groups are each a long walk (all in densely nested groups) would hold a
# reader thread for a walk per user: the page ends early, as at scim.max_page_bytes, once loading
# its rows' groups (or members) has cost about this many VM instructions, a tenth of a second. The
# first row is always loaded whole.
PAGE_LOAD_STEPS = 2_000_000
PAGE_LOAD_GRAIN = 10_000
LOG_COLUMNS = LogRecord._fields[:-2]  # the columns written; id and resource_name are read back


def _dumps(doc: dict) -> str:
    # SQLite's JSON functions read TEXT; a BLOB would be taken for JSONB by newer SQLite.
    return orjson.dumps(doc).decode()


def _connect_sync(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _configure(conn, synchronous)
    return conn


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-32000")
    # Sorts and DISTINCTs (a user's groups, GROUP BY, UNION) build temporary B-trees; on disk each
    # one opens and unlinks a file, 100 µs against 10 µs in memory.
    conn.execute("PRAGMA temp_store=MEMORY")


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


def from_settings(settings: Settings) -> SqliteStore:
    """The store for database.url (a sqlite:/// URL) or, when it is not set, database.path."""
    db = settings.database
    return SqliteStore(
        path_of(db.backend_url),
        synchronous=db.synchronous,
        readers=db.readers,
        max_write_queue=settings.scim.max_write_queue,
        max_size_bytes=db.max_size_bytes,
        max_user_groups=settings.scim.max_user_groups,
        min_free_bytes=db.min_free_bytes,
    )


def path_of(url: str) -> str:
    """The file a sqlite:///PATH URL names (sqlite:////PATH: an absolute path)."""
    return url.removeprefix("sqlite:///")


class SqliteStore:
    """The Store protocol (storage/interfaces.py) on SQLite."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        readers: int = 2,
        max_write_queue: int = 0,
        max_size_bytes: int = 0,
        max_user_groups: int = 5000,
        min_free_bytes: int = 0,
    ) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes  # readiness reports "disk" below this much free space (0: never)
        self.synchronous = synchronous
        self.reader_count = readers
        self.max_write_queue = max_write_queue
        self.max_size_bytes = max_size_bytes
        # The files the connections have open, as (path, (st_dev, st_ino)): a path that no longer
        # names them means every write from then on goes to a deleted file (see check_files).
        self._files: dict[str, tuple[int, int]] = {}
        self.lost: str | None = None  # why writes can no longer be stored; it takes a restart to clear
        self.full_at = -math.inf  # time.monotonic() of the last write refused for lack of space
        self.max_user_groups = max_user_groups
        self.writer: aiosqlite.Connection | None = None
        self.readers: list[aiosqlite.Connection] = []
        self.local_conn: sqlite3.Connection | None = None
        self._next_reader = 0
        self._queue: deque[tuple[Callable, asyncio.Future]] = deque()
        self._wakeup: asyncio.Event  # made by open(), in the event loop the store then serves
        self._writer_task: asyncio.Task | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task | None = None
        # API key id -> time.time() of its last sign-in; formatted only when read or written out.
        self._last_used: dict[str, float] = {}
        self._principals: dict[tuple[str, str], Principal] = {}  # (IdP ID, secret hash) -> principal
        self._auth_epoch = -1
        self._auth_checked = -math.inf
        self.batches = 0

    # --- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        self.writer = await self._aconnect()
        self._files = {self.path: _identity(os.stat(self.path))}
        if self.max_size_bytes:
            page_size = (await _run(self.writer, _fetch, "PRAGMA page_size", ()))[0][0]
            await _run(self.writer, _fetch, f"PRAGMA max_page_count = {max(1, self.max_size_bytes // page_size)}", ())
        self.readers = [await self._aconnect() for _ in range(self.reader_count)]
        # Auth (when a sign-in is not remembered, see authenticate) and point reads (a row by its
        # id, Entra's userName/displayName lookups) are a few index lookups: done in place on the
        # event loop, they cost less than the hand-off to a reader thread and back. Anything that
        # may scan (other filters, a group's members) goes to the reader threads.
        self.local_conn = _connect_sync(self.path, self.synchronous)
        self._wakeup = asyncio.Event()
        self._writer_task = asyncio.create_task(self._write_loop(self.writer))
        # Checkpoints (copying committed pages from the WAL into the database file, then two
        # fsyncs) run on a connection of their own. SQLite runs them in the connection whose
        # commit crosses wal_autocheckpoint, the writer, and every write queued behind it waited
        # 8-25 ms: the slowest of 100 member adds to a 30,000-member group took 12-17 ms (five
        # rounds); with this, 2.4-11 ms.
        await _run(self.writer, _fetch, "PRAGMA wal_autocheckpoint=0", ())
        self._checkpointer = await self._aconnect()
        self._checkpoint_task = asyncio.create_task(self._checkpoint_loop(self._checkpointer))

    async def _aconnect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await _run(conn, _configure, self.synchronous)
        return conn

    async def close(self) -> None:
        if self._writer_task is not None:
            try:
                await self.flush_last_used()
            except ScimError as exc:  # the database is gone or full: the last-used times are not worth a hang
                log.warning("API key last-used times not saved: %s", exc.detail)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
            self._checkpoint_task = None
        for conn in [self.writer, *self.readers, self._checkpointer]:
            if conn is not None:
                await conn.close()
        self.writer, self.readers, self._checkpointer = None, [], None
        if self.local_conn is not None:
            self.local_conn.close()
            self.local_conn = None

    @property
    def write_queue_depth(self) -> int:
        return len(self._queue)

    # --- operations: migrations, backup, readiness, metrics, check-config ------------------------

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
        reader: list[str] | BaseException
        writer: None | BaseException
        reader, writer = await asyncio.gather(
            asyncio.wait_for(self.read(pending_migrations), timeout),
            asyncio.wait_for(self.write(_nothing), timeout),
            return_exceptions=True,
        )
        if isinstance(reader, BaseException):
            checks["database"] = readiness_failure("the database does not answer reads", reader, timeout)
            checks["migrations"] = "unknown: the database does not answer"
        elif reader:
            checks["migrations"] = f"{len(reader)} pending: {', '.join(reader)}; run `python app.py migrate`"
        if isinstance(writer, BaseException):
            checks["writer"] = readiness_failure("the database writer does not complete writes", writer, timeout)
        return checks

    async def stats(self) -> StorageStats:
        sizes = {}
        for label, suffix in (("database", ""), ("wal", "-wal")):
            try:
                sizes[label] = os.stat(self.path + suffix).st_size
            except OSError:
                sizes[label] = 0
        return StorageStats(write_queue_depth=len(self._queue), write_batches=self.batches, sizes=sizes)

    # --- the two kinds of unit of work ---------------------------------------------------------

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(sqlite3_connection, *args) on a reader thread."""
        conn = self.readers[self._next_reader]
        self._next_reader = (self._next_reader + 1) % len(self.readers)
        return await _run(conn, fn, *args)

    async def read_in_place(self, fn: Callable[[sqlite3.Connection, int], Any]) -> Any:
        """fn(connection, walk cap) in place on the event loop, for reads that are a few index
        lookups (cheaper than the hand-off to a reader thread); stopped past IN_PLACE_STEPS, as when
        a user's groups reach far, it is done again on a reader thread (read_far)."""
        cap = self.max_user_groups
        conn = self.local_conn
        assert conn is not None, "the store is not open"
        try:
            with _in_place(conn):
                return fn(conn, cap)
        except _TooLongInPlace:
            return await self.read_far(fn)
        except GroupWalkTooLarge as exc:
            raise too_many_groups(exc.user_id, cap) from None

    async def read_far(self, fn: Callable[[sqlite3.Connection, int], Any]) -> Any:
        """fn(connection, walk cap) on a reader thread; a user whose groups are more than the cap
        (scim.max_user_groups) makes it 400 tooMany."""
        cap = self.max_user_groups

        def run(conn: sqlite3.Connection) -> Any:
            try:
                return fn(conn, cap)
            except GroupWalkTooLarge as exc:
                raise too_many_groups(exc.user_id, cap) from None

        return await self.read(run)

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(sqlite3_connection, *args) in the next write transaction (group commit)."""
        if self.lost:
            raise self._lost_error()
        if self.max_write_queue and len(self._queue) >= self.max_write_queue:
            raise ScimError(429, "The server is busy with other writes; retry after the Retry-After delay")
        future = asyncio.get_running_loop().create_future()
        self._queue.append((lambda conn: fn(conn, *args), future))
        self._wakeup.set()
        return await future

    async def _write_loop(self, writer: aiosqlite.Connection) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    outcomes = await _run(writer, _run_batch, [fn for fn, _ in batch])
                except Exception as exc:  # the transaction as a whole failed (disk full, I/O error)
                    failure = self._unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
                    if not isinstance(failure, ScimError):
                        failure = ScimError(503, f"The database could not commit the write: {exc}")
                    outcomes = [(False, failure)] * len(batch)
                self.batches += 1
                # A commit into a file that was deleted or replaced is lost at the next restart: it
                # must not be acknowledged. Three stat calls per batch, not per write.
                if self.check_files():
                    outcomes = [(False, self._lost_error())] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=False):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(self._unavailable(value) if isinstance(value, sqlite3.Error) else value)

    def check_files(self) -> str | None:
        """What is wrong when the database path no longer names the file the server writes (deleted,
        or replaced by another file), else None. Once wrong, it stays wrong: the open connections
        keep the old file, and only a restart opens the new one."""
        if self.lost:
            return self.lost
        if len(self._files) < 3:  # the -wal and -shm files appear with the first transaction
            for side in (f"{self.path}-wal", f"{self.path}-shm"):
                if side not in self._files and os.path.exists(side):
                    self._files[side] = _identity(os.stat(side))
        for path, identity in self._files.items():
            what = SIDE_FILES.get(path[-4:], "the database file")
            try:
                if _identity(os.stat(path)) != identity:
                    self.lost = f"{what} was replaced under the running server"
            except FileNotFoundError:
                self.lost = f"{what} was deleted under the running server"
            if self.lost:
                log.error("%s (%s): writes are refused with 503 until the server is restarted", self.lost, path)
                return self.lost
        return None

    def _lost_error(self) -> ScimError:
        return ScimError(
            503,
            f"The server cannot store writes: {self.lost}, so nothing was stored; retry after it is restarted",
            retry_after=FULL_RETRY_SECONDS,
        )

    def _unavailable(self, exc: sqlite3.Error) -> Exception:
        """A database that cannot store a write, as a 503 the client can retry; any other error unchanged."""
        code = (exc.sqlite_errorcode or 0) & 0xFF
        if code not in UNAVAILABLE_CODES:
            return exc
        if code == sqlite3.SQLITE_FULL:
            self.full_at = time.monotonic()
            return ScimError(
                503,
                "The database is full (no disk space left, or database.max_size_bytes reached); nothing was "
                "stored; retry after space was made",
                retry_after=FULL_RETRY_SECONDS,
            )
        return ScimError(503, f"The database could not store the write ({exc}); nothing was stored; retry later")

    def space_problem(self, min_free_bytes: int) -> str | None:
        """Why the database is short of space: a write refused for it lately, or little disk left."""
        since = time.monotonic() - self.full_at
        if since < FULL_REPORTED_SECONDS:
            return (
                f"full: a write was refused for lack of space {since:.0f} s ago "
                "(disk full, or database.max_size_bytes reached)"
            )
        if min_free_bytes:
            disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
            free = disk.f_bavail * disk.f_frsize
            if free < min_free_bytes:
                wanted = min_free_bytes // 2**20
                return f"{free // 2**20} MiB free on the disk, below database.min_free_bytes ({wanted} MiB)"
        return None

    async def _checkpoint_loop(self, checkpointer: aiosqlite.Connection) -> None:
        """A PASSIVE checkpoint every CHECKPOINT_SECONDS after any commit: it copies what no reader
        still needs and never blocks the writer, which keeps appending to the WAL meanwhile."""
        checkpointed = self.batches
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if self.batches == checkpointed:
                continue
            checkpointed = self.batches
            try:
                await _run(checkpointer, _fetch, "PRAGMA wal_checkpoint(PASSIVE)", ())
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed, will retry: %s", exc)

    # --- administration ---------------------------------------------------------------------

    async def create_api_key(
        self, name: str, description: str, users_write: bool, groups_write: bool
    ) -> tuple[ApiKey, str]:
        name = name.strip()
        if not name:
            raise AdminError("An API key needs a name")
        secret = secrets.token_urlsafe(32)
        key = ApiKey(str(uuid.uuid4()), name, description, users_write, groups_write, now(), None, None)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, description, secret_hash, users_write, groups_write, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        key.name,
                        description,
                        hash_secret(secret),
                        int(users_write),
                        int(groups_write),
                        key.created,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AdminError(f"An API key named {shown(name)} already exists", 409) from None

        await self.write(insert)
        return key, secret

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.read(
            _fetch,
            "SELECT id, name, description, users_write, groups_write, created, "
            "last_used, revoked FROM api_keys ORDER BY created",
            (),
        )
        return [
            ApiKey(
                r[0],
                r[1],
                r[2],
                bool(r[3]),
                bool(r[4]),
                r[5],
                format_timestamp(self._last_used[r[0]]) if r[0] in self._last_used else r[6],
                r[7],
            )
            for r in rows
        ]

    async def find_api_key(self, id_or_name: str) -> ApiKey:
        for key in await self.list_api_keys():
            if key.id == id_or_name or key.name.lower() == id_or_name.lower():
                return key
        raise AdminError(f"No API key with id or name {shown(id_or_name)}", 404)

    async def revoke_api_key(self, id_or_name: str) -> ApiKey:
        key = await self.find_api_key(id_or_name)
        if key.revoked:
            return key
        stamp = now()
        await self.write(lambda conn: conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (stamp, key.id)))
        self._auth_changed()
        return await self.find_api_key(key.id)

    async def create_idp(self, name: str, icon: str, api_key: str | None) -> Idp:
        name = name.strip()
        if not name:
            raise AdminError("An IdP needs a name")
        key_id = None
        if api_key:
            key = await self.find_api_key(api_key)
            if key.revoked:
                raise AdminError(f"API key {shown(key.name)} is revoked")
            key_id = key.id
        idp = Idp(_idp_id(), name, icon, key_id, now())

        def insert(conn: sqlite3.Connection) -> None:
            if key_id is not None:
                _check_key_free(conn, key_id, key.name, idp.id)
            try:
                conn.execute(
                    "INSERT INTO idps (id, name, icon, api_key_id, created) VALUES (?, ?, ?, ?, ?)",
                    (idp.id, idp.name, idp.icon, idp.api_key_id, idp.created),
                )
            except sqlite3.IntegrityError:
                raise AdminError(f"An IdP named {shown(name)} already exists", 409) from None

        await self.write(insert)
        return idp

    async def list_idps(self) -> list[Idp]:
        rows = await self.read(_fetch, "SELECT id, name, icon, api_key_id, created FROM idps ORDER BY created", ())
        return [Idp(*r) for r in rows]

    async def get_idp(self, idp_id: str) -> Idp:
        for idp in await self.list_idps():
            if idp.id == idp_id:
                return idp
        raise AdminError(f"No IdP with id {shown(idp_id)}", 404)

    async def set_idp_api_key(self, idp_id: str, api_key: str) -> Idp:
        idp = await self.get_idp(idp_id)
        key = await self.find_api_key(api_key)
        if key.revoked:
            raise AdminError(f"API key {shown(key.name)} is revoked")

        def select(conn: sqlite3.Connection) -> None:
            if idp.api_key_id != key.id:  # saving the key it has is no new binding (even a shared legacy one)
                _check_key_free(conn, key.id, key.name, idp.id)
            conn.execute("UPDATE idps SET api_key_id = ? WHERE id = ?", (key.id, idp.id))

        await self.write(select)
        self._auth_changed()
        return await self.get_idp(idp.id)

    async def delete_idp(self, idp_id: str) -> None:
        idp = await self.get_idp(idp_id)

        def delete(conn: sqlite3.Connection) -> None:
            for table in ("group_members", "users", "groups"):
                conn.execute(f"DELETE FROM {table} WHERE idp_id = ?", (idp.id,))
            conn.execute("DELETE FROM idps WHERE id = ?", (idp.id,))

        await self.write(delete)
        self._auth_changed()

    def authenticate(self, idp_id: str, secret: str) -> Principal | None:
        """The principal for this IdP and bearer secret, or None.

        Verified principals are kept in memory: a database read on the event loop cost about an
        eighth of a SCIM request's CPU (it hands the GIL to the writer thread and back). Changes
        that can end a sign-in move auth_epoch (migration 004): made in this process they clear
        the cache at once; made by another (the CLI) they are seen within AUTH_RECHECK_SECONDS,
        which the CLI waits out before it reports the change done. Failures are never cached.
        """
        digest = hash_secret(secret)
        self._check_auth_epoch()
        principal = self._principals.get((idp_id, digest))
        if principal is None:
            principal = self._verify(idp_id, digest)
            if principal is None:
                return None
            self._principals[(idp_id, digest)] = principal
        self._last_used[principal.api_key_id] = time.time()
        return principal

    def _verify(self, idp_id: str, digest: str) -> Principal | None:
        assert self.local_conn is not None, "the store is not open"
        row = self.local_conn.execute(
            "SELECT k.id, k.secret_hash, k.users_write, k.groups_write FROM idps AS i "
            "JOIN api_keys AS k ON k.id = i.api_key_id WHERE i.id = ? AND k.revoked IS NULL",
            (idp_id,),
        ).fetchone()
        # Compare in constant time; an unknown IdP still costs one comparison, so timing tells nothing.
        expected = row[1] if row else "0" * 64
        if not hmac.compare_digest(expected, digest) or row is None:
            return None
        return Principal(idp_id, row[0], bool(row[2]), bool(row[3]))

    def _check_auth_epoch(self) -> None:
        moment = time.monotonic()
        if moment - self._auth_checked < AUTH_RECHECK_SECONDS:
            return
        assert self.local_conn is not None, "the store is not open"
        epoch = self.local_conn.execute("SELECT n FROM auth_epoch").fetchone()[0]
        self._auth_checked = moment
        if epoch != self._auth_epoch:
            self._principals.clear()
            self._auth_epoch = epoch

    def _auth_changed(self) -> None:
        """After a change to keys or IdPs made here: the next sign-in reads the database again."""
        self._principals.clear()
        self._auth_checked = -math.inf

    async def flush_last_used(self) -> None:
        """Persist last-used times, batched: auth itself never writes."""
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        await self.write(
            lambda conn: conn.executemany(
                "UPDATE api_keys SET last_used = ? WHERE id = ?", [(format_timestamp(t), k) for k, t in pending.items()]
            )
        )

    # --- SCIM resources ------------------------------------------------------------------------

    async def create(self, rtype: str, idp_id: str, doc: dict, members: list[Member] | None = None) -> Row:
        tmap = TABLES[rtype]
        row = Row(new_resource_id(), doc, 1, now(), "")
        row.modified = row.created

        def insert(conn: sqlite3.Connection) -> Row:
            # Checked in the write transaction: a create that was authenticated before its IdP was
            # deleted must not leave a row of it behind.
            _check_idp(conn, idp_id)
            try:
                _insert(conn, tmap, idp_id, row)
            except sqlite3.IntegrityError:
                raise _uniqueness(tmap, doc) from None
            if tmap is GROUPS:
                if members:
                    _apply_member_ops(conn, idp_id, row.id, [MemberOp("add", tuple(members))])
                row.members = _load_members(conn, row.id)
            else:
                row.groups = []
            return row

        return await self.write(insert)

    async def get(
        self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True, encode: Encoder | None = None
    ) -> Row | None:
        """The row, and `encoded` = encode(row) when asked, made where it was read: a group's full
        member list (100,000 members are 20 MB of JSON) is encoded on the reader thread that read it."""
        tmap = TABLES[rtype]

        def load(conn: sqlite3.Connection, walk_cap: int) -> Row | None:
            row = _load(conn, tmap, idp_id, resource_id, members, walk_cap)
            if row is not None and encode is not None:
                row.encoded = encode(row)
            return row

        if tmap is USERS or not members:  # one row by its id: a point read, unless its groups reach far
            return await self.read_in_place(load)
        return await self.read_far(load)

    async def search(
        self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None
    ) -> tuple[int, list[Row]]:
        """The total and one page of rows. With `encode`, each row gets `encoded` = encode(row),
        made where the rows are read (a reader thread, but for point lookups), and the page ends
        before the row that would take it past query.max_bytes of encoded rows (0: no limit). It
        also ends before a row whose groups or members would take it past PAGE_LOAD_STEPS. It
        always holds at least one row, so a client paging by startIndex + itemsPerPage goes on
        where it ended."""
        tmap = TABLES[rtype]
        where, params = ("1", []) if query.where is None else where_clause(query.where, tmap, idp_id)
        order = order_clause(query.sort_by, query.descending, tmap) if query.sort_by else "t.rowid"
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = ? AND {where}"

        def run(conn: sqlite3.Connection, walk_cap: int) -> tuple[int, list[Row]]:
            rows: list[Row] = []
            size, ended_early = 0, False
            # In place, _in_place bounds the whole read already.
            budget = None if conn is self.local_conn else _LoadBudget()
            if query.count > 0:
                # Row by row: the rows past a full page's bytes are never parsed, walked or encoded.
                sql = f"SELECT t.id, t.doc, t.version, t.created, t.modified {base} ORDER BY {order} LIMIT ? OFFSET ?"
                with contextlib.closing(
                    conn.execute(sql, (idp_id, *params, query.count, query.start_index - 1))
                ) as cursor:
                    for found in cursor:
                        row = Row(found[0], orjson.loads(found[1]), found[2], found[3], found[4])
                        if query.members:
                            if rows and budget is not None:
                                if not budget.run(conn, _attach_members, conn, tmap, row, walk_cap):
                                    ended_early = True
                                    break
                            else:
                                _attach_members(conn, tmap, row, walk_cap)
                        if encode is not None:
                            row.encoded = encode(row)
                            if rows and query.max_bytes and size + len(row.encoded) > query.max_bytes:
                                ended_early = True
                                break
                            size += len(row.encoded)
                        rows.append(row)
            if not ended_early and len(rows) < query.count and (rows or query.start_index == 1):
                # A short page is the last one: it tells the total, and a lookup by userName (one
                # row or none, Entra's commonest request) needs no count query.
                total = query.start_index - 1 + len(rows)
            else:
                total = conn.execute(f"SELECT count(*) {base}", (idp_id, *params)).fetchone()[0]
            return total, rows

        try:
            if is_point_lookup(query.where, tmap) and (tmap is USERS or not query.members):
                return await self.read_in_place(run)
            return await self.read_far(run)
        except sqlite3.OperationalError as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *, members: bool = True) -> Row:
        """Apply `change` to the current row in one write; the row as written, with its members or
        groups when asked (a user's groups are None when more than scim.max_user_groups)."""
        tmap = TABLES[rtype]

        def run(conn: sqlite3.Connection) -> Row:
            current = _load(conn, tmap, idp_id, resource_id, members=False)
            if current is None:
                _check_idp(conn, idp_id)
                raise not_found(f"{rtype} {shown(resource_id)} not found")
            result: Change = change(current)
            changed = False
            columns: dict[str, object] = {}
            if result.doc is not None and result.doc != current.doc:
                columns = _changed_columns(tmap, current.doc, result.doc)
                current.doc = result.doc
                changed = True
            if result.member_ops:
                changed = _apply_member_ops(conn, idp_id, current.id, result.member_ops) or changed
            if changed:
                current.version += 1
                current.modified = now()
                try:
                    _store_doc(conn, tmap, current, columns)
                except sqlite3.IntegrityError:
                    raise _uniqueness(tmap, current.doc) from None
            if members and tmap is USERS:
                try:
                    with _in_place(conn):
                        current.groups = _load_groups(conn, current.id, self.max_user_groups)
                except (_TooLongInPlace, GroupWalkTooLarge):
                    current.groups = None  # read after the commit, on a reader thread: never far in the writer
            elif members:
                current.members = _load_members(conn, current.id)
            return current

        row = await self.write(run)
        if members and tmap is USERS and row.groups is None:
            # The write is done whatever this finds: a user in more than max_user_groups groups is
            # returned with groups None, for the caller to answer without listing them.
            with contextlib.suppress(GroupWalkTooLarge):
                row.groups = await self.read(lambda conn: _load_groups(conn, row.id, self.max_user_groups))
        return row

    async def delete(self, rtype: str, idp_id: str, resource_id: str, check: CheckFn | None = None) -> None:
        tmap = TABLES[rtype]

        def run(conn: sqlite3.Connection) -> None:
            current = _load(conn, tmap, idp_id, resource_id, members=False)
            if current is None:
                _check_idp(conn, idp_id)
                raise not_found(f"{rtype} {shown(resource_id)} not found")
            if check is not None:
                check(current)
            stamp = now()
            # Groups that lose a member (this resource) change: bump their version.
            conn.execute(
                "UPDATE groups SET version = version + 1, modified = ? WHERE id IN "
                "(SELECT group_id FROM group_members WHERE member_id = ?)",
                (stamp, resource_id),
            )
            conn.execute("DELETE FROM group_members WHERE member_id = ?", (resource_id,))
            if tmap is GROUPS:
                conn.execute("DELETE FROM group_members WHERE group_id = ?", (resource_id,))
            conn.execute(f"DELETE FROM {tmap.table} WHERE id = ?", (resource_id,))

        await self.write(run)

    async def append_logs(self, records: list[LogRecord]) -> None:
        """Write provisioning log records (without id) in one statement (called with buffered batches)."""
        marks = ", ".join("?" * len(LOG_COLUMNS))
        rows = [record[: len(LOG_COLUMNS)] for record in records]
        await self.write(
            lambda conn: conn.executemany(
                f"INSERT INTO provisioning_log ({', '.join(LOG_COLUMNS)}) VALUES ({marks})", rows
            )
        )

    async def prune_logs(self, max_age_days: int, max_rows: int) -> int:
        """Delete log records older than max_age_days or beyond the newest max_rows (0 = no limit)."""

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            if max_age_days:
                cutoff = format_datetime(datetime.now(UTC) - timedelta(days=max_age_days))
                conn.execute("DELETE FROM provisioning_log WHERE time < ?", (cutoff,))
            if max_rows:
                conn.execute(
                    "DELETE FROM provisioning_log WHERE id <= "
                    "(SELECT id FROM provisioning_log ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (max_rows,),
                )
            return conn.total_changes - before

        return await self.write(run)

    async def counts(self, idp_id: str) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            users = conn.execute("SELECT count(*) FROM users WHERE idp_id = ?", (idp_id,)).fetchone()[0]
            groups = conn.execute("SELECT count(*) FROM groups WHERE idp_id = ?", (idp_id,)).fetchone()[0]
            return {"users": users, "groups": groups}

        return await self.read(run)

    # --- admin console and admin API: settings, sessions, directory pages, log queries ----------

    async def get_setting(self, key: str) -> str | None:
        rows = await self.read(_fetch, "SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def set_setting(self, key: str, value: str) -> None:
        stamp = now()
        await self.write(
            lambda conn: conn.execute(
                "INSERT INTO settings (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                (key, value, stamp),
            )
        )

    async def setting_or_create(self, key: str, value: str) -> str:
        """The stored value of key, storing `value` first when there is none (racing callers agree)."""
        stamp = now()

        def run(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT OR IGNORE INTO settings (key, value, updated) VALUES (?, ?, ?)", (key, value, stamp))
            return conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0]

        return await self.write(run)

    async def create_admin_session(self, session: AdminSession, client: str | None) -> None:
        stamp = now()

        def run(conn: sqlite3.Connection) -> None:
            # Expired sessions are swept at each sign-in, which keeps the table small without a timer.
            conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (stamp,))
            conn.execute(
                "INSERT INTO admin_sessions (id_hash, csrf_token, created, expires, client) VALUES (?, ?, ?, ?, ?)",
                (session.id_hash, session.csrf_token, session.created, session.expires, client),
            )

        await self.write(run)

    async def get_admin_session(self, id_hash: str) -> AdminSession | None:
        rows = await self.read(
            _fetch,
            "SELECT id_hash, csrf_token, created, expires FROM admin_sessions WHERE id_hash = ? AND expires > ?",
            (id_hash, now()),
        )
        return AdminSession(*rows[0]) if rows else None

    async def delete_admin_sessions(self, id_hash: str | None = None) -> None:
        """Delete one session (sign-out), or every session (the admin password changed)."""
        if id_hash is None:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions"))
        else:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions WHERE id_hash = ?", (id_hash,)))

    async def directory_page(
        self,
        rtype: str,
        idp_id: str,
        where: Node | None,
        *,
        text: str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> DirectoryPage:
        """A page in name order after (or before) a name: a walk along the UNIQUE (idp_id, name) index.

        Keyset paging costs the same on the last page of 100,000 users as on the first, where OFFSET
        would step over every earlier row. Names are unique regardless of case and the column
        collates NOCASE, so the name alone is a total order and a complete cursor.

        `text` is the console's plain search: the name contains it (users: userName, given or family
        name), or it is the externalId or id.
        """
        tmap = TABLES[rtype]
        name = "t.user_name" if tmap is USERS else "t.display_name"
        clause, params = ("1", []) if where is None else where_clause(where, tmap, idp_id)
        if text:
            text_clause, text_params = _text_search(tmap, text)
            clause, params = f"{clause} AND {text_clause}", [*params, *text_params]
        base = (
            f"SELECT t.id, t.doc, t.version, t.created, t.modified FROM {tmap.table} AS t "
            f"WHERE t.idp_id = ? AND {clause}"
        )

        def forward(conn: sqlite3.Connection, start: str | None) -> list[tuple]:
            keyset, extra = (f" AND {name} > ?", [start]) if start is not None else ("", [])
            return conn.execute(
                f"{base}{keyset} ORDER BY {name} LIMIT ?", (idp_id, *params, *extra, limit + 1)
            ).fetchall()

        def run(conn: sqlite3.Connection, walk_cap: int) -> DirectoryPage:
            total = conn.execute(
                f"SELECT count(*) FROM {tmap.table} AS t WHERE t.idp_id = ? AND {clause}", (idp_id, *params)
            ).fetchone()[0]
            found: list[tuple] | None = None
            if before is not None:
                backwards = conn.execute(
                    f"{base} AND {name} < ? ORDER BY {name} DESC LIMIT ?", (idp_id, *params, before, limit + 1)
                ).fetchall()
                if len(backwards) > limit:
                    found, has_previous, has_next = backwards[:limit][::-1], True, True
            if found is None:
                # Fewer than a page before the cursor: that is the first page, shown full.
                start = None if before is not None else after
                found = forward(conn, start)
                has_previous, has_next = start is not None, len(found) > limit
                found = found[:limit]
            rows = [Row(r[0], orjson.loads(r[1]), r[2], r[3], r[4]) for r in found]
            counts: dict[str, int] = {}
            if tmap is USERS:
                for row in rows:
                    row.groups = _load_groups(conn, row.id, walk_cap)
            elif rows:
                marks = ",".join("?" * len(rows))
                counts = {row.id: 0 for row in rows}
                counts.update(
                    conn.execute(
                        f"SELECT group_id, count(*) FROM group_members WHERE group_id IN ({marks}) GROUP BY group_id",
                        [row.id for row in rows],
                    ).fetchall()
                )
            return DirectoryPage(total, rows, has_previous, has_next, counts)

        try:
            return await self.read_far(run)
        except sqlite3.OperationalError as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def group_members(self, idp_id: str, group_id: str, limit: int) -> tuple[int, list[dict]]:
        """How many direct members a group has, and the first `limit` of them (without loading the rest)."""

        def run(conn: sqlite3.Connection) -> tuple[int, list[dict]]:
            total = conn.execute(
                "SELECT count(*) FROM group_members WHERE group_id = ? AND idp_id = ?", (group_id, idp_id)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT m.member_id, m.type, CASE m.type WHEN 'User' THEN "
                "(SELECT user_name FROM users WHERE id = m.member_id) "
                "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END "
                "FROM group_members AS m WHERE m.group_id = ? AND m.idp_id = ? LIMIT ?",
                (group_id, idp_id, limit),
            ).fetchall()
            return total, [{"value": r[0], "type": r[1], "display": r[2]} for r in rows]

        return await self.read(run)

    async def query_logs(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        """Records newest first, at most query.limit, and whether older ones match too."""
        conditions, params = _log_conditions(query)
        if query.before_id is not None:
            # Keyset on (time, id), the order of the (time) and (idp_id, time) indexes.
            conditions.append("(time, id) < (SELECT time, id FROM provisioning_log WHERE id = ?)")
            params.append(query.before_id)
        sql = (
            f"SELECT {LOG_RECORD_COLUMNS} FROM provisioning_log WHERE {' AND '.join(conditions) or '1'} "
            "ORDER BY time DESC, id DESC LIMIT ?"
        )
        rows = await self.read(_fetch, sql, (*params, query.limit + 1))
        return [LogRecord(*row) for row in rows[: query.limit]], len(rows) > query.limit

    async def get_log(self, log_id: int) -> LogRecord | None:
        rows = await self.read(_fetch, f"SELECT {LOG_RECORD_COLUMNS} FROM provisioning_log WHERE id = ?", (log_id,))
        return LogRecord(*rows[0]) if rows else None

    async def log_counters(self, idp_ids: list[str], since: str) -> dict[str, LogCounters]:
        """Per IdP: operations and failures since `since`, and the time of its newest record."""

        def run(conn: sqlite3.Connection) -> dict[str, LogCounters]:
            result = {}
            for idp_id in idp_ids:
                operations, failures = conn.execute(
                    "SELECT count(*), total(status >= 400) FROM provisioning_log WHERE idp_id = ? AND time >= ?",
                    (idp_id, since),
                ).fetchone()
                last = conn.execute("SELECT max(time) FROM provisioning_log WHERE idp_id = ?", (idp_id,)).fetchone()[0]
                result[idp_id] = LogCounters(operations, int(failures), last)
            return result

        return await self.read(run)


# --- functions that run on a connection's thread --------------------------------------------------


async def _run(conn: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    # aiosqlite has no public call to run a function on its thread; _execute is that call (the
    # version is pinned). One hop per unit of work is what keeps requests cheap.
    return await conn._execute(fn, conn._conn, *args)


def _run_batch(conn: sqlite3.Connection, fns: list[Callable]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn in fns:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, fn(conn)))
                conn.execute("RELEASE op")
            except Exception as exc:
                if not conn.in_transaction:  # SQLite rolled it all back (no space, I/O error): the batch failed
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _nothing(conn: sqlite3.Connection) -> None:
    """The empty unit of work the writer check sends through the write queue."""


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _idp_id() -> str:
    return uuid.uuid4().hex


class IdpDeleted(ScimError):
    """401 for a request authenticated just before its IdP was deleted: the write stored nothing,
    and the next request gets the ordinary 401 of an unknown IdP."""

    def __init__(self) -> None:
        super().__init__(401, "This IdP was deleted while the request ran; nothing was stored")


def _check_idp(conn: sqlite3.Connection, idp_id: str) -> None:
    if conn.execute("SELECT 1 FROM idps WHERE id = ?", (idp_id,)).fetchone() is None:
        raise IdpDeleted()


def _check_key_free(conn: sqlite3.Connection, key_id: str, key_name: str, idp_id: str) -> None:
    """A key belongs to one IdP: it signs in to that IdP's tenant URL and nowhere else."""
    other = conn.execute("SELECT name FROM idps WHERE api_key_id = ? AND id <> ?", (key_id, idp_id)).fetchone()
    if other is not None:
        raise AdminError(
            f"API key {key_name!r} is already selected for IdP {other[0]!r}; a key belongs to one IdP: "
            "create a new key for this one",
            409,
        )


def _uniqueness(tmap: TableMap, doc: dict) -> ScimError:
    if tmap is USERS:
        return ScimError(
            409,
            f"userName {shown(doc.get('userName'))} is already taken in this IdP (user names are "
            "unique regardless of letter case); look the user up with a userName filter",
            "uniqueness",
        )
    return ScimError(
        409,
        f"displayName {shown(doc.get('displayName'))} is already taken in this IdP (group names are "
        "unique regardless of letter case)",
        "uniqueness",
    )


def _hot_columns(tmap: TableMap, doc: dict) -> dict[str, object]:
    """The attributes kept in their own (indexed) columns, by column name, in table order."""
    if tmap is USERS:
        active = doc.get("active")
        return {
            "user_name": doc["userName"],
            "external_id": doc.get("externalId"),
            "active": None if active is None else int(active),
        }
    return {"display_name": doc["displayName"], "external_id": doc.get("externalId")}


def _insert(conn: sqlite3.Connection, tmap: TableMap, idp_id: str, row: Row) -> None:
    columns = _hot_columns(tmap, row.doc)
    conn.execute(
        f"INSERT INTO {tmap.table} (id, idp_id, {', '.join(columns)}, doc, version, created, modified)"
        f" VALUES (?, ?{', ?' * len(columns)}, ?, ?, ?, ?)",
        (row.id, idp_id, *columns.values(), _dumps(row.doc), row.version, row.created, row.modified),
    )


def _changed_columns(tmap: TableMap, old: dict, new: dict) -> dict[str, object]:
    """The hot columns (userName/displayName, externalId, active) whose value differs, by name."""
    before = _hot_columns(tmap, old)
    return {name: value for name, value in _hot_columns(tmap, new).items() if value != before[name]}


def _store_doc(conn: sqlite3.Connection, tmap: TableMap, row: Row, columns: dict[str, object]) -> None:
    # Setting an indexed column, even to its own value, rewrites its index entries: only the hot
    # columns that changed are set. Entra's disable (active only) costs half as much this way.
    sets = "".join(f"{name} = ?, " for name in columns)
    conn.execute(
        f"UPDATE {tmap.table} SET {sets}doc = ?, version = ?, modified = ? WHERE id = ?",
        (*columns.values(), _dumps(row.doc), row.version, row.modified, row.id),
    )


def _load(
    conn: sqlite3.Connection, tmap: TableMap, idp_id: str, resource_id: str, members: bool, walk_cap: int = 0
) -> Row | None:
    found = conn.execute(
        f"SELECT id, doc, version, created, modified FROM {tmap.table} WHERE id = ? AND idp_id = ?",
        (resource_id, idp_id),
    ).fetchone()
    if found is None:
        return None
    row = Row(found[0], orjson.loads(found[1]), found[2], found[3], found[4])
    if members:
        _attach_members(conn, tmap, row, walk_cap)
    return row


def _attach_members(conn: sqlite3.Connection, tmap: TableMap, row: Row, walk_cap: int) -> None:
    if tmap is GROUPS:
        row.members = _load_members(conn, row.id)
    else:
        row.groups = _load_groups(conn, row.id, walk_cap)


def _load_members(conn: sqlite3.Connection, group_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT m.member_id, m.type, CASE m.type WHEN 'User' THEN "
        "(SELECT user_name FROM users WHERE id = m.member_id) "
        "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END "
        "FROM group_members AS m WHERE m.group_id = ?",
        (group_id,),
    ).fetchall()
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in rows]


class _TooLongInPlace(Exception):
    """Work done in place passed IN_PLACE_STEPS: it is to be done again where it may take long."""


@contextlib.contextmanager
def _in_place(conn: sqlite3.Connection) -> Iterator[None]:
    """Stop the statements run in this block after about IN_PLACE_STEPS VM instructions each,
    raising _TooLongInPlace. (SQLite counts a cached statement's instructions across its runs, so
    one run now and then stops early: it is then done again on a reader, never answered wrong.)"""
    stopped = False

    def stop() -> int:
        nonlocal stopped
        stopped = True
        return 1

    conn.set_progress_handler(stop, IN_PLACE_STEPS)
    try:
        yield
    except sqlite3.OperationalError:
        if stopped:
            raise _TooLongInPlace from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


class _LoadBudget:
    """What is left of a page's PAGE_LOAD_STEPS."""

    def __init__(self) -> None:
        self.left = PAGE_LOAD_STEPS

    def run(self, conn: sqlite3.Connection, fn: Callable[..., None], *args: Any) -> bool:
        """fn(*args), its statements counted against the budget: False, fn stopped, when it ran out."""

        def tick() -> bool:
            self.left -= PAGE_LOAD_GRAIN
            return self.left <= 0

        conn.set_progress_handler(tick, PAGE_LOAD_GRAIN)
        try:
            fn(*args)
        except sqlite3.OperationalError:
            if self.left <= 0:
                return False
            raise
        finally:
            conn.set_progress_handler(None, 0)
        return True


class GroupWalkTooLarge(Exception):
    """A user's groups reach more groups than the walk was allowed to visit."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id


def too_many_groups(user_id: str, cap: int) -> ScimError:
    return ScimError(
        400,
        f"User {user_id} is in more than {cap} groups counting nested ones, more than this server lists "
        "(scim.max_user_groups); read it with excludedAttributes=groups",
        "tooMany",
    )


# A user's groups: the direct ones (by name), then those reached through nesting (by name). The
# walk is over group ids only, and UNION keeps each once: every group is visited once and each
# membership row read once, whatever the nesting (cycles included), so the walk is linear in the
# part of the graph above the user. LIMIT stops it one group past the cap.
GROUP_WALK = (
    "WITH RECURSIVE reach(gid) AS ("
    " SELECT group_id FROM group_members WHERE member_id = :user"
    " UNION SELECT gm.group_id FROM group_members AS gm JOIN reach ON gm.member_id = reach.gid"
    " LIMIT :limit)"
    " SELECT reach.gid, g.display_name,"
    " EXISTS (SELECT 1 FROM group_members WHERE group_id = reach.gid AND member_id = :user) AS direct"
    " FROM reach JOIN groups AS g ON g.id = reach.gid ORDER BY direct DESC, g.display_name"
)


def _load_groups(conn: sqlite3.Connection, user_id: str, cap: int) -> list[dict]:
    """The user's groups, direct and nested; GroupWalkTooLarge when they are more than `cap`."""
    if conn.execute("SELECT 1 FROM group_members WHERE member_id = ? LIMIT 1", (user_id,)).fetchone() is None:
        # In no group (every user during an initial sync): one index probe instead of the walk below.
        return []
    rows = conn.execute(GROUP_WALK, {"user": user_id, "limit": cap + 1}).fetchall()
    if len(rows) > cap:
        raise GroupWalkTooLarge(user_id)
    return [{"value": r[0], "display": r[1], "type": "direct" if r[2] else "indirect"} for r in rows]


def _apply_member_ops(conn: sqlite3.Connection, idp_id: str, group_id: str, ops: list[MemberOp]) -> bool:
    """Apply membership deltas in order; True when any row changed. Unknown ids abort the change."""
    before = conn.total_changes
    for op in ops:
        if op.op == "clear":
            conn.execute("DELETE FROM group_members WHERE group_id = ?", (group_id,))
            continue
        if op.op == "remove":
            conn.executemany(
                "DELETE FROM group_members WHERE group_id = ? AND member_id = ?",
                [(group_id, m.value) for m in op.members],
            )
            continue
        typed = _member_types(conn, idp_id, group_id, op.members)
        if op.op == "replace":
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS keep_members (id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM temp.keep_members")
            conn.executemany("INSERT OR IGNORE INTO temp.keep_members VALUES (?)", [(m,) for m, _ in typed])
            conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND member_id NOT IN (SELECT id FROM temp.keep_members)",
                (group_id,),
            )
        conn.executemany(
            "INSERT OR IGNORE INTO group_members (idp_id, group_id, member_id, type) VALUES (?, ?, ?, ?)",
            [(idp_id, group_id, member_id, kind) for member_id, kind in typed],
        )
    return conn.total_changes != before


def _member_types(
    conn: sqlite3.Connection, idp_id: str, group_id: str, members: tuple[Member, ...]
) -> list[tuple[str, str]]:
    """Resolve each member to (id, "User"|"Group") within the IdP, or fail naming the unknown ids."""
    ids = list(dict.fromkeys(m.value for m in members))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for member_id, kind in conn.execute(
            f"SELECT id, 'User' FROM users WHERE idp_id = ? AND id IN ({marks}) "
            f"UNION ALL SELECT id, 'Group' FROM groups WHERE idp_id = ? AND id IN ({marks})",
            (idp_id, *chunk, idp_id, *chunk),
        ):
            found[member_id] = kind
    missing = [i for i in ids if i not in found]
    if missing:
        listed = ", ".join(map(shown, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise invalid_value(f"members: no user or group with id {listed} in this IdP; nothing was changed")
    if group_id in found:
        raise invalid_value("members: a group cannot be a member of itself")
    declared = {m.value: m.type for m in members if m.type}
    for member_id, kind in found.items():
        if declared.get(member_id) and declared[member_id] != kind:
            raise invalid_value(f"members: {shown(member_id)} is a {kind}, not a {declared[member_id]}")
    return [(i, found[i]) for i in ids]


# The stored columns, then the resource's current name (two lookups by the unique id index).
LOG_RECORD_COLUMNS = ", ".join(
    [
        *LOG_COLUMNS,
        "id",
        "coalesce((SELECT user_name FROM users WHERE id = resource_id), "
        "(SELECT display_name FROM groups WHERE id = resource_id))",
    ]
)


def _like_pattern(text: str) -> str:
    return f"%{escape_like(text)}%"


def _text_search(tmap: TableMap, text: str) -> tuple[str, list]:
    pattern = _like_pattern(text)
    if tmap is GROUPS:
        return "(t.display_name LIKE ? ESCAPE '\\' OR t.external_id = ? OR t.id = ?)", [pattern, text, text]
    names = (
        "json_extract(t.doc, '$.name.givenName') LIKE ? ESCAPE '\\' OR "
        "json_extract(t.doc, '$.name.familyName') LIKE ? ESCAPE '\\'"
    )
    if '"' in text or "\\" in text:  # escaped inside the JSON text, so the text pre-check below would miss them
        return f"(t.user_name LIKE ? ESCAPE '\\' OR {names} OR t.external_id = ? OR t.id = ?)", [pattern] * 3 + [
            text,
            text,
        ]
    # The document is searched as text first, so only the few rows that contain the words at all pay
    # for parsing their JSON: a search through 100,000 users stays a single quick scan.
    return (
        f"(t.user_name LIKE ? ESCAPE '\\' OR (t.doc LIKE ? ESCAPE '\\' AND ({names})) "
        "OR t.external_id = ? OR t.id = ?)",
        [pattern] * 4 + [text, text],
    )


def _log_conditions(query: LogQuery) -> tuple[list[str], list]:
    conditions: list[str] = []
    params: list = []
    if query.idp_id:
        conditions.append("idp_id = ?")
        params.append(query.idp_id)
    if query.failures is not None:
        conditions.append("status >= 400" if query.failures else "status < 400")
    if query.operation:
        conditions.append("operation = ?")
        params.append(query.operation)
    if query.text:
        pattern = _like_pattern(query.text)
        # PATCH and DELETE records name their resource by id only: match its current name as well.
        conditions.append(
            "(target LIKE ? ESCAPE '\\' OR detail LIKE ? ESCAPE '\\' OR path LIKE ? ESCAPE '\\' "
            "OR resource_id = ? OR resource_id IN (SELECT id FROM users WHERE user_name LIKE ? "
            "ESCAPE '\\' UNION ALL SELECT id FROM groups WHERE display_name LIKE ? ESCAPE '\\'))"
        )
        params += [pattern, pattern, pattern, query.text, pattern, pattern]
    if query.since:
        conditions.append("time >= ?")
        params.append(query.since)
    if query.until:
        conditions.append("time < ?")
        params.append(query.until)
    return conditions, params
