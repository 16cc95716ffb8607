"""The PostgreSQL connection engine: an asyncpg pool shared by reads and writes, each write one
transaction (retried when PostgreSQL picks it as a deadlock or serialization victim), and the mapping
of a database that cannot be reached to 503 with Retry-After.

Unlike SQLite's single writer there is no write queue of our own: PostgreSQL's row locks order
concurrent writes, also those of other instances sharing the database. Writes beyond the pool's
connections wait for one, and scim.max_write_queue bounds how many may wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

from scim.errors import ScimError
from settings import masked_url
from storage.resource_rules import ReadTooLong

log = logging.getLogger("scimlet.storage")
T = TypeVar("T")
Item = TypeVar("Item")
# The most writes one batched statement carries (SQLite's group commit takes up to 256).
MAX_BATCH = 256
# A pooled connection (what read and write hand their functions) or one of its own (connect).
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# A transaction PostgreSQL aborted to resolve a deadlock or a serialization conflict is run again.
RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
ATTEMPTS = 5
# How long a member stream waits for one of the snapshot slots (Engine.snapshot) before its 503.
SNAPSHOT_WAIT_SECONDS = 5.0
# The database cannot be reached or cannot work now: down, restarting, out of connections or disk,
# a statement past statement_timeout, a standby after a failover. The client may retry.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
)


class Engine:
    """The pool of one PostgreSQL database and the two kinds of unit of work: reads and writes."""

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 2,
        pool_max: int = 10,
        connect_timeout: float = 5,
        statement_timeout: float = 30,
        retry_after: int = 5,
        max_write_queue: int = 0,
        max_user_groups: int = 5000,
        read_timeout: float = 0,
    ) -> None:
        self.url = url
        self.read_timeout = read_timeout  # seconds a timed read may run (0: no limit)
        self.pool_min = min(pool_min, pool_max)
        self.pool_max = pool_max
        # Snapshots (member streams) hold a pooled connection while their answer is sent, as long
        # as a slow client takes: at most half the pool, so that the other requests keep the rest.
        self._snapshot_slots = asyncio.Semaphore(max(1, self.pool_max // 2))
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.retry_after = retry_after
        self.max_write_queue = max_write_queue
        self.max_user_groups = max_user_groups
        self.pool: asyncpg.Pool | None = None
        self.batches = 0
        self._writes = 0  # writes started and not finished

    @property
    def shown_url(self) -> str:
        return masked_url(self.url)

    async def connect(self) -> Connection:
        """A connection of its own (migrations, the sign-in listener), outside the pool."""
        return await asyncpg.connect(self.url, timeout=self.connect_timeout, server_settings=self._server_settings())

    def _server_settings(self) -> dict[str, str]:
        return {
            "application_name": "scimlet",
            "statement_timeout": str(int(self.statement_timeout * 1000)),
            # asyncpg prepares every statement once per connection; PostgreSQL would still plan a
            # lookup anew at each run (a custom plan: 0.7 ms of planning for 0.1 ms of work)
            # whenever it guesses the generic plan dearer. Ours are keyed by unique or per-IdP
            # indexes whatever the values: the generic plan is the plan.
            "plan_cache_mode": "force_generic_plan",
            # The estimated cost of a page of users with their group walks passes jit_above_cost,
            # and compiling it took 550 ms for a 2 ms query (a page at startIndex 2,501 of 20,000).
            # Nothing here runs long enough to gain from JIT.
            "jit": "off",
        }

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.url,
            min_size=self.pool_min,
            max_size=self.pool_max,
            timeout=self.connect_timeout,
            server_settings=self._server_settings(),
            reset=_keep_session,
        )

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout)
            except (TimeoutError, *UNAVAILABLE):
                pool.terminate()

    @property
    def write_queue_depth(self) -> int:
        return self._writes

    async def read(self, fn: Callable[[Connection], Awaitable[T]], *, timed: bool = False) -> T:
        """fn(connection) on a pooled connection, outside any transaction. Timed (a read that may
        scan: a filter that is not a lookup by an indexed attribute, a list page, the console's
        directory), in a read-only transaction whose statements PostgreSQL cancels past
        database.read_timeout_ms (400 tooMany, and the connection goes back to the pool usable), and
        planned for their parameters: a generic plan guesses a LIMIT or OFFSET parameter at a tenth
        of the table, and at 1,000,000 users sorted the whole table for a page of 100 (200 ms where
        the index gives it in 0.2; the last page 1.2 s against 0.2). (Two more round trips, so the
        lookups that make most of the traffic are not timed.)"""
        if not timed:
            return await self.run(fn)
        settings = "SET LOCAL plan_cache_mode = force_custom_plan"
        if self.read_timeout:
            settings += f"; SET LOCAL statement_timeout = {max(1, round(self.read_timeout * 1000))}"

        async def run(conn: Connection) -> T:
            started = time.monotonic()
            try:
                async with conn.transaction(readonly=True):
                    await conn.execute(settings)
                    return await fn(conn)
            except asyncpg.QueryCanceledError:
                # By the elapsed time, not the message (lc_messages may translate it): sooner, an
                # operator cancelled it (pg_cancel_backend), a 503 as before.
                if not self.read_timeout or time.monotonic() - started < self.read_timeout:
                    raise
                raise ReadTooLong(self.read_timeout) from None

        return await self.run(run)

    async def write(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """fn(connection) inside one transaction, committed when it returns, rolled back when it
        raises; run again (fn must allow it) when PostgreSQL aborts it for a deadlock."""
        async with self._write_slot():
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    result = await self.run(fn, transaction=True)
                    self.batches += 1
                    return result
                except RETRIED:
                    if attempt == ATTEMPTS:
                        raise ScimError(
                            503, "The write kept conflicting with concurrent writes; nothing was stored; retry"
                        ) from None
                    await asyncio.sleep(0.01 * attempt)
            raise AssertionError("unreachable")

    async def write_one(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """fn(connection) outside a transaction, for a write that is one statement (atomic by
        itself) or that guards itself (a compare-and-set): no BEGIN and COMMIT round trips."""
        async with self._write_slot():
            result = await self.run(fn)
            self.batches += 1
            return result

    @contextlib.asynccontextmanager
    async def _write_slot(self) -> AsyncIterator[None]:
        """A place among the writes under way: 429 past scim.max_write_queue."""
        if self.max_write_queue and self._writes >= self.max_write_queue:
            raise ScimError(429, "The server is busy with other writes; retry after the Retry-After delay")
        self._writes += 1
        try:
            yield
        finally:
            self._writes -= 1

    async def run(self, fn: Callable[[Connection], Awaitable[T]], *, transaction: bool = False) -> T:
        """fn(connection) on a pooled connection (in a transaction when asked). A connection that
        PostgreSQL ended while it sat in the pool (a restart, pg_terminate_backend) can still look
        open and fail its first operation with InternalClientError before anything reaches the
        server: it is dropped and fn runs once more on a new one. A connection that fails any other
        way is dropped too, and the request gets 503."""
        for attempt in (1, 2):
            try:
                async with self._pool().acquire(timeout=self.connect_timeout) as conn:
                    try:
                        if not transaction:
                            return await fn(conn)
                        async with conn.transaction():
                            return await fn(conn)
                    except (*UNAVAILABLE, asyncpg.InternalClientError):
                        conn.terminate()  # the pool opens a new connection in its place
                        raise
            except asyncpg.InternalClientError as exc:
                if attempt == 2:
                    raise self.unavailable(exc) from None
                log.info("PostgreSQL connection found broken (%s); retrying on a new one", exc)
            except UNAVAILABLE as exc:
                raise self.unavailable(exc) from None
        raise AssertionError("unreachable")

    async def snapshot(self) -> tuple[Connection, Callable[[], Awaitable[None]]]:
        """A pooled connection of its own in a read-only REPEATABLE READ transaction (one snapshot
        across many statements), and the function that ends it and gives the connection back
        (idempotent). A connection found broken is replaced once, as in run(). At most half the
        pool at once: ScimError 503 when none is given back within SNAPSHOT_WAIT_SECONDS."""
        pool = self._pool()
        try:
            await asyncio.wait_for(self._snapshot_slots.acquire(), SNAPSHOT_WAIT_SECONDS)
        except TimeoutError:
            raise ScimError(
                503,
                f"{max(1, self.pool_max // 2)} group member lists are being sent already; "
                "retry after the Retry-After delay",
            ) from None
        try:
            return await self._begin_snapshot(pool)
        except BaseException:
            self._snapshot_slots.release()
            raise

    async def _begin_snapshot(self, pool: asyncpg.Pool) -> tuple[Connection, Callable[[], Awaitable[None]]]:
        """snapshot()'s connection and transaction, once its slot is taken."""
        for attempt in (1, 2):
            try:
                conn = await pool.acquire(timeout=self.connect_timeout)
            except UNAVAILABLE as exc:
                raise self.unavailable(exc) from None
            transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            try:
                await transaction.start()
            except (*UNAVAILABLE, asyncpg.InternalClientError) as exc:
                conn.terminate()
                await pool.release(conn)
                if attempt == 2 or not isinstance(exc, asyncpg.InternalClientError):
                    raise self.unavailable(exc) from None
                continue
            return conn, _releaser(pool, conn, transaction, self._snapshot_slots)
        raise AssertionError("unreachable")

    def _pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "the store is not open"
        return self.pool

    def unavailable(self, exc: BaseException) -> ScimError:
        if isinstance(exc, asyncpg.QueryCanceledError):
            what = "took longer than postgresql.statement_timeout"
        elif isinstance(exc, asyncpg.DiskFullError):
            what = "has no disk space left"
        elif isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            what = "is read-only (a standby?)"
        else:
            what = f"cannot be reached ({type(exc).__name__})"
        log.warning("PostgreSQL %s: %s", what, exc)
        return ScimError(
            503,
            f"The database {what}; nothing was stored; retry after the Retry-After delay",
            retry_after=self.retry_after,
        )


class Batcher(Generic[Item, T]):
    """Concurrent writes of one kind sent as one statement, PostgreSQL's equivalent of the SQLite
    backend's group commit: while one batch is with the database the next writes queue up, and
    then all of them go together. A write alone goes at once (the next turn of the event loop).

    flush(connection, items) runs one batch outside a transaction (its statement is atomic by
    itself) and returns an outcome per item: its result, or the exception that item gets."""

    def __init__(
        self, engine: Engine, flush: Callable[[Connection, list[Item]], Awaitable[list[T | BaseException]]]
    ) -> None:
        self.engine = engine
        self.flush = flush
        self._queue: deque[tuple[Item, asyncio.Future[T]]] = deque()
        self._task: asyncio.Task | None = None

    async def submit(self, item: Item) -> T:
        engine = self.engine
        if engine.max_write_queue and engine._writes >= engine.max_write_queue:
            raise ScimError(429, "The server is busy with other writes; retry after the Retry-After delay")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        engine._writes += 1
        if self._task is None or self._task.get_loop() is not future.get_loop():
            # None draining, or only one in a loop that no longer runs (a store moved to another loop).
            self._task = asyncio.create_task(self._drain())
        try:
            return await future
        finally:
            engine._writes -= 1

    def _flush_of(self, items: list[Item]) -> Callable[[Connection], Awaitable[list[T | BaseException]]]:
        return lambda conn: self.flush(conn, items)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                items = [item for item, _ in batch]
                outcomes: list[T | BaseException]
                try:
                    outcomes = await self.engine.run(self._flush_of(items))
                    self.engine.batches += 1
                except Exception as exc:  # the statement failed as a whole: every write in it gets why
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its request was cancelled meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            if self._task is asyncio.current_task():
                self._task = None


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the pooled sessions never change
    their state (no SET, LISTEN, cursor or advisory lock: the sign-in listener and migrations use
    connections of their own), and asyncpg still rolls back a transaction left open. asyncpg's own
    reset (RESET ALL, UNLISTEN *, ...) is one more round trip per request: without it lookups by
    userName went from 1,109/s to 2,087/s (32 connections; scimlet and PostgreSQL on one core)."""


def _releaser(
    pool: asyncpg.Pool,
    conn: asyncpg.pool.PoolConnectionProxy,
    transaction: asyncpg.transaction.Transaction,
    slots: asyncio.Semaphore,
) -> Callable[[], Awaitable[None]]:
    """The function that ends a snapshot's transaction and gives its connection and slot back, once."""
    held: asyncpg.pool.PoolConnectionProxy | None = conn

    async def release() -> None:
        nonlocal held
        if held is None:
            return
        taken, held = held, None
        try:
            await transaction.rollback()  # read only: nothing to keep
        except Exception:
            taken.terminate()  # cut off mid-statement: the pool opens a new one in its place
        try:
            await pool.release(taken)
        finally:
            slots.release()

    return release


def status_count(status: str) -> int:
    """The rows a statement changed, from its status ("INSERT 0 3", "DELETE 2", "UPDATE 1")."""
    return int(status.rsplit(" ", 1)[-1])
