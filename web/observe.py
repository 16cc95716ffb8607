"""The provisioning log: a record of every SCIM request, built from what answering it kept.

Records are buffered in memory and written in batches through the store's writer, so recording
never adds a database round trip to a SCIM request; a clean shutdown flushes what is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson

from scim.operations import classify, may_hold_secrets, redact, target_of
from storage import LogRecord
from storage.sqlite import SqliteStore, now
from web.responses import ScimRequest

log = logging.getLogger("scimlet.provisioning")
MAX_LOGGED_BODY = 16_384
FLUSH_SECONDS = 0.5
FLUSH_RECORDS = 500

Listener = Callable[[LogRecord], None]


class ProvisioningLog:
    """The buffer between requests and the provisioning_log table."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.pending: list[LogRecord] = []
        self.task: asyncio.Task | None = None
        self.written = 0

    def add(self, record: LogRecord) -> None:
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


def build_record(request: ScimRequest, status: int, response_raw: bytes, duration_ms: float) -> LogRecord:
    """The provisioning log record of one answered SCIM request, from what answering it kept:
    nothing here parses a body again."""
    idp_id, rest = request.segments[0], [s for s in request.segments[1:] if s]
    method = request.method
    operation, rtype = classify(method, rest, request.query_params, request.body)
    resource_id = rest[1] if len(rest) > 1 and rest[1] != ".search" else request.resource_id
    target = target_of(rtype, request.body, resource_id)
    if target is None and operation in ("Find User", "Find Group", "Test connection"):
        target = request.query_params.get("filter")
    error = request.error
    principal = request.principal
    return LogRecord(
        time=now(),
        idp_id=idp_id,
        api_key_id=principal.api_key_id if principal is not None else None,
        method=method,
        path=request.scope["path"],
        operation=operation,
        resource_type=rtype,
        resource_id=resource_id,
        target=target,
        status=status,
        scim_type=error.scim_type if error is not None else None,
        detail=error.detail if error is not None else None,
        duration_ms=round(duration_ms, 3),
        client=request.client_host or None,
        request_body=_logged_request_body(request.raw_body, request.body),
        response_body=_clip(response_raw.decode("utf-8", "replace")) if response_raw else None,
    )
