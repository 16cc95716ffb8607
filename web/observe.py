"""The provisioning log: a record of every SCIM request, built from what answering it kept.

Records are buffered in memory and written in batches through the store's writer, so recording
never adds a database round trip to a SCIM request; a clean shutdown flushes what is buffered.

What a client can make it store is bounded: every text field is clipped (MAX_LOGGED_TEXT,
MAX_LOGGED_DETAIL, MAX_LOGGED_BODY characters), and requests without a valid key (401, 404 and 429
before authentication) are recorded up to a rate per client address and for all addresses together;
past it they are counted, and summed up once a minute in one record per address. The buffer itself
is bounded too (MAX_PENDING_CHARS): while the database refuses writes (disk full, file lost), records
past it are counted as lost rather than kept, so an outage cannot grow memory without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import orjson

from scim.operations import classify, may_hold_secrets, redact, target_of
from storage import LogRecord, LogStore
from storage.common import now
from web.scim.request import ScimRequest

log = logging.getLogger("scimlet.provisioning")
MAX_LOGGED_BODY = 16_384
MAX_LOGGED_DETAIL = 1024
# At most this many ignored attribute names are recorded per request.
MAX_LOGGED_IGNORED = 20
MAX_LOGGED_TEXT = 256  # path, target, operation, ids, client: real ones are well under 200
FLUSH_SECONDS = 0.5
FLUSH_RECORDS = 500
SUMMARY_SECONDS = 60
MAX_SUMMARIES = 10  # summary records per minute naming one address; the rest share one record
MAX_TRACKED_CLIENTS = 10_000
OTHER_CLIENTS = "other addresses"  # where addresses past MAX_TRACKED_CLIENTS are counted
# What the buffer may hold, in characters of the records' bodies and details plus a fixed share per
# record: about 16 MiB of text. Reached only while the database refuses writes (flushes run twice a
# second); an admin sees the loss in scimlet_provisioning_log_lost_records_total.
MAX_PENDING_CHARS = 16 * 1024 * 1024
RECORD_OVERHEAD_CHARS = 512

Listener = Callable[[LogRecord], None]


class UnauthenticatedLimit:
    """Which records of unauthenticated requests the provisioning log keeps: a token bucket per
    client address (`per_minute` records, refilled evenly over a minute) and one for all addresses
    together (`total_per_minute`), so that neither one address nor many can fill the disk. 0 turns
    a bucket off. What is not kept is counted per address and summed up by summaries()."""

    def __init__(
        self,
        per_minute: int,
        total_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.per_minute = per_minute
        self.total_per_minute = total_per_minute
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: dict[str, list[float]] = {}  # client -> [tokens, clock when counted]
        self.everyone = [float(total_per_minute), clock()]
        self.dropped: dict[str, list] = {}  # client -> [count, first time, last time, IdP ID or None]
        self.dropped_total = 0

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0 or self.total_per_minute > 0

    def admit(self, record: LogRecord) -> bool:
        """Whether to keep this record of an unauthenticated request (else it is counted)."""
        moment = self.clock()
        client = record.client or "unknown"
        bucket = None
        if self.per_minute > 0:
            bucket = self.buckets.get(client)
            if bucket is None:
                if len(self.buckets) >= self.max_clients:
                    client = OTHER_CLIENTS
                bucket = self.buckets.setdefault(client, [float(self.per_minute), moment])
            _refill(bucket, self.per_minute, moment)
        if self.total_per_minute > 0:
            _refill(self.everyone, self.total_per_minute, moment)
        if (bucket is None or bucket[0] >= 1) and (self.total_per_minute <= 0 or self.everyone[0] >= 1):
            if bucket is not None:
                bucket[0] -= 1
            if self.total_per_minute > 0:
                self.everyone[0] -= 1
            return True
        self.dropped_total += 1
        counted = self.dropped.get(client)
        if counted is None and len(self.dropped) >= self.max_clients:
            # Without per-address buckets (per_minute 0) nothing above bounds the addresses counted.
            client = OTHER_CLIENTS
            counted = self.dropped.get(client)
        if counted is None:
            self.dropped[client] = [1, record.time, record.time, record.idp_id]
        else:
            counted[0] += 1
            counted[2] = record.time
            if counted[3] != record.idp_id:
                counted[3] = None
        return False

    def summaries(self) -> list[LogRecord]:
        """One record per address whose requests went unrecorded since the last call (the
        MAX_SUMMARIES with the most; one record for the others), and forget full buckets."""
        dropped, self.dropped = self.dropped, {}
        ranked = sorted(dropped.items(), key=lambda item: item[1][0], reverse=True)
        records = [
            self._summary(client, *counts, address=client != OTHER_CLIENTS) for client, counts in ranked[:MAX_SUMMARIES]
        ]
        rest = ranked[MAX_SUMMARIES:]
        if rest:
            count = sum(counts[0] for _, counts in rest)
            first = min(counts[1] for _, counts in rest)
            last = max(counts[2] for _, counts in rest)
            records.append(self._summary(f"{len(rest)} {OTHER_CLIENTS}", count, first, last, None, address=False))
        moment = self.clock()
        for client, bucket in list(self.buckets.items()):
            if _refill(bucket, self.per_minute, moment) >= self.per_minute:
                del self.buckets[client]
        return records

    def _summary(
        self, client: str, count: int, first: str, last: str, idp_id: str | None, *, address: bool
    ) -> LogRecord:
        """`client` is an address, or (address=False) words such as "other addresses"."""
        limits = []
        if self.per_minute > 0:
            limits.append(f"{self.per_minute} a minute per address")
        if self.total_per_minute > 0:
            limits.append(f"{self.total_per_minute} a minute for all addresses together")
        detail = (
            f"{count} unauthenticated requests from {client} between {first} and {last} were not recorded, "
            f"past the limit of {' and '.join(limits)} (provisioning_log.unauthenticated_per_minute, "
            "unauthenticated_total_per_minute)"
        )
        return LogRecord(
            time=now(),
            idp_id=idp_id,
            api_key_id=None,
            method="-",
            path="-",
            operation="Unrecorded requests",
            resource_type=None,
            resource_id=None,
            target=_clip(client, MAX_LOGGED_TEXT),
            status=429,
            scim_type=None,
            detail=_clip(detail, MAX_LOGGED_DETAIL),
            duration_ms=0.0,
            client=_clip(client, MAX_LOGGED_TEXT) if address else None,
            request_body=None,
            response_body=None,
        )


def _refill(bucket: list[float], per_minute: int, moment: float) -> float:
    bucket[0] = min(float(per_minute), bucket[0] + (moment - bucket[1]) * per_minute / 60)
    bucket[1] = moment
    return bucket[0]


class ProvisioningLog:
    """The buffer between requests and the provisioning_log table."""

    def __init__(self, store: LogStore, unauthenticated: UnauthenticatedLimit | None = None) -> None:
        self.store = store
        self.unauthenticated = unauthenticated or UnauthenticatedLimit(0, 0)
        self.pending: list[LogRecord] = []
        self.pending_chars = 0  # the size of `pending`, as _size counts it
        self.flushing_chars = 0  # the size of the records a flush is writing: they count against the budget
        self.task: asyncio.Task | None = None
        self.flushing: set[asyncio.Task] = set()
        self.written = 0
        self.lost = 0  # records not kept because the buffer was full

    @property
    def dropped(self) -> int:
        """Records of unauthenticated requests not kept, past their limit."""
        return self.unauthenticated.dropped_total

    def add(self, record: LogRecord) -> None:
        if record.api_key_id is None and self.unauthenticated.enabled and not self.unauthenticated.admit(record):
            return
        size = _size(record)
        if self.pending_chars + self.flushing_chars + size > MAX_PENDING_CHARS:
            self.lost += 1
            return
        self.pending.append(record)
        self.pending_chars += size
        # One flush at a time: a database that takes seconds to refuse each write (PostgreSQL
        # unreachable) would otherwise have a flush in flight per FLUSH_RECORDS requests.
        if len(self.pending) >= FLUSH_RECORDS and self.task is not None and not self.flushing:
            self._flush_soon()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        summed_up = loop.time()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if loop.time() - summed_up >= SUMMARY_SECONDS:
                summed_up = loop.time()
                self._keep(self.unauthenticated.summaries())
            # Shielded: a write handed to the store commits even if its waiter is cancelled, so
            # cancelling a flush half-way would put back, and later write again, records it wrote.
            await asyncio.shield(self._flush_soon())

    def _flush_soon(self) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._flush_logged())
        self.flushing.add(task)
        task.add_done_callback(self.flushing.discard)
        return task

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("could not write provisioning log records; they stay buffered")

    async def flush(self) -> None:
        if not self.pending:
            return
        records, chars, self.pending, self.pending_chars = self.pending, self.pending_chars, [], 0
        self.flushing_chars += chars
        try:
            await self.store.append_logs(records)
        except BaseException:
            # Put back in front, as far as the budget allows: records added meanwhile came later.
            self.flushing_chars -= chars
            self.pending[:0] = records
            self.pending_chars += chars
            while self.pending_chars + self.flushing_chars > MAX_PENDING_CHARS and self.pending:
                self.pending_chars -= _size(self.pending.pop())
                self.lost += 1
            raise
        self.flushing_chars -= chars
        self.written += len(records)

    def _keep(self, records: list[LogRecord]) -> None:
        for record in records:
            self.pending.append(record)
            self.pending_chars += _size(record)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await asyncio.gather(*self.flushing)
        self._keep(self.unauthenticated.summaries())
        await self.flush()


def _size(record: LogRecord) -> int:
    """What a buffered record costs, in characters: its clipped bodies, detail and changes, plus the rest."""
    return (
        len(record.request_body or "")
        + len(record.response_body or "")
        + len(record.detail or "")
        + len(record.changes or "")
        + RECORD_OVERHEAD_CHARS
    )


# A text clips to a text, an absent one stays absent.
_Clipped = TypeVar("_Clipped", str, str | None)


def _clip(text: _Clipped, limit: int) -> _Clipped:
    return text if text is None or len(text) <= limit else text[:limit] + "…"


def logged_response_body(raw: bytes | bytearray | memoryview) -> str | None:
    """The answer as the record keeps it: its first MAX_LOGGED_BODY characters. Only the bytes that
    can hold them are decoded (a UTF-8 character is at most 4 bytes), never a whole 100 MB member list
    on the event loop."""
    if not raw:
        return None
    head = raw[: MAX_LOGGED_BODY * 4]
    text = str(head, "utf-8", "replace")
    if len(text) > MAX_LOGGED_BODY or len(raw) > len(head):
        return text[:MAX_LOGGED_BODY] + "…"
    return text


def _logged_request_body(raw: bytes, parsed: object) -> str | None:
    if not raw:
        return None
    if parsed is None:
        # A body that is not JSON cannot be redacted field by field, so it is not kept at all.
        return f"[{len(raw)} bytes, not JSON]"
    if may_hold_secrets(raw):
        return _clip(orjson.dumps(redact(parsed)).decode(), MAX_LOGGED_BODY)
    return _clip(raw.decode("utf-8", "replace"), MAX_LOGGED_BODY)


def build_record(
    request: ScimRequest, status: int, response_raw: bytes | bytearray | memoryview, duration_ms: float
) -> LogRecord:
    """The provisioning log record of one answered SCIM request, from what answering it kept:
    nothing here parses a body again. Every field a client's text reaches is clipped; the others
    (time, key id, resource type, status, scimType, duration) hold only values the server chose."""
    idp_id, route, method = request.segments[0], request.route, request.method
    endpoint = "" if route is not None else next((s for s in request.segments[1:] if s), "")
    operation, rtype = classify(method, route, request.query_params, request.body, endpoint)
    param = route.param if route is not None else None
    resource_id = request.path_params.get(param) if param is not None else request.resource_id
    target = request.target_name or target_of(rtype, request.body, resource_id)
    if target is None and operation in ("Find User", "Find Group", "Test connection"):
        target = request.query_params.get("filter")
    error = request.error
    principal = request.principal
    return LogRecord(
        time=now(),
        idp_id=_clip(idp_id, MAX_LOGGED_TEXT),
        api_key_id=principal.api_key_id if principal is not None else None,
        method=_clip(method, MAX_LOGGED_TEXT),
        path=_clip(request.scope["path"], MAX_LOGGED_TEXT),
        operation=_clip(operation, MAX_LOGGED_TEXT),
        resource_type=rtype,
        resource_id=_clip(resource_id, MAX_LOGGED_TEXT),
        target=_clip(target, MAX_LOGGED_TEXT),
        status=status,
        scim_type=error.scim_type if error is not None else None,
        detail=_clip(request.log_detail or error.detail, MAX_LOGGED_DETAIL) if error is not None else None,
        duration_ms=round(duration_ms, 3),
        client=_clip(request.client_host, MAX_LOGGED_TEXT) or None,
        request_body=_logged_request_body(request.raw_body, request.body),
        response_body=logged_response_body(response_raw),
        ignored=_logged_ignored(request.ignored),
        injected=request.injected,
        bulk_request=request.bulk_request,
        changes=_logged_changes(request) if status < 400 else None,
    )


def _logged_changes(request: ScimRequest) -> str | None:
    """What the write changed, as the record keeps it (LogRecord.changes): the top-level attributes
    whose value differs, before and after, redacted as bodies are, within MAX_LOGGED_BODY characters
    (past it, each value's place says so). A create's record has none: its answer is the resource."""
    if request.changed is None and request.member_delta is None:
        return None
    changes: dict = {}
    if request.changed is not None:
        before, after = request.changed
        if before is not None:
            old, new = before, after or {}
            changes = {
                key: [old.get(key), new.get(key)] for key in old.keys() | new.keys() if old.get(key) != new.get(key)
            }
    if request.member_delta is not None:
        changes["members"] = {"added": request.member_delta[0], "removed": request.member_delta[1]}
    if not changes:
        return None
    text = orjson.dumps(changes, option=orjson.OPT_SORT_KEYS)
    if may_hold_secrets(text):
        text = orjson.dumps(redact(changes), option=orjson.OPT_SORT_KEYS)
    if len(text) > MAX_LOGGED_BODY:
        clipped = {
            key: ["[too long to log]", "[too long to log]"] if key != "members" else value
            for key, value in changes.items()
        }
        text = orjson.dumps(clipped, option=orjson.OPT_SORT_KEYS)
    return text.decode()


def _logged_ignored(names: list[str]) -> str | None:
    """The names the request sent that its tenant does not keep, as a JSON array, each clipped;
    the first MAX_LOGGED_IGNORED of them (a body can name thousands). A NUL or a lone surrogate in
    a name is replaced: the backends read the array back as JSON text, which cannot hold them."""
    if not names:
        return None
    shown = [_clip(name, MAX_LOGGED_TEXT).replace("\x00", "\ufffd") for name in names[:MAX_LOGGED_IGNORED]]
    return orjson.dumps([name.encode("utf-8", "replace").decode() for name in shown]).decode()
