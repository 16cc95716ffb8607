"""Watches every SCIM request from the outside (pure ASGI) and records it in the provisioning log.

Records are buffered in memory and written in batches through the store's writer, so recording
never adds a database round trip to a SCIM request; a clean shutdown flushes what is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scim.filters import format_datetime
from scim.operations import classify, may_hold_secrets, redact, target_of
from storage.sqlite import SqliteStore

log = logging.getLogger("scimlet.provisioning")
SCIM_PREFIX = "/v1/scim/"
MAX_LOGGED_BODY = 16_384
FLUSH_SECONDS = 0.5
FLUSH_RECORDS = 500

Listener = Callable[[dict], None]


class ProvisioningLog:
    """The buffer between requests and the provisioning_log table."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.pending: list[dict] = []
        self.task: asyncio.Task | None = None
        self.written = 0

    def add(self, record: dict) -> None:
        self.pending.append(record)
        if len(self.pending) >= FLUSH_RECORDS and self.task is not None:
            asyncio.get_running_loop().create_task(self.flush())

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write provisioning log records; they stay buffered")

    async def flush(self) -> None:
        if not self.pending:
            return
        records, self.pending = self.pending, []
        try:
            await self.store.append_logs(records)
        except BaseException:
            self.pending[:0] = records
            raise
        self.written += len(records)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.flush()


class ObserveMiddleware:
    """Times each SCIM request, names its operation and hands a record to every listener."""

    def __init__(self, app: ASGIApp, listeners: list[Listener]) -> None:
        self.app = app
        self.listeners = listeners

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SCIM_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_body: list[bytes] = []
        response_body: list[bytes] = []
        status = 500

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, request_body)) < MAX_LOGGED_BODY:
                request_body.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and sum(map(len, response_body)) < MAX_LOGGED_BODY:
                response_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        finally:
            record = build_record(scope, status, b"".join(request_body), b"".join(response_body),
                                  (time.perf_counter() - started) * 1000)
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:
                    log.exception("a request listener failed")


def _json(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_BODY else text[:MAX_LOGGED_BODY] + "…"


def _logged_request_body(raw: bytes, parsed: object) -> str | None:
    if not raw:
        return None
    if parsed is None:
        # A body that is not JSON cannot be redacted field by field, so it is not kept at all.
        return f"[{len(raw)} bytes, not JSON]"
    if may_hold_secrets(raw):
        return _clip(orjson.dumps(redact(parsed)).decode())
    return _clip(raw.decode("utf-8", "replace"))


def build_record(scope: Scope, status: int, request_raw: bytes, response_raw: bytes, duration_ms: float) -> dict:
    path = scope["path"]
    segments = path[len(SCIM_PREFIX):].split("/")
    idp_id, rest = segments[0], [s for s in segments[1:] if s]
    method = scope["method"]
    collection = len(rest) == 1
    # Parse only what the record uses: the query names a list's operation ("Test connection", "Find
    # User"); the answer holds a new resource's id or an error's scimType and detail. A lookup's
    # ListResponse or a GET's resource is stored as sent, never parsed.
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)) \
        if method == "GET" and collection else {}
    request_json = _json(request_raw)
    response_json = _json(response_raw) if status >= 400 or (method == "POST" and collection) else None
    operation, rtype = classify(method, rest, query, request_json)
    resource_id = rest[1] if len(rest) > 1 and rest[1] != ".search" else None
    if isinstance(response_json, dict) and resource_id is None and isinstance(response_json.get("id"), str):
        resource_id = response_json["id"]
    target = target_of(rtype, request_json, None) or target_of(rtype, response_json, resource_id)
    if target is None and operation in ("Find User", "Find Group", "Test connection"):
        target = query.get("filter")
    error = response_json if status >= 400 and isinstance(response_json, dict) else {}
    principal = scope.get("state", {}).get("principal")
    client = scope.get("client")
    return {
        "time": format_datetime(datetime.now(UTC)),
        "idp_id": idp_id,
        "api_key_id": principal.api_key_id if principal is not None else None,
        "method": method,
        "path": path,
        "operation": operation,
        "resource_type": rtype,
        "resource_id": resource_id,
        "target": target,
        "status": status,
        "scim_type": error.get("scimType"),
        "detail": error.get("detail"),
        "duration_ms": round(duration_ms, 3),
        "client": client[0] if client else None,
        "request_body": _logged_request_body(request_raw, request_json),
        "response_body": _clip(response_raw.decode("utf-8", "replace")) if response_raw else None,
    }
