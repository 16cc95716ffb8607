"""`make bench-scale`: scimlet with 10,000, 100,000 and 1,000,000 users in one IdP, on every storage backend.

    .venv/bin/python bench/scale.py                          # the full run (< 10 minutes)
    .venv/bin/python bench/scale.py --sizes 200,2000 --groups 50 --big-group 500   # a smoke run

At each size the directory is built on a fresh database: N users (Entra's create body, as the product
stores it), G groups (default 10,000): one of min(100,000, N) members, a chain of groups nested 5
levels deep (each level 10 users and the next level), and 5 users in each of the others. It is loaded
with the storage backend's bulk path, OperationsStore.import_rows (copy-database's): SQLite's
executemany and PostgreSQL's COPY, in one transaction. The API key and the IdP come from the CLI
(bench/run.py's provision_scimlet) on a template database, where one user and one group are also
created through the running server: the rows generated for the load must equal what the server
stored for the same request bodies, or the run stops, so the database size per user is the product's.

Then scimlet is started on it (`taskset -c 0`, bench/run.py's start_scimlet; the load generator, this
process, on CPU 1; PostgreSQL pinned to CPU 0 beside scimlet, bench/run.py's start_postgresql) and every
operation is timed for a few seconds: userName lookups, creates and Entra PATCHes on 32 connections,
the other queries one at a time. Where PostgreSQL 15 is installed (tests/pg_server.py) the same runs
on a throwaway PostgreSQL server. Results: bench/results/<date>-<time>-scale.md, .json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(ROOT))  # the product's storage layer, tests.pg_server

import loadgen as lg  # noqa: E402
import run as bench_run  # noqa: E402

from settings import load_settings  # noqa: E402
from storage import create_store  # noqa: E402
from storage.common import new_resource_id, now  # noqa: E402
from tests import pg_server  # noqa: E402

RESULTS = BENCH / "results"
SIZES = (10_000, 100_000, 1_000_000)
GROUPS = 10_000
BIG_GROUP = 100_000
NEST_DEPTH = 5
NEST_USERS = 10  # direct user members of each level of the nested chain
SMALL_GROUP = 5  # members of every other group
SAMPLE = 20_000  # users looked up and patched, spread over the whole directory
BATCH = 10_000  # rows per import batch
WALL_BUDGET_S = 600.0
PHASE_S = 2.5
CONCURRENCY = 32
ADMIN_TOKEN = "scale-bench-admin-token-0123456789abcdef"
ADMIN_PASSWORD = "scale bench admin password"
ADMIN_ENV = {"SCIMLET_ADMIN_TOKEN": ADMIN_TOKEN, "SCIMLET_ADMIN_PASSWORD": ADMIN_PASSWORD}
TARGET_SIZE = 1_000_000
RATIO = 1.5  # "within 1.5×": point lookups, PATCHes and deep pages against their reference
RSS_LIMIT_KB = 150 * 1024
STARTUP_LIMIT_S = 1.0
BYTES_PER_USER_LIMIT = 2048

# (key, label, connections): every operation timed at every size, in this order.
OPERATIONS = [
    ("lookup", 'GET /Users?filter=userName eq "…"', CONCURRENCY),
    ("patch", "PATCH /Users/{id} (Entra legacy: names, active)", CONCURRENCY),
    ("create", "POST /Users (Entra's create body)", CONCURRENCY),
    ("groups_filter", 'GET /Users?filter=groups.value eq "…" (top of the 5-level chain)', 1),
    ("unindexed", 'GET /Users?filter=title co "x" (unindexed)', 1),
    ("page_first", "GET /Users?startIndex=1&count=100", 1),
    ("page_last", "GET /Users?startIndex=<last 100>&count=100", 1),
    ("cursor_first", "GET /Users?cursor=&count=100 (RFC 9865)", 1),
    ("cursor_deep", "GET /Users?cursor=<the last page's>&count=100", 1),
    ("count0", "GET /Users?count=0", 1),
    ("console_first", "admin API directory, first page (count=50)", 1),
    ("console_last", "admin API directory, last page (before cursor)", 1),
    ("log_query", "admin API /logs?q=<userName>", 1),
]
LABELS = {key: label for key, label, _ in OPERATIONS}
# The PASS/FAIL rows, in the report's order (tests/bench checks each is there).
TARGET_ROWS = [
    "userName lookup p50",
    "userName lookup p99",
    "PATCH throughput",
    "server CPU per lookup",
    "server CPU per PATCH",
    "RSS idle",
    "RSS under load",
    "start-up to first 200",
    "deep SCIM page vs first",
    "deep cursor page vs first",
    "deep directory page vs first",
    "database size per user",
]


def log(msg: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the directory


@dataclass
class Shape:
    users: int
    groups: int
    big_group: int

    @property
    def big_members(self) -> int:
        return min(self.big_group, self.users)


VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def identities(count: int) -> list[tuple[str, str, str]]:
    """(userName, externalId, id) for `count` new users: Entra's test names (Test_User_<UUIDv4>), a UUIDv4
    externalId, and an id as storage.common.new_resource_id makes them (UUIDv7: this millisecond, then
    random bits). From one os.urandom call: one generator call per user would cost more than the rest of the row."""
    h = os.urandom(48 * count).hex()
    millis = f"{time.time_ns() // 1_000_000:012x}"
    prefix = f"{millis[:8]}-{millis[8:12]}-7"
    out = []
    for k in range(0, 96 * count, 96):
        n, e, r = h[k : k + 32], h[k + 32 : k + 64], h[k + 64 : k + 96]
        out.append(
            (
                f"Test_User_{n[:8]}-{n[8:12]}-4{n[13:16]}-{VARIANT[n[16]]}{n[17:20]}-{n[20:]}",
                f"{e[:8]}-{e[8:12]}-4{e[13:16]}-{VARIANT[e[16]]}{e[17:20]}-{e[20:]}",
                f"{prefix}{r[:3]}-{VARIANT[r[3]]}{r[4:7]}-{r[7:19]}",
            )
        )
    return out


def user_doc(name: str, external_id: str, i: int) -> dict:
    """What scimlet stores for loadgen.user_body (Entra's create body) of user i: tested against the server."""
    return {
        "externalId": external_id,
        "userName": name,
        "active": True,
        "emails": [{"value": f"{name}@testuser.com", "type": "work", "primary": True}],
        "name": {"formatted": f"Given{i} Family{i}", "familyName": f"Family{i}", "givenName": f"Given{i}"},
        "phoneNumbers": [{"value": "+16175551212", "type": "work"}],
    }


def group_body(display_name: str, external_id: str) -> dict:
    """Entra's group create body (as loadgen.create_group sends it)."""
    return {
        "schemas": [lg.GROUP_SCHEMA, lg.MS_GROUP_SCHEMA],
        "externalId": external_id,
        "displayName": display_name,
        "meta": {"resourceType": "Group"},
    }


def group_doc(display_name: str, external_id: str) -> dict:
    return {"externalId": external_id, "displayName": display_name}


@dataclass
class Directory:
    """What the load generator needs to know of a loaded directory."""

    shape: Shape
    sample: list[int]  # indexes of the users looked up and patched
    names: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # index -> (userName, externalId, id)
    nest_top: str = ""  # id of the chain's top group
    nest_users: int = 0  # users under it, directly or through the nested groups
    walk_s: float = 0.0  # a cursor walk through every user, 1,000 a page (measured in run_phases)


async def membership(shape: Shape, idp_id: str, group_ids: list[str], user_ids: list[str]) -> AsyncIterator[list[dict]]:
    """The member rows, in batches: the big group, the nested chain, then SMALL_GROUP users per other group."""
    rows: list[dict] = []

    def add(group: int, member: str, kind: str = "User") -> None:
        rows.append({"idp_id": idp_id, "group_id": group_ids[group], "member_id": member, "type": kind})

    # Members spread evenly over the directory (and so over its pages), as the chain's and the others' are.
    for k in range(shape.big_members):
        add(0, user_ids[k * shape.users // shape.big_members])
        if len(rows) >= BATCH:
            yield rows
            rows = []
    depth = min(NEST_DEPTH, shape.groups - 1)
    for level in range(1, depth + 1):
        for j in range(NEST_USERS):
            add(level, user_ids[nested_user(shape, level, j)])
        if level < depth:
            add(level, group_ids[level + 1], "Group")
    for g in range(depth + 1, shape.groups):
        for j in range(SMALL_GROUP):
            add(g, user_ids[(g * 7919 + j * 104_729) % shape.users])
        if len(rows) >= BATCH:
            yield rows
            rows = []
    if rows:
        yield rows


def nested_users(shape: Shape) -> int:
    """Distinct users in the chain's top group, directly or through the groups nested in it."""
    depth = min(NEST_DEPTH, shape.groups - 1)
    return len({nested_user(shape, k, j) for k in range(1, depth + 1) for j in range(NEST_USERS)})


def nested_user(shape: Shape, level: int, j: int) -> int:
    return (level * NEST_USERS + j) * 9973 % shape.users


async def directory_rows(
    shape: Shape, idp_id: str, head: list[tuple[str, list[dict]]], directory: Directory
) -> AsyncIterator[tuple[str, list[dict]]]:
    """Every row of the database: the template's API key and IdP, then users, groups and members."""
    for table, rows in head:
        yield table, rows
    sample = set(directory.sample)
    user_ids: list[str] = []
    for first in range(0, shape.users, BATCH):
        stamp = now()
        batch = []
        for i, (name, ext, rid) in enumerate(identities(min(BATCH, shape.users - first)), first):
            user_ids.append(rid)
            if i in sample:
                directory.names[i] = (name, ext, rid)
            batch.append(
                {
                    "seq": i + 1,
                    "id": rid,
                    "idp_id": idp_id,
                    "user_name": name,
                    "external_id": ext,
                    "active": True,
                    "doc": user_doc(name, ext, i),
                    "version": 1,
                    "created": stamp,
                    "modified": stamp,
                }
            )
        yield "users", batch
    group_ids = [new_resource_id() for _ in range(shape.groups)]
    stamp = now()
    batch = []
    for g, gid in enumerate(group_ids):
        name = f"Scale Group {g:05d}"
        ext = str(uuid.UUID(int=random.Random(g).getrandbits(128), version=4))
        batch.append(
            {
                "seq": g + 1,
                "id": gid,
                "idp_id": idp_id,
                "display_name": name,
                "external_id": ext,
                "doc": group_doc(name, ext),
                "version": 1,
                "created": stamp,
                "modified": stamp,
            }
        )
        if len(batch) >= BATCH:
            yield "groups", batch
            batch = []
    if batch:
        yield "groups", batch
    if shape.groups > 1:
        directory.nest_top = group_ids[1]
        directory.nest_users = nested_users(shape)
    async for rows in membership(shape, idp_id, group_ids, user_ids):
        yield "group_members", rows


async def ahead(
    batches: AsyncIterator[tuple[str, list[dict]]], depth: int = 3
) -> AsyncIterator[tuple[str, list[dict]]]:
    """`batches`, made up to `depth` batches ahead in a task of their own, while the store writes the last ones."""
    queue: asyncio.Queue = asyncio.Queue(depth)
    done = object()

    async def produce() -> None:
        async for item in batches:
            await queue.put(item)
            await asyncio.sleep(0)  # let the writer send what it has before the next batch is made
        await queue.put(done)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not done:
            yield item
        await producer
    finally:
        producer.cancel()


def set_affinity(cpus: set[int]) -> set[int]:
    """Every thread of this process onto `cpus` (sched_setaffinity(0) moves only the calling thread, and
    threads inherit it when they start); returns the main thread's CPUs before."""
    before = os.sched_getaffinity(0)
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)
    return before


# --------------------------------------------------------------------------- template: key, IdP, checked rows


@dataclass
class Template:
    tenant: str  # /v1/scim/<idp>
    token: str
    idp_id: str
    head: list[tuple[str, list[dict]]]  # the api_keys and idps rows


async def make_template(workdir: Path) -> Template:
    """The API key and IdP (the CLI), and one user and one group created through the server, whose stored
    rows must equal what directory_rows generates for the same bodies."""
    db = workdir / "template.db"
    port = bench_run.free_port()
    tenant, token = await asyncio.to_thread(bench_run.provision_scimlet, db, port, ADMIN_ENV)
    srv, _ = await bench_run.start_scimlet(workdir, db, port, tenant, token, 30, ADMIN_ENV, label="template")
    try:
        st = lg.State(srv.base_url, token, 1)
        name, ext, _ = identities(1)[0]
        st.user_names, st.external_ids, st.ids = [name], [ext], [None]
        await st.client.reset()
        status, body, _ = await st.client.one("POST", "/Users", lg.user_body(st, 0))
        if status != 201:
            raise RuntimeError(f"template user: {status} {body[:300]!r}")
        status, body, _ = await st.client.one(
            "POST", "/Groups", lg.dumps(group_body("Scale Group 00000", "template-group"))
        )
        if status != 201:
            raise RuntimeError(f"template group: {status} {body[:300]!r}")
        st.client.close()
    finally:
        srv.stop()
    store = create_store(load_settings(environ={"SCIMLET_DATABASE_PATH": str(db)}))
    tables: dict[str, list[dict]] = {}
    for table in ("api_keys", "idps", "users", "groups"):
        tables[table] = [row async for rows in store.export_rows(table, 100) for row in rows]
    if tables["users"][0]["doc"] != user_doc(name, ext, 0):
        raise RuntimeError(f"the generated user differs from the stored one: {tables['users'][0]['doc']}")
    if tables["groups"][0]["doc"] != group_doc("Scale Group 00000", "template-group"):
        raise RuntimeError(f"the generated group differs from the stored one: {tables['groups'][0]['doc']}")
    idp_id = tables["idps"][0]["id"]
    return Template(tenant, token, idp_id, [("api_keys", tables["api_keys"]), ("idps", tables["idps"])])


# --------------------------------------------------------------------------- one size on one backend


@dataclass
class Backend:
    name: str
    database: Callable[[int], object]  # size -> a SQLite Path or a postgresql:// URL, fresh
    size_of: Callable[[object], int]  # database -> bytes on disk
    settle: Callable[[object], None]  # after the load: what the database itself would do next
    discard: Callable[[object], None]


def sqlite_backend(workdir: Path) -> Backend:
    def database(size: int) -> Path:
        return workdir / f"scale-{size}.db"

    def size_of(db: object) -> int:
        assert isinstance(db, Path)
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))

    def discard(db: object) -> None:
        assert isinstance(db, Path)
        for p in db.parent.glob(db.name + "*"):
            p.unlink()

    return Backend("SQLite", database, size_of, lambda db: None, discard)


def postgresql_backend(pg: pg_server.PostgresServer) -> Backend:
    def database(size: int) -> str:
        return pg_server.create_database(pg.url)

    def size_of(db: object) -> int:
        return int(pg_server.psql(str(db), "SELECT pg_database_size(current_database())", pg.bin_dir).strip())

    def settle(db: object) -> None:
        # What autovacuum does to a table after a bulk load (within its naptime, a minute): done here, before
        # the phases, so that it does not land in the middle of one; it also sets the visibility map.
        pg_server.psql(str(db), "VACUUM (ANALYZE)", pg.bin_dir)

    return Backend("PostgreSQL", database, size_of, settle, lambda db: pg_server.drop_database(str(db)))


def settings_env(db: object) -> dict[str, str]:
    return {"SCIMLET_DATABASE_PATH": str(db)} if isinstance(db, Path) else {"SCIMLET_DATABASE_URL": str(db)}


async def load(db: object, shape: Shape, template: Template) -> tuple[Directory, float]:
    rng = random.Random(shape.users)
    directory = Directory(shape, sorted(rng.sample(range(shape.users), min(SAMPLE, shape.users))))
    store = create_store(load_settings(environ=settings_env(db)))
    # The load is not timed against anything: while it runs, this process (generating the rows, and SQLite's
    # inserts in a thread of it) may use every CPU, and the next batch is made while the last is written.
    pinned = set_affinity(set(range(os.cpu_count() or 1))) if bench_run.PINNED else None
    t0 = time.perf_counter()
    try:
        counts = await store.import_rows(ahead(directory_rows(shape, template.idp_id, template.head, directory)))
    finally:
        if pinned is not None:
            set_affinity(pinned)
    elapsed = time.perf_counter() - t0
    if counts["users"] != shape.users or counts["groups"] != shape.groups:
        raise RuntimeError(f"loaded {counts}, wanted {shape}")
    return directory, elapsed


@dataclass
class Measured:
    key: str
    result: lg.PhaseResult

    def json(self) -> dict:
        r = self.result
        cpu = r.extra.get("server_cpu")
        return {
            "label": LABELS[self.key],
            "ops": r.ops,
            "ops_per_s": r.ops_per_s,
            "p50_ms": r.pct_ms(50),
            "p99_ms": r.pct_ms(99),
            "ok": r.ok,
            "capped": r.capped,
            "check": r.check,
            "errors": r.errors[:3],
            "server_cpu": cpu,
            # CPU time the server (scimlet, and PostgreSQL's processes) spent per request: unlike latency and
            # throughput, it does not move when other work on the machine takes the server's core away.
            "server_cpu_ms_per_op": cpu * r.elapsed_s / r.ops * 1000 if cpu is not None and r.ops else None,
        }


async def measure_size(
    workdir: Path,
    backend: Backend,
    shape: Shape,
    template: Template,
    clock: bench_run.Clock,
    phase_s: float,
    pg: pg_server.PostgresServer | None,
) -> dict:
    out: dict = {"size": shape.users, "groups": shape.groups, "big_group": shape.big_members}
    db = await asyncio.to_thread(backend.database, shape.users)
    try:
        log(f"{backend.name} {shape.users:,}: loading")
        directory, load_s = await load(db, shape, template)
        await asyncio.to_thread(backend.settle, db)
        out["load_s"] = load_s
        out["db_bytes"] = await asyncio.to_thread(backend.size_of, db)
        out["db_bytes_per_user"] = out["db_bytes"] / shape.users
        log(
            f"{backend.name} {shape.users:,}: loaded in {load_s:.1f}s ({shape.users / load_s:,.0f} users/s), "
            f"{out['db_bytes'] / 1e6:.1f} MB, {out['db_bytes_per_user']:.0f} B/user"
        )
        port = bench_run.free_port()
        srv, startup = await bench_run.start_scimlet(
            workdir,
            db,
            port,
            template.tenant,
            template.token,
            60,
            ADMIN_ENV,
            label=f"scale-{backend.name}-{shape.users}",
        )
        out["startup_s"] = startup
        try:
            await asyncio.sleep(0.5)
            out["rss_idle_kb"] = bench_run.rss_of(srv.proc.pid)["pid_kb"]
            peak = [out["rss_idle_kb"]]

            async def sample_rss() -> None:
                while True:
                    peak.append(bench_run.rss_of(srv.proc.pid)["pid_kb"])
                    await asyncio.sleep(0.1)

            sampler = asyncio.create_task(sample_rss())
            try:
                phases = await run_phases(srv, port, template, directory, clock, phase_s, pg)
            finally:
                sampler.cancel()
            out["rss_load_kb"] = max(peak)
            out["ops"] = {m.key: m.json() for m in phases}
            out["cursor_walk_s"] = directory.walk_s
        finally:
            srv.stop()
        log(
            f"{backend.name} {shape.users:,}: start-up {startup:.2f}s, RSS idle {out['rss_idle_kb'] / 1024:.1f} MB, "
            f"under load {out['rss_load_kb'] / 1024:.1f} MB"
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(backend.discard, db)
    return out


async def run_phases(
    srv: bench_run.Server,
    port: int,
    template: Template,
    directory: Directory,
    clock: bench_run.Clock,
    phase_s: float,
    pg: pg_server.PostgresServer | None,
) -> list[Measured]:
    db_pid = pg.pid if pg is not None else None
    st = lg.State(srv.base_url, srv.token, CONCURRENCY, server_pid=srv.proc.pid, db_pid=db_pid)
    admin = lg.State(f"http://127.0.0.1:{port}/v1/admin", ADMIN_TOKEN, 1, server_pid=srv.proc.pid, db_pid=db_pid)
    for i in directory.sample:
        name, ext, rid = directory.names[i]
        st.user_names.append(name)
        st.external_ids.append(ext)
        st.ids.append(rid)
    shape = directory.shape
    out: list[Measured] = []
    many = 10**6  # every phase runs to its time limit

    async def step(key: str, coro) -> lg.PhaseResult:
        try:
            r = await coro
        except Exception as e:  # one broken phase must not hide the others
            r = lg.PhaseResult(key)
            r.fail(f"phase crashed: {type(e).__name__}: {e}")
            r.check = "crashed"
        log(f"  {shape.users:>9,} {key:<14} {r.summary()}")
        for e in r.errors[:2]:
            log(f"    ! {e}")
        out.append(Measured(key, r))
        return r

    def limit() -> float:
        return clock.limit(phase_s)

    def total_is(expected: int | None) -> Callable[[int, dict], str | None]:
        def check(k: int, doc: dict) -> str | None:
            if expected is not None and doc.get("totalResults") != expected:
                return f"totalResults {doc.get('totalResults')}, expected {expected}"
            return None

        return check

    try:
        await step("lookup", lg.phase_lookup(st.base_url, st.token, many, limit(), state=st))
        await step("patch", lg.phase_patch(st.base_url, st.token, many, limit(), state=st))
        # creates: no more than a tenth of the directory, so the larger sizes stay what they say
        await step("create", lg.phase_create(st.base_url, st.token, max(100, shape.users // 10), limit(), state=st))
        created = sum(1 for i in st.ids[len(directory.sample) :] if i is not None)
        users = shape.users + created

        async def one_at_a_time(
            key: str, path: str, check: Callable[[int, dict], str | None], *, admin_api: bool = False
        ) -> None:
            """A GET of `path` timed one request at a time (SCIM, or the admin API), checked by `check`."""
            on = admin if admin_api else st
            await step(
                key,
                lg.phase_gets(
                    on.base_url,
                    on.token,
                    many,
                    limit(),
                    state=on,
                    name=key,
                    path=lambda k: path,
                    check=check,
                    concurrency=1,
                ),
            )

        nest = lg.filter_query("groups.value", directory.nest_top)
        await one_at_a_time("groups_filter", f"/Users?{nest}&count=100", total_is(directory.nest_users))
        unindexed = "filter=" + quote('title co "x"', safe="")
        await one_at_a_time("unindexed", f"/Users?{unindexed}&count=100", total_is(0))

        def page(start: int, rows: int) -> Callable[[int, dict], str | None]:
            def check(k: int, doc: dict) -> str | None:
                got = len(doc.get("Resources") or [])
                if doc.get("startIndex") != start or got != rows or doc.get("totalResults") != users:
                    return f"startIndex {doc.get('startIndex')}, {got} rows, totalResults {doc.get('totalResults')}"
                return None

            return check

        last = max(1, users - 99)
        for key, start in (("page_first", 1), ("page_last", last)):
            await one_at_a_time(key, f"/Users?startIndex={start}&count=100", page(start, min(100, users - start + 1)))
        await one_at_a_time("count0", "/Users?count=0", total_is(users))

        # The cursor of the walk's last page, found by walking the whole directory 1,000 ids at a time.
        cursor, deep_cursor, walked, started = "", "", 0, time.perf_counter()
        while True:
            status, body, _ = await st.client.one("GET", f"/Users?count=1000&attributes=id&cursor={quote(cursor)}")
            doc = lg.loads(body) if status == 200 else {}
            walked += len(doc.get("Resources") or [])
            if status != 200 or "nextCursor" not in doc:
                break
            deep_cursor, cursor = cursor, doc["nextCursor"]
        directory.walk_s = time.perf_counter() - started
        log(f"  {shape.users:>9,} cursor walk: {walked:,} users in {directory.walk_s:.1f} s (1,000 a page)")

        def cursor_page(k: int, doc: dict) -> str | None:
            if len(doc.get("Resources") or []) != 100 or doc.get("totalResults") != users:
                return f"{len(doc.get('Resources') or [])} rows, totalResults {doc.get('totalResults')}"
            return None

        await one_at_a_time("cursor_first", "/Users?cursor=&count=100", cursor_page)
        await one_at_a_time("cursor_deep", f"/Users?count=100&cursor={quote(deep_cursor)}", cursor_page)

        def directory_page(first: bool) -> Callable[[int, dict], str | None]:
            # A page fetched with `before` always offers a `next` cursor (the storage does not look past the
            # page), so the last page is checked by its size, order and `previous` link.
            def check(k: int, doc: dict) -> str | None:
                rows = [r.get("userName", "").lower() for r in doc.get("Resources") or []]
                edge = doc.get("previous") is None if first else doc.get("previous") is not None
                if len(rows) != min(50, users) or rows != sorted(rows) or not edge or doc.get("totalResults") != users:
                    return f"{len(rows)} rows, totalResults {doc.get('totalResults')}, previous {doc.get('previous')!r}"
                return None

            return check

        users_path = f"/idps/{template.idp_id}/users?count=50"
        # The last page: the 50 names before one that sorts after every name.
        end = quote("\U0010ffff", safe="")
        for key, path, first in (
            ("console_first", users_path, True),
            ("console_last", f"{users_path}&before={end}", False),
        ):
            await one_at_a_time(key, path, directory_page(first), admin_api=True)
        patched = sorted(st.patched)
        target = st.user_names[patched[0]] if patched else st.user_names[0]

        def found(k: int, doc: dict) -> str | None:
            return None if doc.get("Resources") else f"no log record for {target}"

        await one_at_a_time("log_query", f"/logs?q={quote(target, safe='')}", found, admin_api=True)
    finally:
        st.client.close()
        admin.client.close()
    return out


# --------------------------------------------------------------------------- report


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:,.0f}")


def targets(sizes: list[dict]) -> list[tuple[str, str, str, bool | None]]:
    """(target row, measured, target, pass) at the largest size measured, against the smallest."""
    if not sizes:
        return [(row, "not measured", "", None) for row in TARGET_ROWS]
    small, big = sizes[0], sizes[-1]

    def op(size: dict, key: str, what: str) -> float | None:
        return (size.get("ops", {}).get(key) or {}).get(what)

    def ratio_row(row: str, key: str, what: str, a: dict, b: dict, text: str, higher_better: bool = False):
        x, y = op(a, key, what), op(b, key, what)
        if x is None or y is None or not x:
            return (row, "not measured", text, False)
        ratio = (x / y) if higher_better else (y / x)
        unit = "/s" if higher_better else " ms"
        return (
            row,
            f"{y:,.2f}{unit} vs {x:,.2f}{unit} ({ratio:.2f}×)",
            text,
            ratio <= RATIO and bool((a["ops"][key]["ok"]) and b["ops"][key]["ok"]),
        )

    at = f"{big['size']:,}"
    ref = f"{small['size']:,}"

    def deep_row(row: str, size: dict, first: str, deep: str) -> tuple[str, str, str, bool | None]:
        a, b = op(size, first, "p50_ms"), op(size, deep, "p50_ms")
        text = f"last page p50 ≤ {RATIO}× the first page's, at {at}"
        if a is None or b is None or not a:
            return (row, "not measured", text, False)
        ok = b / a <= RATIO and size["ops"][first]["ok"] and size["ops"][deep]["ok"]
        return (row, f"{b:,.2f} ms vs {a:,.2f} ms ({b / a:.2f}×)", text, ok)

    rows = [
        ratio_row("userName lookup p50", "lookup", "p50_ms", small, big, f"at {at} ≤ {RATIO}× the figure at {ref}"),
        ratio_row("userName lookup p99", "lookup", "p99_ms", small, big, f"at {at} ≤ {RATIO}× the figure at {ref}"),
        ratio_row(
            "PATCH throughput",
            "patch",
            "ops_per_s",
            small,
            big,
            f"at {at} ≥ 1/{RATIO} of the figure at {ref}",
            higher_better=True,
        ),
        ratio_row(
            "server CPU per lookup",
            "lookup",
            "server_cpu_ms_per_op",
            small,
            big,
            f"at {at} ≤ {RATIO}× the figure at {ref}",
        ),
        ratio_row(
            "server CPU per PATCH",
            "patch",
            "server_cpu_ms_per_op",
            small,
            big,
            f"at {at} ≤ {RATIO}× the figure at {ref}",
        ),
        (
            "RSS idle",
            f"{big['rss_idle_kb'] / 1024:.1f} MB",
            "< 150 MB",
            big["rss_idle_kb"] < RSS_LIMIT_KB,
        ),
        (
            "RSS under load",
            f"{big['rss_load_kb'] / 1024:.1f} MB",
            "< 150 MB",
            big["rss_load_kb"] < RSS_LIMIT_KB,
        ),
        ("start-up to first 200", f"{big['startup_s']:.2f} s", "< 1 s", big["startup_s"] < STARTUP_LIMIT_S),
        deep_row("deep SCIM page vs first", big, "page_first", "page_last"),
        deep_row("deep cursor page vs first", big, "cursor_first", "cursor_deep"),
        deep_row("deep directory page vs first", big, "console_first", "console_last"),
        (
            "database size per user",
            f"{big['db_bytes_per_user']:,.0f} B ({big['db_bytes'] / 1e6:,.0f} MB in all)",
            "< 2 KB (2,048 B)",
            big["db_bytes_per_user"] < BYTES_PER_USER_LIMIT,
        ),
    ]
    return rows


def report(meta: dict, runs: dict[str, list[dict]], failures: list[str]) -> str:
    L: list[str] = []
    w = L.append
    w(f"# scimlet at scale — {meta['when']}")
    w("")
    w(f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['mem']}; {meta['kernel']}; Python {meta['python']}")
    w(f"- scimlet: {meta['scimlet_rev']}; pinning: {meta['pinning']}")
    w(f"- background: {meta['background']}; {meta.get('background_after', '')}")
    w(
        f"- directory at each size: N users (Entra's create body), {meta['groups']:,} groups: one of "
        f"min({meta['big_group']:,}, N) members, a chain nested {NEST_DEPTH} levels deep ({NEST_USERS} users and the "
        f"next group at each level), {SMALL_GROUP} users in each other group; loaded on a fresh database through "
        "the storage backend's bulk path (OperationsStore.import_rows: SQLite executemany, PostgreSQL COPY, one "
        "transaction), the rows checked against what the server stores for the same create bodies"
    )
    w(
        f"- each operation for {meta['phase_s']:g} s: lookups, PATCHes and creates on {CONCURRENCY} keep-alive "
        f"connections (p50/p99 include queueing behind the others, as in `make bench`), every other query one "
        f"request at a time; lookups and PATCHes spread over {SAMPLE:,} users across the whole directory; creates "
        "add at most a tenth of the directory"
    )
    if meta.get("postgresql"):
        w(
            f"- PostgreSQL {meta['postgresql']}: a throwaway server pinned to CPU 0 beside scimlet "
            f"({', '.join(f'{k}={v}' for k, v in bench_run.PG_OPTIONS.items())}), VACUUM (ANALYZE) after each load"
        )
    w(f"- wall time: {meta['wall']:.0f} s (budget {meta['budget']:.0f} s)")
    w(
        "- the machine is shared (2 cores, other work running): figures are noisy, ratios near a limit can go "
        "either way between runs"
    )
    w("")
    for backend, sizes in runs.items():
        if not sizes:
            continue
        w(f"## {backend}")
        w("")
        head = " | ".join(f"{s['size']:,} users" for s in sizes)
        w(f"| operation | {head} |")
        w("|---|" + "---:|" * len(sizes))
        for key, label, conns in OPERATIONS:
            cells = []
            for s in sizes:
                o = s.get("ops", {}).get(key)
                if o is None:
                    cells.append("-")
                    continue
                mark = "" if o["ok"] else " ✗"
                rate = ""
                if conns > 1:
                    per = o.get("server_cpu_ms_per_op")
                    share = o.get("server_cpu")
                    starved = " ⚠" if share is not None and share < 0.8 else ""
                    rate = f", {o['ops_per_s']:,.0f}/s" + (f", {per:.2f} ms CPU{starved}" if per is not None else "")
                cells.append(f"{fmt_ms(o['p50_ms'])} / {fmt_ms(o['p99_ms'])} ms{rate}{mark}")
            w(f"| {label} | {' | '.join(cells)} |")
        rows = [
            ("load (import_rows)", lambda s: f"{s['load_s']:.1f} s ({s['size'] / s['load_s']:,.0f} users/s)"),
            ("start-up to first 200", lambda s: f"{s['startup_s']:.2f} s"),
            ("cursor walk of every user, 1,000 a page", lambda s: f"{s.get('cursor_walk_s', 0):.1f} s"),
            ("RSS idle / under load", lambda s: f"{s['rss_idle_kb'] / 1024:.1f} / {s['rss_load_kb'] / 1024:.1f} MB"),
            ("database size per user", lambda s: f"{s['db_bytes_per_user']:,.0f} B"),
        ]
        for label, cell in rows:
            w(f"| {label} | {' | '.join(cell(s) for s in sizes)} |")
        w("")
        w(
            "Cells: p50 / p99 latency; for the 32-connection phases also requests/s and the server's CPU time per "
            "request (scimlet plus PostgreSQL's processes). ⚠ = the server had under 80% of its core in that phase "
            "(other work on the machine took it): its latency and rate say more about the machine than about "
            "scimlet; its CPU per request still holds. ✗ = a wrong answer (see the JSON)."
        )
        w("")
        w(f"### {backend}: targets")
        w("")
        w("| target | measured | limit | |")
        w("|---|---:|---|---|")
        for row, value, limit_text, ok in targets(sizes):
            w(f"| {row} | {value} | {limit_text} | {bench_run.verdict(ok, sizes[-1]['size'], TARGET_SIZE)} |")
        w("")
    if failures:
        w("## Runs that failed")
        w("")
        w("\n".join(f"```\n{f}\n```" for f in failures))
        w("")
    return "\n".join(L) + "\n"


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    """p50 latency against directory size, one line per operation, one panel per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b, sizes in runs.items() if sizes]
    fig, axes = plt.subplots(1, max(1, len(backends)), figsize=(7 * max(1, len(backends)), 6), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=False):
        sizes = runs[backend]
        colours = plt.get_cmap("tab20").colors
        for n, (key, label, _) in enumerate(OPERATIONS):
            xs = [s["size"] for s in sizes if s.get("ops", {}).get(key, {}).get("p50_ms") is not None]
            ys = [s["ops"][key]["p50_ms"] for s in sizes if s.get("ops", {}).get(key, {}).get("p50_ms") is not None]
            if xs:
                ax.plot(
                    xs, ys, marker="os^D"[n % 4], linestyle="-" if n % 2 == 0 else "--", color=colours[n], label=label
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users in the directory")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(f"scimlet on {backend}")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.22, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    meta_bg = bench_run.background_note()
    bench_run.PINNED = bench_run.pin_self()
    clock = bench_run.Clock(args.budget)
    meta = bench_run.machine_meta()
    started = datetime.datetime.now()
    meta.update(
        background=meta_bg,
        when=started.strftime("%Y-%m-%d %H:%M"),
        pinning=(
            "scimlet `taskset -c 0`, load generator on CPU 1"
            if bench_run.PINNED
            else "none (taskset missing or fewer than 2 CPUs available): numbers are not comparable"
        ),
        groups=args.groups,
        big_group=args.big_group,
        phase_s=args.phase_seconds,
        budget=args.budget,
        sizes=sizes,
    )
    workdir = Path(tempfile.mkdtemp(prefix="scimlet-scale-"))
    runs: dict[str, list[dict]] = {}
    failures: list[str] = []
    pg: pg_server.PostgresServer | None = None
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        template = await make_template(workdir)
        backends = [sqlite_backend(workdir)] if "sqlite" in args.backends else []
        if "postgresql" in args.backends:
            pg = await asyncio.to_thread(bench_run.start_postgresql)
            if pg is not None:
                meta["postgresql"] = bench_run.pg_version(pg)
                backends.append(postgresql_backend(pg))
        for backend in backends:
            runs[backend.name] = []
            for size in sizes:
                shape = Shape(size, min(args.groups, size), args.big_group)
                try:
                    runs[backend.name].append(
                        await measure_size(workdir, backend, shape, template, clock, args.phase_seconds, pg)
                    )
                except Exception as e:
                    failures.append(f"{backend.name} at {size:,} users: {type(e).__name__}: {e}")
                    log(failures[-1])
                    break
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    meta["wall"] = clock.elapsed
    meta["background_after"] = bench_run.background_note("just after the run")
    outdir = Path(args.results_dir) if args.results_dir else RESULTS
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d-%H%M") + "-scale"
    text = report(meta, runs, failures)
    (outdir / f"{stamp}.md").write_text(text)
    verdicts = {
        backend: [
            {"target": row, "measured": value, "limit": limit_text, "pass": ok}
            for row, value, limit_text, ok in targets(sizes_run)
        ]
        for backend, sizes_run in runs.items()
    }
    (outdir / f"{stamp}.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "targets": verdicts, "failures": failures}, indent=1, default=str)
    )
    plot(runs, outdir / f"{stamp}.png")
    print(text)
    log(f"wrote {outdir / stamp}.md, .json and .png in {clock.elapsed:.0f}s")
    bad = [
        f"{b} {s['size']:,} {k}"
        for b, ss in runs.items()
        for s in ss
        for k, o in s.get("ops", {}).items()
        if not o["ok"]
    ]
    if failures or bad:
        log("FAILED: " + "; ".join(failures + bad))
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="users per directory, comma-separated")
    ap.add_argument("--groups", type=int, default=GROUPS, help=f"groups per directory (default {GROUPS:,})")
    ap.add_argument(
        "--big-group", type=int, default=BIG_GROUP, help=f"members of the big group (default {BIG_GROUP:,})"
    )
    ap.add_argument("--phase-seconds", type=float, default=PHASE_S, help=f"seconds per operation (default {PHASE_S})")
    ap.add_argument("--budget", type=float, default=WALL_BUDGET_S, help="seconds for the whole run")
    ap.add_argument(
        "--backends", default="sqlite,postgresql", help="sqlite, postgresql (where PostgreSQL 15 is installed), or both"
    )
    ap.add_argument("--results-dir", help="where to write the report (default bench/results/)")
    args = ap.parse_args()
    lg.new_event_loop_policy()
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        log("interrupted: servers stopped, temporary data removed, no report written")
        return 130


if __name__ == "__main__":
    sys.exit(main())
