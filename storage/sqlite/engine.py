"""The SQLite connection engine: WAL, one writer connection with group commit, a few readers, reads in
place on the event loop, checkpoints on a connection of their own, and the mapping of a database that
cannot store a write to 503.

Each aiosqlite call is a hand-off to the connection's thread, so every request costs one hop: a
whole unit of work (read, run the pure SCIM change, write) runs as one function on that thread.
Concurrent writes queue up while a batch runs and then share one transaction (group commit); each
runs inside its own SAVEPOINT, so one failing write never affects another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import aiosqlite

from scim.errors import ScimError
from storage.resource_rules import ReadTooLong, too_many_groups

log = logging.getLogger("scimlet.storage")
CHECKPOINT_SECONDS = 2.0
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
STREAM_CACHE_KIB = 2048  # the page cache of a member stream's connection (Engine.streamer)
# Member streams under way at once, each with its connection and thread; one more waits up to
# STREAM_WAIT_SECONDS for one to end (a stalled client holds its stream up to server.write_timeout),
# then gets 503. PostgreSQL's are bounded the same way by its pool.
MAX_STREAMS = 16
STREAM_WAIT_SECONDS = 5.0
# The watchdog that stops reads past database.read_timeout_ms looks at the readers this many times
# per timeout (a read is stopped within 1.25 timeouts), but no more often than every 5 ms.
WATCHDOG_LOOKS = 4
WATCHDOG_MIN_SECONDS = 0.005


def _connect_sync(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _configure(conn, synchronous)
    return conn


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=OFF")
    # 8 MB of page cache per connection (writer, readers, the event loop's, the checkpointer's). Peak
    # RSS under make bench-scale's load, 10,000 / 1,000,000 users: 155-162 MB at 32 MB; 154 / 134 MB
    # at 16 MB (after the events and console work made the idle process 62 MB, not 44); 136 / 109 MB
    # at 8 MB, with the same server CPU per lookup, PATCH and create (0.11, 0.13, 0.15 ms at 1,000,000
    # users): the OS page cache holds the file. 2026-12-07, --backends sqlite.
    conn.execute("PRAGMA cache_size=-8000")
    # Sorts and DISTINCTs (a user's groups, GROUP BY, UNION) build temporary B-trees; on disk each
    # one opens and unlinks a file, 100 µs against 10 µs in memory.
    conn.execute("PRAGMA temp_store=MEMORY")


class Engine:
    """The connections of one SQLite database and the two kinds of unit of work: reads and group-committed writes."""

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
        read_timeout: float = 0,
    ) -> None:
        self.path = path
        self.read_timeout = read_timeout  # seconds a read on a reader thread may run (0: no limit)
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
        self._watched: list[WatchedReader] = []  # one per reader, in the same order
        self._watchdog_task: asyncio.Task | None = None
        self.local_conn: sqlite3.Connection | None = None
        self._next_reader = 0
        self._queue: deque[tuple[Callable, asyncio.Future]] = deque()
        self._wakeup: asyncio.Event  # made by open(), in the event loop the store then serves
        self._writer_task: asyncio.Task | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task | None = None
        # Connections of finished member streams (stream_members), each with its thread, kept for
        # the next: a stream holds its connection, and its snapshot, for as long as it is sent.
        self._streamers: list[aiosqlite.Connection] = []
        self._stream_slots = asyncio.Semaphore(MAX_STREAMS)
        self.batches = 0

    async def open(self) -> None:
        self.writer = await self._aconnect()
        self._files = {self.path: _identity(os.stat(self.path))}
        if self.max_size_bytes:
            page_size = (await _run(self.writer, fetch, "PRAGMA page_size", ()))[0][0]
            await _run(self.writer, fetch, f"PRAGMA max_page_count = {max(1, self.max_size_bytes // page_size)}", ())
        self.readers = [await self._aconnect() for _ in range(self.reader_count)]
        self._watched = [WatchedReader(reader._conn) for reader in self.readers]
        if self.read_timeout:
            self._watchdog_task = asyncio.create_task(self._watchdog())
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
        await _run(self.writer, fetch, "PRAGMA wal_autocheckpoint=0", ())
        self._checkpointer = await self._aconnect()
        self._checkpoint_task = asyncio.create_task(self._checkpoint_loop(self._checkpointer))

    async def _aconnect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await _run(conn, _configure, self.synchronous)
        return conn

    async def close(self) -> None:
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        for task in (self._checkpoint_task, self._watchdog_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._checkpoint_task = self._watchdog_task = None
        for conn in [self.writer, *self.readers, self._checkpointer, *self._streamers]:
            if conn is not None:
                await conn.close()
        self.writer, self.readers, self._watched, self._checkpointer, self._streamers = None, [], [], None, []
        if self.local_conn is not None:
            self.local_conn.close()
            self.local_conn = None

    @property
    def write_queue_depth(self) -> int:
        return len(self._queue)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(sqlite3_connection, *args) on a reader thread; past database.read_timeout_ms the
        watchdog stops it and the read is 400 tooMany (a reader held for minutes by a scan of a big
        directory is a reader no other request gets meanwhile)."""
        index = self._next_reader
        self._next_reader = (index + 1) % len(self.readers)
        try:
            return await _run(self.readers[index], self._watched[index].run, fn, *args)
        except ReadTimedOut:
            raise ReadTooLong(self.read_timeout) from None

    async def _watchdog(self) -> None:
        """Interrupt (sqlite3_interrupt, made to be called from another thread) the reads that run
        past database.read_timeout_ms. A clock looked at from the reader threads instead, in a
        progress handler, is a Python call that takes the GIL from the event loop thousands of times
        a second: reading a group of 500,000 members took 12.6 s instead of 8.4 s, and requests of
        other tenants waited up to 300 ms instead of 80 ms."""
        interval = max(WATCHDOG_MIN_SECONDS, self.read_timeout / WATCHDOG_LOOKS)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for watched in self._watched:
                watched.stop_if_past(now - self.read_timeout)

    async def read_in_place(self, fn: Callable[[sqlite3.Connection, int], Any]) -> Any:
        """fn(connection, walk cap) in place on the event loop, for reads that are a few index
        lookups (cheaper than the hand-off to a reader thread); stopped past IN_PLACE_STEPS, as when
        a user's groups reach far, it is done again on a reader thread (read_far)."""
        cap = self.max_user_groups
        conn = self.local_conn
        assert conn is not None, "the store is not open"
        try:
            with in_place(conn):
                return fn(conn, cap)
        except TooLongInPlace:
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

    async def streamer(self) -> aiosqlite.Connection:
        """A reader connection of its own, for a read that spans many hops to its thread in one
        snapshot (a member stream); give it back with release_streamer. At most MAX_STREAMS are
        out at once: ScimError 503 when none comes back within STREAM_WAIT_SECONDS."""
        try:
            await asyncio.wait_for(self._stream_slots.acquire(), STREAM_WAIT_SECONDS)
        except TimeoutError:
            raise ScimError(
                503, f"{MAX_STREAMS} group member lists are being sent already; retry after the Retry-After delay"
            ) from None
        if self._streamers:
            return self._streamers.pop()
        try:
            conn = await self._aconnect()
            # A stream reads its pages once, in order: the readers' 8 MB page cache would only grow
            # the process by that much per stream under way (three 100,000-member reads at 16 MB: 48 MB more).
            await _run(conn, fetch, f"PRAGMA cache_size=-{STREAM_CACHE_KIB}", ())
        except BaseException:
            self._stream_slots.release()
            raise
        return conn

    async def release_streamer(self, conn: aiosqlite.Connection, *, reading: bool = True) -> None:
        """End the connection's read transaction, if any (reading=False: the caller knows it has
        none, and no hop to its thread is needed), and keep it for the next stream (as many as
        there are readers; the others are closed, with their threads)."""
        try:
            if reading:
                await _run(conn, _end_read)
        except BaseException:
            await conn.close()
            raise
        finally:
            self._stream_slots.release()
        if self.writer is not None and len(self._streamers) < self.reader_count:
            self._streamers.append(conn)
        else:
            await conn.close()

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
                await _run(checkpointer, fetch, "PRAGMA wal_checkpoint(PASSIVE)", ())
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed, will retry: %s", exc)


async def run_on(conn: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(sqlite3_connection, *args) on the thread of this connection (one of Engine.streamer's)."""
    return await _run(conn, fn, *args)


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


def _end_read(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")  # a read transaction: nothing to keep


def fetch(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


class TooLongInPlace(Exception):
    """Work done in place passed IN_PLACE_STEPS: it is to be done again where it may take long."""


@contextlib.contextmanager
def in_place(conn: sqlite3.Connection) -> Iterator[None]:
    """Stop the statements run in this block after about IN_PLACE_STEPS VM instructions each,
    raising TooLongInPlace. (SQLite counts a cached statement's instructions across its runs, so
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
            raise TooLongInPlace from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


class ReadTimedOut(Exception):
    """The watchdog stopped a read that ran past database.read_timeout_ms."""


class WatchedReader:
    """A reader connection and when the read it runs now started, for the watchdog."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()  # the read's start and the interrupt: the watchdog never stops the next read
        self.started: float | None = None
        self.stopped = False

    def run(self, conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(conn, *args) on the reader's thread, watched; ReadTimedOut when the watchdog stopped it."""
        with self.lock:
            self.started, self.stopped = time.monotonic(), False
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError:
            if self.stopped:
                raise ReadTimedOut from None
            raise
        finally:
            with self.lock:
                self.started = None

    def stop_if_past(self, started_before: float) -> None:
        """Interrupt the read under way if it started before `started_before` (on the event loop)."""
        with self.lock:
            if self.started is not None and self.started < started_before and not self.stopped:
                self.stopped = True
                self.conn.interrupt()


class GroupWalkTooLarge(Exception):
    """A user's groups reach more groups than the walk was allowed to visit."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id
