"""GET /healthz (the process answers) and GET /readyz (it can serve SCIM traffic), unauthenticated.

Readiness checks what a SCIM request needs, through the store (`OperationsStore.readiness`: the
database is there, answers reads, finds no pending migration, completes a write and has room to
write), each probe bounded by the timeout here. Concurrent readiness probes share one check.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage import OperationsStore

READY_TIMEOUT = 2.0  # seconds the reader and the writer each have to answer
NO_STORE = {"Cache-Control": "no-store"}
ALIVE = orjson.dumps({"status": "ok"})


class Health:
    def __init__(self, store: OperationsStore, timeout: float = READY_TIMEOUT) -> None:
        self.store = store
        self.timeout = timeout
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
        return await self.store.readiness(self.timeout)
