"""Entra-shaped SCIM load generator: raw asyncio streams, HTTP/1.1 keep-alive, one connection per worker.

Every phase is bounded by a request count and a time limit, and only ever talks to 127.0.0.1
(`Client` refuses any other host). Latencies are taken with time.perf_counter_ns around one
request/response exchange on an already open connection.

Phase functions take (base_url, token, n, time_limit) and a keyword `state` that carries what
the phases share (the open connections, the users created, the group). `run.py` drives them
against scimlet and scim2-server; `python bench/loadgen.py nullserver --port P` serves a canned
answer to measure the client's own ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

try:  # the project venv has orjson; fall back to json elsewhere
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover
    import json

    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads

ALLOWED_HOSTS = {"127.0.0.1"}

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP_SCHEMA = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

MEMBER_BATCH = 100
SOLO_REQUESTS = 3  # a phase's first requests, sent alone to gauge the server (see _drive)
HARD_GRACE_S = 60.0  # in-flight requests may finish this long after a phase's time limit


# --------------------------------------------------------------------------- HTTP/1.1 client


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection. Not for concurrent use: one per worker."""

    __slots__ = ("host", "port", "common", "reader", "writer", "last_used")

    def __init__(self, host: str, port: int, token: str):
        self.host = host
        self.port = port
        self.common = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/scim+json\r\nUser-Agent: scimlet-bench\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises on a broken connection (then closed)."""
        if self.writer is None:
            await self.open()
        if body is None:
            head = f"{method} {target} HTTP/1.1\r\n{self.common}\r\n"
            self.writer.write(head.encode())
        else:
            head = (
                f"{method} {target} HTTP/1.1\r\n{self.common}"
                f"Content-Type: application/scim+json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            self.writer.write(head.encode() + body)
        try:
            return await self._response(method)
        except BaseException:
            self.close()
            raise
        finally:
            self.last_used = time.monotonic()

    async def _response(self, method: str) -> tuple[int, bytes]:
        r = self.reader
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            first, _, rest = head.partition(b"\r\n")
            parts = first.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise HttpError(f"bad status line {first[:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:  # interim response: the real one follows
                continue
            break
        length = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in rest[:-4].split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.strip().lower()
                if v == b"close":
                    close = True
                elif v == b"keep-alive":
                    close = False
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif chunked:
            chunks = []
            while True:
                size_line = await r.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await r.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                chunks.append(await r.readexactly(size))
                if await r.readexactly(2) != b"\r\n":
                    raise HttpError("bad chunk terminator")
            body = b"".join(chunks)
        elif length is not None:
            body = await r.readexactly(length) if length else b""
        else:  # no framing: the body runs to the end of the connection
            body = await r.read()
            close = True
        if close:
            self.close()
        return status, body


class Client:
    """`concurrency` keep-alive connections to one base URL on 127.0.0.1."""

    def __init__(self, base_url: str, token: str, concurrency: int):
        u = urlsplit(base_url)
        if u.scheme != "http" or u.hostname not in ALLOWED_HOSTS:
            raise ValueError(f"refusing to target {base_url!r}: only http://127.0.0.1 is allowed")
        self.host = u.hostname
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.token = token
        self.conns = [Conn(self.host, self.port, token) for _ in range(concurrency)]

    async def reset(self) -> None:
        """Close every connection and open fresh ones, outside any timing (servers drop idle ones)."""
        for c in self.conns:
            c.close()
        await asyncio.gather(*(c.open() for c in self.conns))

    def close(self) -> None:
        for c in self.conns:
            c.close()

    async def one(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, int]:
        """One request on connection 0: (status, body, latency ns).

        A connection idle for over a second is replaced first (outside the timing): servers close idle
        keep-alive connections (uvicorn after 5 s), and a request must never race that close."""
        conn = self.conns[0]
        if conn.writer is None or time.monotonic() - conn.last_used > 1.0:
            conn.close()
            await conn.open()
        t0 = time.perf_counter_ns()
        status, data = await conn.request(method, self.prefix + path, body)
        return status, data, time.perf_counter_ns() - t0


# --------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    name: str
    planned: int = 0
    ops: int = 0  # requests answered (any status) or failed
    items: int = 0  # what the phase counts besides requests (members added, rows paged)
    item_name: str = ""
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    capped: bool = False  # stopped by the time limit before the count
    check: str = ""
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct_ms(self, p: float, lat: list[int] | None = None) -> float | None:
        lat = sorted(self.latencies_ns if lat is None else lat)
        if not lat:
            return None
        k = max(0, min(len(lat) - 1, int(round(p / 100.0 * len(lat) + 0.5)) - 1))  # nearest rank
        return lat[k] / 1e6

    def max_ms(self) -> float | None:
        return max(self.latencies_ns) / 1e6 if self.latencies_ns else None

    def fail(self, msg: str) -> None:
        self.ok = False
        if len(self.errors) < 20:
            self.errors.append(msg)

    def status_str(self) -> str:
        return " ".join(f"{k}×{v}" for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0])))

    def summary(self) -> str:
        p = self.pct_ms

        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        s = (
            f"{self.name:<24} {self.ops:>7} ops {self.elapsed_s:7.2f}s {self.ops_per_s:9.0f}/s"
            f"  p50 {fmt(p(50))} p90 {fmt(p(90))} p99 {fmt(p(99))} max {fmt(self.max_ms())} ms"
            f"  [{self.status_str()}]"
        )
        if self.item_name:
            s += f"  {self.items} {self.item_name} ({self.items_per_s:.0f}/s)"
        s += f"  {'capped ' if self.capped else ''}{'OK' if self.ok else 'FAIL'} {self.check}"
        s += "".join(f"; {note}" for note in self.notes)
        return s


# --------------------------------------------------------------------------- shared state


@dataclass
class Profile:
    """What differs between the two servers' request bodies and success codes (recorded in results)."""

    name: str = "scimlet"
    group_schemas: tuple[str, ...] = (GROUP_SCHEMA, MS_GROUP_SCHEMA)
    user_patch_ok: tuple[int, ...] = (200,)
    group_patch_ok: tuple[int, ...] = (200, 204)
    # "legacy": Entra's default {"op":"Remove","path":"members","value":[...]} is measured after the adds;
    # None: not measured
    member_remove: str | None = "legacy"


@dataclass
class State:
    base_url: str
    token: str
    concurrency: int = 32
    profile: Profile = field(default_factory=Profile)
    seed: int = 20201
    client: Client | None = None
    user_names: list[str] = field(default_factory=list)
    external_ids: list[str] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    patched: set[int] = field(default_factory=set)
    group_id: str | None = None
    group_name: str = ""
    group_members: int = 0  # members the server confirmed (2xx) so far
    group_unknown: int = 0  # members sent in PATCHes whose answer never came (cancelled)
    next_member: int = 0  # index into `ids` of the next user to add to the group
    probe_users: list[int] = field(default_factory=list)  # indexes of users kept out of the group
    server_pid: int | None = None  # to report the server's CPU use per phase
    db_pid: int | None = None  # a database server (the postmaster) whose whole process tree is counted with it

    def __post_init__(self):
        if self.client is None:
            self.client = Client(self.base_url, self.token, self.concurrency)
        self.rng = random.Random(self.seed)
        self.tag = f"{self.rng.getrandbits(32):08x}"

    def ensure_users(self, count: int) -> None:
        while len(self.user_names) < count:
            guid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
            self.user_names.append(f"Test_User_{guid}")
            self.external_ids.append(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
            self.ids.append(None)

    def created(self, limit: int | None = None) -> list[int]:
        top = len(self.ids) if limit is None else min(limit, len(self.ids))
        return [i for i in range(top) if self.ids[i] is not None]


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU time of a process (and its reaped children), from /proc."""
    if pid is None:
        return None
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in f[11:15]) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(pid: int | None) -> float | None:
    """cpu_seconds of a process and of its live descendants (PostgreSQL: the postmaster and its backends;
    a backend that exits is then counted in the postmaster's reaped-children time)."""
    if pid is None:
        return None
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p) or 0.0
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def server_cpu_seconds(state: State) -> float | None:
    own = cpu_seconds(state.server_pid)
    if own is None or state.db_pid is None:
        return own
    return own + (tree_cpu_seconds(state.db_pid) or 0.0)


try:
    _CLK_TCK = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError):  # pragma: no cover
    _CLK_TCK = 100


def _cpu_mark(state: State) -> tuple[float, float | None]:
    return time.process_time(), server_cpu_seconds(state)


def _cpu_record(state: State, result: PhaseResult, mark: tuple[float, float | None]) -> None:
    """Share of one core the client and the server used over the phase's wall time."""
    if not result.elapsed_s:
        return
    result.extra["client_cpu"] = (time.process_time() - mark[0]) / result.elapsed_s
    now = server_cpu_seconds(state)
    if mark[1] is not None and now is not None:
        result.extra["server_cpu"] = (now - mark[1]) / result.elapsed_s


def _state(base_url: str, token: str, state: State | None) -> State:
    return state if state is not None else State(base_url, token)


async def _drive(
    state: State, result: PhaseResult, n: int, time_limit: float, make, handle, concurrency: int | None = None
) -> None:
    """Run `n` requests over the workers until done or `time_limit` passes.

    make(i) -> (method, path, body); handle(i, status, body) checks one answer (result.fail on error).
    """
    client = state.client
    await client.reset()
    workers = client.conns[: (concurrency or len(client.conns))]
    prefix = client.prefix
    next_i = 0
    lat = result.latencies_ns
    statuses = result.statuses
    result.planned = n
    mark = _cpu_mark(state)
    start = time.perf_counter()
    deadline = start + time_limit
    perf_ns = time.perf_counter_ns
    now = time.perf_counter

    # Slow start: the first worker sends SOLO_REQUESTS alone; the fastest of those answers (a first request
    # may pay for a cold cache or an index build) tells how long one request takes. Worker k then joins only
    # if k such requests fit before the deadline, so a slow server is not handed a wave of requests it
    # cannot answer in time. For a fast server all join after a few milliseconds.
    # Then, before each request: the server answers one request every `gap` seconds (a moving average of
    # the time between answers) and `inflight` are queued, so a new one would be answered around
    # now + (inflight + 1) * gap. Nothing is sent that would be answered after the deadline: a slow server
    # stops near the limit instead of chewing on a queue we gave up on.
    first_done = asyncio.Event()
    solo: list[float] = []
    inflight = 0
    gap = 0.0
    last_done = 0.0

    async def worker(conn: Conn, k: int) -> None:
        nonlocal next_i, inflight, gap, last_done
        if k:
            await first_done.wait()
            one = min(solo) if solo else 0.0
            if now() + k * one >= deadline:
                return
        while next_i < n:
            if now() + (inflight + 1) * gap >= deadline:
                return
            i = next_i
            next_i += 1
            method, path, body = make(i)
            inflight += 1
            t0 = perf_ns()
            try:
                status, data = await conn.request(method, prefix + path, body)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError, ValueError) as e:
                inflight -= 1
                lat.append(perf_ns() - t0)
                statuses["err"] += 1
                result.fail(f"#{i} {method} {path}: {type(e).__name__}: {e}")
                first_done.set()
                continue
            ns = perf_ns() - t0
            inflight -= 1
            t = now()
            if not first_done.is_set():
                solo.append(ns / 1e9)
                gap = min(solo)
                if len(solo) >= SOLO_REQUESTS:
                    first_done.set()
            else:
                gap = 0.9 * gap + 0.1 * (t - last_done)
            last_done = t
            lat.append(ns)
            statuses[status] += 1
            handle(i, status, data)
        first_done.set()

    tasks = [asyncio.ensure_future(worker(c, k)) for k, c in enumerate(workers)]
    done, pending = await asyncio.wait(tasks, timeout=time_limit + HARD_GRACE_S)
    for t in pending:
        t.cancel()
        result.capped = True
    result.extra["cancelled"] = len(pending)
    if pending:  # a timeout, not a wrong answer: counted apart, the phase is marked capped
        await asyncio.gather(*pending, return_exceptions=True)
        result.notes.append(
            f"{len(pending)} requests still in flight {HARD_GRACE_S:.0f}s after the time limit: "
            "cancelled (status 'timeout')"
        )
        statuses["timeout"] += len(pending)
        # The server may still be working through them: wait until it answers a trivial request, so that
        # the next phase does not pay for this one.
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.one("GET", "/ServiceProviderConfig"), 180)
        result.notes.append(f"server drained its queue {time.perf_counter() - t0:.1f}s later")
    for t in done:
        if t.exception() is not None:
            result.fail(f"worker crashed: {t.exception()!r}")
    result.elapsed_s = time.perf_counter() - start
    result.ops = len(lat)
    result.capped = result.ops < n
    _cpu_record(state, result, mark)


def _describe(status: int, body: bytes, limit: int = 300) -> str:
    return f"{status} {body[:limit].decode('utf-8', 'replace')}"


# --------------------------------------------------------------------------- request bodies


def user_body(state: State, i: int) -> bytes:
    name = state.user_names[i]
    return dumps(
        {
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "externalId": state.external_ids[i],
            "userName": name,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": f"{name}@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": f"Given{i} Family{i}", "familyName": f"Family{i}", "givenName": f"Given{i}"},
            "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
            "roles": [],
        }
    )


def patch_body(i: int) -> bytes:
    return dumps(
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Replace", "path": "name.givenName", "value": f"PatchedGiven{i}"},
                {"op": "Replace", "path": "name.familyName", "value": f"PatchedFamily{i}"},
                {"op": "Replace", "path": "active", "value": "False"},
            ],
        }
    )


def members_body(op: str, ids: list[str]) -> bytes:
    return dumps(
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": op, "path": "members", "value": [{"value": v} for v in ids]},
            ],
        }
    )


def filter_query(attr: str, value: str) -> str:
    # form-encoded, as Entra sends it: filter=userName+eq+%22alice%40contoso.com%22
    return "filter=" + quote(f'{attr} eq "{value}"', safe="").replace("%20", "+")


# --------------------------------------------------------------------------- phases


async def phase_create(
    base_url: str,
    token: str,
    n: int,
    time_limit: float,
    *,
    state: State | None = None,
    name: str = "create",
    concurrency: int | None = None,
) -> PhaseResult:
    """POST Entra's create body for `n` new users (continuing after the users already made)."""
    state = _state(base_url, token, state)
    first = len(state.ids)
    state.ensure_users(first + n)
    res = PhaseResult(name)

    def make(k):
        return "POST", "/Users", user_body(state, first + k)

    def handle(k, status, body):
        i = first + k
        if status != 201:
            res.fail(f"POST /Users #{i}: {_describe(status, body)}")
            return
        try:
            doc = loads(body)
            state.ids[i] = doc["id"]
        except Exception as e:
            res.fail(f"POST /Users #{i}: unreadable 201 body ({e!r}): {_describe(status, body)}")

    await _drive(state, res, n, time_limit, make, handle, concurrency)
    made = sum(1 for i in range(first, first + n) if state.ids[i] is not None)
    res.extra["created"] = made
    # spot GETs
    picks = [i for i in range(first, first + n) if state.ids[i] is not None]
    bad = 0
    for i in state.rng.sample(picks, min(5, len(picks))):
        status, body, _ = await state.client.one("GET", f"/Users/{state.ids[i]}")
        doc = loads(body) if status == 200 else {}
        if (
            status != 200
            or doc.get("userName", "").lower() != state.user_names[i].lower()
            or doc.get("name", {}).get("givenName") != f"Given{i}"
        ):
            bad += 1
            res.fail(f"spot GET /Users/{state.ids[i]}: {_describe(status, body)}")
    res.check = f"{made}/{res.ops} created; spot GET {min(5, len(picks)) - bad}/{min(5, len(picks))} ok"
    if made == 0:
        res.ok = False
    return res


async def phase_lookup(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """GET /Users?filter=userName eq "..." for `n` created users (cycling if fewer exist)."""
    state = _state(base_url, token, state)
    pool = state.created()
    res = PhaseResult("lookup")
    if not pool:
        res.fail("no users to look up")
        res.check = "skipped: no users"
        return res
    good = 0

    def make(k):
        i = pool[k % len(pool)]
        return "GET", "/Users?" + filter_query("userName", state.user_names[i]), None

    def handle(k, status, body):
        nonlocal good
        i = pool[k % len(pool)]
        if status != 200:
            res.fail(f"lookup {state.user_names[i]}: {_describe(status, body)}")
            return
        doc = loads(body)
        found = doc.get("Resources") or []
        if doc.get("totalResults") != 1 or len(found) != 1 or found[0].get("id") != state.ids[i]:
            res.fail(f"lookup {state.user_names[i]}: expected exactly id {state.ids[i]}, got {_describe(status, body)}")
            return
        good += 1

    await _drive(state, res, n, time_limit, make, handle)
    res.check = f"{good}/{res.ops} found exactly the right user"
    return res


async def phase_patch(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """Entra legacy PATCH: Replace name.givenName, name.familyName and active "False"."""
    state = _state(base_url, token, state)
    pool = state.created()
    res = PhaseResult("patch")
    if not pool:
        res.fail("no users to patch")
        res.check = "skipped: no users"
        return res
    ok_codes = state.profile.user_patch_ok

    def make(k):
        i = pool[k % len(pool)]
        return "PATCH", f"/Users/{state.ids[i]}", patch_body(i)

    def handle(k, status, body):
        i = pool[k % len(pool)]
        if status not in ok_codes:
            res.fail(f"PATCH /Users/{state.ids[i]}: {_describe(status, body)}")
            return
        state.patched.add(i)

    await _drive(state, res, n, time_limit, make, handle)
    picks = sorted(state.patched)
    checked = min(5, len(picks))
    bad = 0
    for i in state.rng.sample(picks, checked):
        status, body, _ = await state.client.one("GET", f"/Users/{state.ids[i]}")
        doc = loads(body) if status == 200 else {}
        name = doc.get("name") or {}
        if (
            status != 200
            or doc.get("active") is not False
            or name.get("givenName") != f"PatchedGiven{i}"
            or name.get("familyName") != f"PatchedFamily{i}"
        ):
            bad += 1
            res.fail(f"spot GET after PATCH /Users/{state.ids[i]}: {_describe(status, body, 600)}")
    if checked:
        # a disabled user must still be found by the filter (docs/entra.md)
        i = picks[0]
        status, body, _ = await state.client.one("GET", "/Users?" + filter_query("userName", state.user_names[i]))
        if status != 200 or loads(body).get("totalResults") != 1:
            bad += 1
            res.fail(f"disabled user not found by filter: {_describe(status, body)}")
    res.check = (
        f"{len(state.patched)}/{res.ops} 2xx; spot GET {checked - bad}/{checked} + filter on disabled ok"
        if not bad
        else f"{len(state.patched)}/{res.ops} 2xx; {bad} spot checks failed"
    )
    return res


async def phase_paging(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """Page through all users with count=100 (at most `n` pages), 32 pages in flight."""
    state = _state(base_url, token, state)
    res = PhaseResult("paging", item_name="rows")
    await state.client.reset()
    status, body, _ = await state.client.one("GET", "/Users?startIndex=1&count=0")
    if status != 200:
        res.fail(f"GET /Users?count=0: {_describe(status, body)}")
        res.check = "count=0 failed"
        return res
    total = loads(body).get("totalResults", 0)
    pages = min(n, (total + 99) // 100)
    seen: set[str] = set()
    short = 0

    def make(k):
        return "GET", f"/Users?startIndex={1 + 100 * k}&count=100", None

    def handle(k, status, body):
        nonlocal short
        if status != 200:
            res.fail(f"page startIndex={1 + 100 * k}: {_describe(status, body)}")
            return
        doc = loads(body)
        rs = doc.get("Resources") or []
        if (
            doc.get("startIndex") != 1 + 100 * k
            or doc.get("itemsPerPage") != len(rs)
            or doc.get("totalResults") != total
        ):
            env = {a: doc.get(a) for a in ("startIndex", "itemsPerPage", "totalResults")}
            res.fail(f"page startIndex={1 + 100 * k}: bad envelope {env} (Resources: {len(rs)})")
        expect = min(100, total - 100 * k)
        if len(rs) != expect:
            short += 1
        res.items += len(rs)
        for r in rs:
            seen.add(r.get("id"))

    await _drive(state, res, pages, time_limit, make, handle)
    expected_users = len(state.created())
    res.extra.update(total=total, distinct=len(seen))
    if res.capped:
        res.check = f"capped after {res.ops}/{pages} pages; {len(seen)} distinct ids"
    elif len(seen) != total or total != expected_users or short:
        res.fail(
            f"paging saw {len(seen)} distinct ids, totalResults {total}, users created {expected_users}, "
            f"{short} short pages"
        )
        res.check = f"{len(seen)} distinct / totalResults {total} / created {expected_users}: MISMATCH"
    else:
        res.check = f"{pages} pages, {len(seen)} distinct ids = totalResults = users created"
    return res


async def phase_gets(
    base_url: str,
    token: str,
    n: int,
    time_limit: float,
    *,
    state: State | None = None,
    name: str,
    path,
    check,
    concurrency: int | None = None,
) -> PhaseResult:
    """GET path(k) for k in 0..n-1 (until the time limit), each 200 answer's document checked by
    check(k, doc), which returns what is wrong with it or None. For the queries whose latency is read
    at one size against another (bench/scale.py): `concurrency` 1 times one request at a time."""
    state = _state(base_url, token, state)
    res = PhaseResult(name)
    good = 0

    def make(k):
        return "GET", path(k), None

    def handle(k, status, body):
        nonlocal good
        if status != 200:
            res.fail(f"GET {path(k)}: {_describe(status, body)}")
            return
        wrong = check(k, loads(body))
        if wrong:
            res.fail(f"GET {path(k)}: {wrong}")
            return
        good += 1

    await _drive(state, res, n, time_limit, make, handle, concurrency)
    res.check = f"{good}/{res.ops} right answers"
    return res


async def create_group(state: State) -> tuple[int, bytes]:
    state.group_name = f"Bench Group {state.tag}"
    body = dumps(
        {
            "schemas": list(state.profile.group_schemas),
            "externalId": str(uuid.UUID(int=state.rng.getrandbits(128), version=4)),
            "displayName": state.group_name,
            "meta": {"resourceType": "Group"},
        }
    )
    await state.client.reset()
    status, data, _ = await state.client.one("POST", "/Groups", body)
    if status == 201:
        state.group_id = loads(data)["id"]
    return status, data


async def phase_group_fill(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """Create one group, then PATCH-add `n` members (created users) in batches of 100, 32 in flight."""
    state = _state(base_url, token, state)
    res = PhaseResult("group member adds", item_name="members")
    if state.group_id is None:
        status, data = await create_group(state)
        if status != 201:
            res.fail(f"POST /Groups: {_describe(status, data)}")
            res.check = "group create failed"
            return res
    probe = set(state.probe_users)
    pool = [i for i in state.created() if i not in probe][state.next_member :]
    if n > len(pool):
        res.notes.append(f"asked for {n} members, only {len(pool)} users exist to add")
        n = len(pool)
    batches = [pool[b : b + MEMBER_BATCH] for b in range(0, n, MEMBER_BATCH)]
    ok_codes = state.profile.group_patch_ok
    gid = state.group_id
    base_members = state.group_members
    done: list[tuple[int, int]] = []  # (batch, latency ns) of the answered adds
    lat = res.latencies_ns

    def make(k):
        return "PATCH", f"/Groups/{gid}", members_body("Add", [state.ids[i] for i in batches[k]])

    def handle(k, status, body):
        if status not in ok_codes:
            res.fail(f"PATCH /Groups/{gid} add batch {k}: {_describe(status, body)}")
            return
        res.items += len(batches[k])
        done.append((k, lat[-1]))

    await _drive(state, res, len(batches), time_limit, make, handle)
    state.group_members = base_members + res.items
    state.group_unknown += MEMBER_BATCH * res.extra.get("cancelled", 0)
    state.next_member += res.items  # approximate under failure: the count check below tells
    # the adds to the fullest group: the last tenth of the batches answered
    done.sort()
    tail = done[len(done) - max(1, len(done) // 10) :] if done else []
    res.extra["tail_p99_ms"] = res.pct_ms(99, [ns for _, ns in tail])
    res.extra["tail_n"] = len(tail)
    res.extra["tail_from"] = base_members + (tail[0][0] * MEMBER_BATCH if tail else 0)
    res.extra["members_after"] = state.group_members
    res.check = f"{res.items} members added in {res.ops} PATCHes; group now {state.group_members} members"
    if res.capped:
        res.check += " (time limit)"
    return res


async def phase_group_add_probe(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """Sequential, one connection (as Entra sends one group's changes): `n` PATCHes each adding 100
    users that are not yet members (`state.probe_users`, made beforehand) to the full group, timed.
    Then, where the profile's remove form is Entra's legacy one, the same batches are removed again
    (legacy remove with a value array), timed apart, so the group ends at the size it started."""
    state = _state(base_url, token, state)
    res = PhaseResult("add 100 @ full group", item_name="members")
    probe = [state.ids[i] for i in state.probe_users if state.ids[i] is not None]
    batches = [probe[b : b + MEMBER_BATCH] for b in range(0, len(probe) - MEMBER_BATCH + 1, MEMBER_BATCH)][:n]
    if state.group_id is None or not batches:
        res.check = "skipped: no group or no probe users"
        res.ok = False
        return res
    ok_codes = state.profile.group_patch_ok
    path = f"/Groups/{state.group_id}"
    size0 = state.group_members
    await state.client.reset()

    async def one(body: bytes, what: str, sink: list[int]) -> bool:
        try:
            status, data, ns = await state.client.one("PATCH", path, body)
        except (OSError, asyncio.IncompleteReadError, HttpError) as e:
            res.statuses["err"] += 1
            res.fail(f"PATCH {path} ({what}): {e!r}")
            return False
        sink.append(ns)
        res.statuses[status] += 1
        if status not in ok_codes:
            res.fail(f"PATCH {path} ({what}): {_describe(status, data)}")
            return False
        return True

    mark = _cpu_mark(state)
    start = time.perf_counter()
    deadline = start + time_limit
    added: list[list[str]] = []
    for batch in batches:
        if time.perf_counter() >= deadline:
            res.capped = True
            break
        if await one(members_body("Add", batch), "add 100", res.latencies_ns):
            added.append(batch)
            res.items += len(batch)
    res.elapsed_s = time.perf_counter() - start
    res.ops = len(res.latencies_ns)
    _cpu_record(state, res, mark)
    state.group_members = size0 + res.items
    res.extra["group_members"] = size0
    rm_lat: list[int] = []
    if state.profile.member_remove == "legacy":
        for batch in added:
            if time.perf_counter() >= deadline + time_limit:
                res.capped = True
                break
            if await one(members_body("Remove", batch), "legacy remove 100", rm_lat):
                state.group_members -= len(batch)
        res.extra["remove_p50_ms"] = res.pct_ms(50, rm_lat)
        res.extra["remove_p99_ms"] = res.pct_ms(99, rm_lat)
        res.extra["removes"] = len(rm_lat)
    res.check = f"{res.ops} adds of 100 to a group of {size0:,}..{size0 + res.items:,} members" + (
        f"; then {len(rm_lat)} legacy removes of 100 back to {state.group_members:,}" if rm_lat else ""
    )
    return res


async def phase_group_get_excluded(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """GET /Groups/{id}?excludedAttributes=members, as Entra reads groups."""
    state = _state(base_url, token, state)
    res = PhaseResult("group GET excl. members")
    if state.group_id is None:
        res.check = "skipped: no group"
        res.ok = False
        return res
    path = f"/Groups/{state.group_id}?excludedAttributes=members"

    def make(k):
        return "GET", path, None

    def handle(k, status, body):
        if status != 200:
            res.fail(f"GET {path}: {_describe(status, body)}")
            return
        doc = loads(body)
        if doc.get("id") != state.group_id or "members" in doc or doc.get("displayName") != state.group_name:
            res.fail(f"GET {path}: wrong document {_describe(status, body)}")

    await _drive(state, res, n, time_limit, make, handle)
    # the Entra filter form too, once
    status, body, _ = await state.client.one(
        "GET", "/Groups?excludedAttributes=members&" + filter_query("displayName", state.group_name)
    )
    doc = loads(body) if status == 200 else {}
    found = doc.get("Resources") or []
    if status != 200 or len(found) != 1 or found[0].get("id") != state.group_id or "members" in found[0]:
        res.fail(f"GET /Groups?excludedAttributes=members&filter=displayName eq ...: {_describe(status, body)}")
    res.check = (
        f"on a {state.group_members}-member group: no members key, right id; filter form {'ok' if res.ok else 'FAILED'}"
    )
    return res


async def phase_group_get_full(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """GET the whole group (`n` times, sequentially) and check its member count."""
    state = _state(base_url, token, state)
    res = PhaseResult("group GET full")
    if state.group_id is None:
        res.check = "skipped: no group"
        res.ok = False
        return res
    await state.client.reset()
    mark = _cpu_mark(state)
    start = time.perf_counter()
    count = None
    size = 0
    for _ in range(n):
        if time.perf_counter() - start >= time_limit:
            res.capped = True
            break
        status, body, ns = await state.client.one("GET", f"/Groups/{state.group_id}")
        res.latencies_ns.append(ns)
        res.statuses[status] += 1
        if status != 200:
            res.fail(f"GET /Groups/{state.group_id}: {_describe(status, body)}")
            continue
        size = len(body)
        members = loads(body).get("members") or []
        count = len(members)
        distinct = len({m.get("value") for m in members})
        if not (state.group_members <= count <= state.group_members + state.group_unknown) or distinct != count:
            res.fail(
                f"member count: GET returned {count} ({distinct} distinct), expected {state.group_members}"
                + (f" to {state.group_members + state.group_unknown} (unanswered adds)" if state.group_unknown else "")
            )
    res.elapsed_s = time.perf_counter() - start
    res.ops = len(res.latencies_ns)
    _cpu_record(state, res, mark)
    res.extra.update(member_count=count, body_bytes=size)
    res.check = f"members {count} (expected {state.group_members}), body {size / 1e6:.1f} MB"
    return res


async def phase_calibrate(
    base_url: str, token: str, n: int, time_limit: float, *, state: State | None = None
) -> PhaseResult:
    """GET a fixed path n times: against the null server it measures the client's ceiling."""
    state = _state(base_url, token, state)
    res = PhaseResult("client ceiling")

    def make(k):
        return "GET", "/ServiceProviderConfig", None

    def handle(k, status, body):
        if status != 200:
            res.fail(f"GET: {_describe(status, body)}")

    await _drive(state, res, n, time_limit, make, handle)
    res.check = "null server"
    return res


# --------------------------------------------------------------------------- null server


class _NullProtocol(asyncio.Protocol):
    RESPONSE_BODY = b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]}'
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/scim+json\r\nContent-Length: "
        + str(len(RESPONSE_BODY)).encode()
        + b"\r\n\r\n"
        + RESPONSE_BODY
    )

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            pos = head.find(b"content-length:")
            if pos >= 0:
                length = int(head[pos + 15 :].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(self.RESPONSE)


async def _serve_null(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_NullProtocol, "127.0.0.1", port)
    print(f"null server on 127.0.0.1:{port}", flush=True)
    async with server:
        await asyncio.sleep(600)  # bounded: the runner kills it long before


def new_event_loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "nullserver":
        new_event_loop_policy()
        asyncio.run(_serve_null(int(sys.argv[2])))
    else:
        print("usage: loadgen.py nullserver PORT   (the benchmark itself: bench/run.py)", file=sys.stderr)
        sys.exit(2)
