"""GET /healthz (the process answers) and GET /readyz (it can serve SCIM traffic), unauthenticated.

Readiness checks what a SCIM request needs: the database file is where the config says (and is the
file the server has open), a reader connection answers and finds no pending migration, a write goes
through the single writer (an empty write joins the next group commit, so the check costs one batch
slot, not a transaction of its own under load), and there is room to write: no write was refused for
lack of space in the last minute and the disk has database.min_free_bytes free. Concurrent readiness
probes share one check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Awaitable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scim.errors import ScimError
from storage.sqlite import SqliteStore, pending_migrations

log = logging.getLogger("scimlet.health")
READY_TIMEOUT = 2.0  # seconds the reader and the writer each have to answer
NO_STORE = {"Cache-Control": "no-store"}
ALIVE = orjson.dumps({"status": "ok"})


class Health:
    def __init__(self, store: SqliteStore, timeout: float = READY_TIMEOUT, min_free_bytes: int = 0) -> None:
        self.store = store
        self.timeout = timeout
        self.min_free_bytes = min_free_bytes
        self._check: asyncio.Task | None = None

    def routes(self) -> list[Route]:
        return [Route("/healthz", self.healthz, methods=["GET"]), Route("/readyz", self.readyz, methods=["GET"])]

    async def healthz(self, request: Request) -> Response:
        return Response(ALIVE, media_type="application/json", headers=NO_STORE)

    async def readyz(self, request: Request) -> Response:
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self.check())
        checks = await asyncio.shield(self._check)
        ready = all(value == "ok" for value in checks.values())
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        return Response(
            orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json", headers=NO_STORE
        )

    async def check(self) -> dict[str, str]:
        """{"database", "migrations", "writer", "disk"} -> "ok" or what is wrong (no paths: the answer is public)."""
        checks = {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        # Open connections keep reading and writing a database file that was deleted or replaced,
        # and everything written from then on is lost at the next restart: look at the path itself.
        if not os.path.isfile(self.store.path):
            log.warning("readiness: the database file %s is missing", self.store.path)
            checks["database"] = "the database file is missing"
        elif lost := self.store.check_files():
            checks["database"] = f"{lost}; restart the server"
        space = self.store.space_problem(self.min_free_bytes)
        if space:
            log.warning("readiness: the database is short of space: %s", space)
            checks["disk"] = space
        reader: list[str] | BaseException
        writer: None | BaseException
        reader, writer = await asyncio.gather(
            self._timed(self.store.read(pending_migrations)),
            self._timed(self.store.write(_nothing)),
            return_exceptions=True,
        )
        if isinstance(reader, BaseException):
            checks["database"] = _failure("the database does not answer reads", reader, self.timeout)
            checks["migrations"] = "unknown: the database does not answer"
        elif reader:
            checks["migrations"] = f"{len(reader)} pending: {', '.join(reader)}; run `python app.py migrate`"
        if isinstance(writer, BaseException):
            checks["writer"] = _failure("the database writer does not complete writes", writer, self.timeout)
        return checks

    async def _timed(self, work: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(work, self.timeout)


def _nothing(conn: sqlite3.Connection) -> None:
    """The empty unit of work the writer check sends through the write queue."""


def _failure(what: str, exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what} within {timeout:g} s"
    if isinstance(exc, ScimError) and exc.status == 429:
        return "busy: the write queue is full (scim.max_write_queue)"
    if isinstance(exc, ScimError) and exc.status == 503:
        return f"{what}: the database cannot store writes"
    log.warning("readiness: %s: %s", what, exc)
    return f"{what}: {type(exc).__name__}"
