"""POST /Bulk (RFC 7644 §3.7): each operation answered by the single-resource handlers, as the
request it stands for, so it gets their privileges, validation, profiles and preconditions, and
its own provisioning log record and operation metrics; scim/bulk.py orders and resolves them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Message

from scim import bulk
from scim.errors import ScimError, invalid_value
from scim.routes import SCIM_PREFIX
from storage.common import new_resource_id
from web.request_body import read_object
from web.scim.error_responses import detached, error_response, internal_error, routing_error
from web.scim.handlers import ScimHandlers
from web.scim.request import ScimRequest
from web.scim.responses import ScimResponse, StreamedResponse

Handler = Callable[[ScimRequest], Awaitable[Response]]
# A run of POST operations goes to the store this many at a time (as many concurrent requests would).
CREATES_IN_FLIGHT = 32
Router = Callable[[ScimRequest], Handler]
# Records one operation as if it had been a request of its own: (request, status, body, seconds).
Recorder = Callable[[ScimRequest, int, bytes | memoryview, float], None]


class BulkEndpoint:
    """The handler of POST /v1/scim/{idp}/Bulk."""

    def __init__(self, handlers: ScimHandlers, route: Router, record: Recorder) -> None:
        self.handlers = handlers
        self.route = route
        self.record = record

    async def __call__(self, request: ScimRequest) -> Response:
        handlers = self.handlers
        handlers.auth.authenticate(request)  # each operation checks its own write privilege
        body = await read_object(request, handlers.bulk_max_payload, handlers.body_deadlines)
        operations, fail_on_errors = bulk.read_request(body, handlers.bulk_max_operations)
        group = new_resource_id()
        if operations:
            request.bulk_request = group  # recorded as its operations (ScimApi.finish)
        created: dict[str, str | None] = {}
        if fail_on_errors is not None:
            results = await self.run_in_turn(request, bulk.order(operations), created, group, fail_on_errors)
        else:
            results = await self.run_creates_together(request, bulk.order(operations), created, group)
        return ScimResponse(bulk.bulk_response(results))

    async def run_in_turn(
        self,
        request: ScimRequest,
        operations: list[bulk.BulkOperation],
        created: dict[str, str | None],
        group: str,
        fail_on_errors: int,
    ) -> list[dict]:
        """Each operation after the one before has finished, until fail_on_errors of them failed:
        RFC 7644 §3.7.3, the rest is not run, and not answered."""
        results: list[dict] = []
        errors = 0
        for op in operations:
            if errors >= fail_on_errors:
                break
            entry = await self.run(request, op, created, group)
            results.append(entry)
            errors += int(entry["status"]) >= 400
        return results

    async def run_creates_together(
        self, request: ScimRequest, operations: list[bulk.BulkOperation], created: dict[str, str | None], group: str
    ) -> list[dict]:
        """The operations in order, a run of POSTs up to CREATES_IN_FLIGHT at a time: their writes
        then share the store's commits, as concurrent requests' do. A POST waits for the POSTs it
        refers to; a PUT, PATCH or DELETE waits for everything before it and runs alone, so no
        write to an existing resource overtakes another. (On SQLite the writes keep their order:
        the one writer takes them as they come.)"""
        entries: list[asyncio.Task[dict] | dict] = []
        running: list[asyncio.Task[dict]] = []
        creating: dict[str, asyncio.Task[dict]] = {}
        for op in operations:
            if op.method != "POST":
                if running:
                    await asyncio.wait(running)
                    running.clear()
                entries.append(await self.run(request, op, created, group))
                continue
            waits = [creating[bulk_id] for bulk_id in op.refers_to if bulk_id in creating]
            if waits:
                await asyncio.wait(waits)
            running = [task for task in running if not task.done()]
            if len(running) >= CREATES_IN_FLIGHT:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running = [task for task in running if not task.done()]
            task = asyncio.ensure_future(self.run(request, op, created, group))
            running.append(task)
            entries.append(task)
            if op.bulk_id is not None:
                creating[op.bulk_id] = task
        if running:
            await asyncio.wait(running)
        return [entry if isinstance(entry, dict) else entry.result() for entry in entries]

    async def run(self, outer: ScimRequest, op: bulk.BulkOperation, created: dict[str, str | None], group: str) -> dict:
        """Run one operation as a request of its own and give its BulkResponse entry; a POST's
        bulkId is mapped to the id it created (None when it failed)."""
        started = time.perf_counter()
        path, data = op.path, op.data
        error = op.problem
        if error is None:
            try:
                path, data = bulk.resolve(op, created)
            except ScimError as exc:
                error = exc
        raw = b"" if data is None else orjson.dumps(data)
        sub = ScimRequest(operation_scope(outer, op.method or "POST", path, raw, op.version), _body(raw))
        sub.bulk_request = group
        response: Response | None = None
        if error is None:
            try:
                handler = self.route(sub)
                if sub.route is not None and sub.route.handler == "bulk":
                    raise invalid_value("A Bulk operation cannot be a Bulk request")
                response = await handler(sub)
            except ScimError as exc:
                error = detached(exc)
            except HTTPException as exc:
                error = routing_error(op.method, path, exc)
            except Exception as exc:
                error = internal_error(op.method, path, exc)
        if isinstance(response, StreamedResponse):
            await response.close()  # no single-resource write streams its answer; never sent if one did
            response = None
        if error is not None or response is None:
            error = error or ScimError(500, "Internal server error; this is a bug in scimlet, please report it")
            sub.error = error
            if not sub.raw_body:
                sub.raw_body, sub.body = raw, data  # the record keeps what the operation sent
            answer: Response = error_response(error)
        else:
            answer = response
        status = answer.status_code
        self.record(sub, status, answer.body, time.perf_counter() - started)
        if op.method == "POST" and op.bulk_id is not None:
            created[op.bulk_id] = sub.resource_id if status < 400 else None
        if error is not None:
            return bulk.result(op, status, error=error.to_dict())
        headers = {name: value for name, value in answer.headers.items() if name in ("location", "etag")}
        location = headers.get("location") or f"{self.handlers.render.base_url(outer)}{path}"
        return bulk.result(op, status, location=location, version=headers.get("etag"))


def operation_scope(outer: ScimRequest, method: str, path: str, raw: bytes, version: str | None) -> dict:
    """The ASGI scope of an operation as a request of its own: the Bulk request's connection and
    credentials, the operation's method and path, its data as a JSON body, its version as If-Match."""
    idp_id = outer.path_params["idp"]
    full = f"{SCIM_PREFIX}{idp_id}{path}"
    headers = [(b"content-type", b"application/scim+json"), (b"content-length", str(len(raw)).encode())]
    authorization = outer.headers.get("authorization")
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    if version is not None:
        headers.append((b"if-match", version.encode("utf-8", "replace")))
    return {
        **outer.scope,
        "method": method,
        "path": full,
        "raw_path": full.encode("utf-8", "replace"),
        "query_string": b"",
        "headers": headers,
    }


def _body(raw: bytes) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive
