"""`make bench`: scimlet against scim2-server under the same Entra-shaped load, on this machine only.

    .venv/bin/python bench/run.py            # full run: N=20,000, 100,000 users/members (< 15 min)
    .venv/bin/python bench/run.py --quick    # smoke run: N=500, 2,000 members (< 2 min)

The servers run pinned to CPU 0 (`taskset -c 0`) and this process, the load generator, pins itself
to CPU 1, where taskset exists and both CPUs are ours. scimlet serves a fresh SQLite database in a
temporary directory; scim2-server (PyPI, pinned in bench/requirements-baseline.txt) runs from its
own venv, bench/.venv-baseline, made on first use. Only 127.0.0.1 is ever targeted. Every phase
has a count and a time limit. The report goes to stdout and to bench/results/<date>-<time>.md.

Where PostgreSQL 15 is installed (tests/pg_server.py finds it), the same phases run a third time with
scimlet on PostgreSQL: a throwaway server (initdb in a temporary directory) and a fresh database.
The PostgreSQL server is pinned to CPU 0 as well, beside scimlet: scimlet and its database share the
one core scim2-server, which keeps its data in its own process, has to itself. Then one instance
against two `app.py serve` processes on one database, the load split between them, everything
server-side on CPU 0 (see `instances_compare`). The PostgreSQL server is stopped and its directory
removed at the end, however the run ends (an exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(ROOT))  # tests.pg_server

import loadgen as lg  # noqa: E402

from tests import pg_server  # noqa: E402

BASELINE_VENV = BENCH / ".venv-baseline"
BASELINE_REQS = BENCH / "requirements-baseline.txt"
RESULTS = BENCH / "results"
WALL_BUDGET_S = 870.0  # whole run, full mode: stay under 15 minutes
QUICK_BUDGET_S = 110.0
# The throwaway server's durability as SQLite's in scimlet's default (WAL, synchronous=NORMAL): a commit
# does not wait for its fsync (the last moments may be lost in a power cut), but the files are fsynced and
# never corrupt. tests/pg_server.py turns fsync off for the tests; a benchmark must not.
PG_OPTIONS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}
PG_PARTY = "scimlet-pg"


@dataclass
class Plan:
    n: int  # users created / looked up / patched
    users: int  # users loaded in total before the group phase (scimlet RSS is read there)
    members: int  # members put in the group
    concurrency: int = 32
    probe_rounds: int = 100  # sequential adds of 100 new members to the full group (then removed again)
    excl_gets: int = 2000
    full_gets: int = 3
    sync_n: int = 20000  # creates per `synchronous` mode, 32 connections
    sync_seq_n: int = 2000  # and then one connection at a time (no group commit to share an fsync)
    bulk_n: int = 1000  # creates per round: as single requests (32 connections), then as one Bulk request
    bulk_rounds: int = 3
    events_n: int = 2000  # creates per round and IdP: without an event subscription, with a dead receiver's
    events_rounds: int = 3
    calibrate_n: int = 30000
    # time limits (seconds), scimlet / scim2-server
    limits: dict = field(
        default_factory=lambda: {
            "create": 30,
            "lookup": 20,
            "patch": 30,
            "paging": 20,
            "fill": 90,
            "members": 60,
            "probe": 15,
            "excl": 10,
            "full": 30,
            "sync": 20,
            "sync_seq": 8,
            "calibrate": 10,
            "ready": 30,
            "instances_create": 20,
            "instances_lookup": 15,
        }
    )
    baseline_limits: dict = field(
        default_factory=lambda: {
            "create": 30,
            "lookup": 20,
            "patch": 30,
            "paging": 20,
            "fill": 15,
            "members": 45,
            "probe": 10,
            "excl": 10,
            "full": 15,
        }
    )


FULL = Plan(n=20000, users=100000, members=100000)
QUICK = Plan(
    n=500,
    users=2000,
    members=2000,
    probe_rounds=5,
    excl_gets=200,
    full_gets=2,
    sync_n=500,
    sync_seq_n=100,
    bulk_n=200,
    bulk_rounds=1,
    events_n=200,
    events_rounds=1,
    calibrate_n=3000,
    limits={
        "create": 6,
        "lookup": 4,
        "patch": 6,
        "paging": 3,
        "fill": 6,
        "members": 5,
        "probe": 3,
        "excl": 3,
        "full": 3,
        "sync": 4,
        "sync_seq": 1,
        "calibrate": 2,
        "ready": 20,
        "instances_create": 4,
        "instances_lookup": 3,
    },
    baseline_limits={
        "create": 3,
        "lookup": 2,
        "patch": 3,
        "paging": 2,
        "fill": 2,
        "members": 3,
        "probe": 1.5,
        "excl": 2,
        "full": 2,
    },
)

TARGETS = {"create": 3000, "lookup": 4000, "patch": 3000}
# scimlet on PostgreSQL: each × scim2-server in the same run, and member adds/s
PG_RATIO_TARGET = 3.0
PG_MEMBERS_TARGET = 20000


# --------------------------------------------------------------------------- processes


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin_prefix() -> list[str]:
    return ["taskset", "-c", "0"] if PINNED else []


def pin_self() -> bool:
    """Pin this process (the load generator) to CPU 1 when the server can have CPU 0 to itself."""
    if not shutil.which("taskset") or not hasattr(os, "sched_setaffinity"):
        return False
    if not {0, 1} <= os.sched_getaffinity(0):
        return False
    os.sched_setaffinity(0, {1})
    return True


PINNED = False


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base_url: str
    token: str
    log_path: Path
    started_at: float

    def rss_kb(self) -> dict:
        return rss_of(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def rss_of(pid: int) -> dict:
    """VmRSS (kB) of a process and of its whole tree, from /proc."""

    def one(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def children(p: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
        return out

    tree, todo = 0, [pid]
    while todo:
        p = todo.pop()
        tree += one(p)
        todo += children(p)
    return {"pid_kb": one(pid), "tree_kb": tree}


async def wait_ready(base_url: str, token: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll GET {tenant}/ServiceProviderConfig with the token until 200; return seconds waited."""
    u = urlsplit(base_url)
    conn = lg.Conn(u.hostname, u.port, token)
    start = time.perf_counter()
    last = "no answer"
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering ({last})")
        try:
            status, body = await conn.request("GET", u.path + "/ServiceProviderConfig")
            if status == 200:
                conn.close()
                return time.perf_counter() - start
            last = f"{status} {body[:200]!r}"
        except (OSError, asyncio.IncompleteReadError, lg.HttpError) as e:
            last = repr(e)
            conn.close()
        await asyncio.sleep(0.005)
    raise RuntimeError(f"not ready after {timeout:.0f}s: {last}")


def run_cli(args: list[str], env: dict) -> dict:
    cmd = [sys.executable, "app.py", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[1:])}` exited {p.returncode}: {p.stderr.strip()[-800:]}")
    out = p.stdout.strip()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        for line in reversed(out.splitlines()):  # tolerate chatter before the JSON line
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)
        raise RuntimeError(f"`{' '.join(cmd[1:])}` printed no JSON: {out[-500:]!r}") from None


def scimlet_env(db: Path | str, port: int, extra: dict | None = None) -> dict:
    """The environment of scimlet on `db`: a SQLite file (Path) or a postgresql:// URL (str)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLET_")}
    if isinstance(db, Path):
        env["SCIMLET_DATABASE_PATH"] = str(db)
    else:
        env["SCIMLET_DATABASE_URL"] = db
    env.update(SCIMLET_SERVER_HOST="127.0.0.1", SCIMLET_SERVER_PORT=str(port))
    env.update(extra or {})
    return env


def provision_scimlet(db: Path | str, port: int, extra: dict | None = None) -> tuple[str, str]:
    """Create the API key and the IdP with the CLI; return (tenant path, secret)."""
    env = scimlet_env(db, port, extra)
    try:
        key = run_cli(["apikey", "create", "--name", "bench", "--write", "users,groups", "--json"], env)
    except RuntimeError:
        run_cli(["migrate"], env)  # only if the CLI wants an explicit migration first
        key = run_cli(["apikey", "create", "--name", "bench", "--write", "users,groups", "--json"], env)
    idp = run_cli(["idp", "create", "--name", "bench", "--apikey", "bench", "--json"], env)
    path = urlsplit(idp.get("tenant_url", "")).path.rstrip("/") or f"/v1/scim/{idp['id']}"
    return path, key["secret"]


async def start_scimlet(
    workdir: Path,
    db: Path | str,
    port: int,
    tenant: str,
    token: str,
    timeout: float,
    extra: dict | None = None,
    label: str = "scimlet",
) -> tuple[Server, float]:
    log_path = workdir / f"{label}-{port}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*pin_prefix(), sys.executable, "app.py", "serve"],
        cwd=ROOT,
        env=scimlet_env(db, port, extra),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}{tenant}"
    srv = Server(label, proc, base, token, log_path, t0)
    try:
        await wait_ready(base, token, timeout, proc)
    except RuntimeError as e:
        srv.stop()
        raise RuntimeError(f"{label} did not start: {e}\n--- server log tail ---\n{srv.log_tail()}") from None
    return srv, time.perf_counter() - t0


def ensure_baseline_venv() -> Path:
    """bench/.venv-baseline with the pinned scim2-server stack (its deps stay out of the project venv),
    on this process's interpreter: both servers must run on the same Python build."""
    py = BASELINE_VENV / "bin" / "python"
    want = hashlib.sha256(BASELINE_REQS.read_bytes() + os.path.realpath(sys.executable).encode()).hexdigest()
    stamp = BASELINE_VENV / ".requirements.sha256"
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    log("creating bench/.venv-baseline for scim2-server (one time)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(BASELINE_VENV)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(BASELINE_REQS)], check=True
    )
    stamp.write_text(want)
    return py


async def start_baseline(workdir: Path, port: int, timeout: float) -> tuple[Server, float]:
    py = ensure_baseline_venv()
    idp = secrets.token_hex(8)
    token = secrets.token_urlsafe(32)
    log_path = workdir / f"scim2-server-{port}.log"
    env = {**os.environ, "BENCH_IDP": idp, "BENCH_TOKEN": token}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            *pin_prefix(),
            str(py),
            "-m",
            "uvicorn",
            "baseline_app:app",
            "--app-dir",
            str(BENCH),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=BENCH,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/v1/scim/{idp}"
    srv = Server("scim2-server", proc, base, token, log_path, t0)
    try:
        await wait_ready(base, token, timeout, proc)
    except RuntimeError as e:
        srv.stop()
        raise RuntimeError(f"scim2-server did not start: {e}\n--- server log tail ---\n{srv.log_tail()}") from None
    return srv, time.perf_counter() - t0


# --------------------------------------------------------------------------- the run


class Clock:
    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget

    def limit(self, wanted: float) -> float:
        """A phase's time limit: what it wants, within what is left of the run."""
        left = self.budget - (time.perf_counter() - self.start)
        return max(1.0, min(wanted, left))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class Turns:
    """The two servers' phases taken in turn: scimlet's create, scim2-server's create, scimlet's lookup...

    Both servers are up at once (pinned to the same core), but only one is under load at a time. Each
    ratio then compares two runs seconds apart instead of minutes apart: run back to back, this
    machine's background load moved one server's rate by ±15% between runs. The first turn waits
    until every party is ready for it, so neither server's start-up overlaps the other's phase.
    """

    def __init__(self, parties: list[str]) -> None:
        self.parties = parties
        self.index = 0
        self.arrived: set[str] = set()
        self.gone: set[str] = set()
        self.changed = asyncio.Condition()

    def _ready(self, party: str) -> bool:
        return self.arrived | self.gone >= set(self.parties) and self.parties[self.index] == party

    def _advance(self) -> None:
        for _ in self.parties:
            self.index = (self.index + 1) % len(self.parties)
            if self.parties[self.index] not in self.gone:
                return

    @contextlib.asynccontextmanager
    async def turn(self, party: str):
        async with self.changed:
            self.arrived.add(party)
            self.changed.notify_all()
            await self.changed.wait_for(lambda: self._ready(party))
        try:
            yield
        finally:
            async with self.changed:
                self._advance()
                self.changed.notify_all()

    async def leave(self, party: str) -> None:
        async with self.changed:
            self.gone.add(party)
            if self.parties[self.index] == party:
                self._advance()
            self.changed.notify_all()


async def suite(
    srv: Server,
    plan: Plan,
    limits: dict,
    profile: lg.Profile,
    clock: Clock,
    on_users_loaded=None,
    turns: Turns | None = None,
    db_pid: int | None = None,
) -> tuple[list[lg.PhaseResult], lg.State, dict]:
    """The phases, in order, against one server (and its database server `db_pid`, whose CPU is counted
    with the server's). Returns results, state and side measurements."""
    st = lg.State(srv.base_url, srv.token, plan.concurrency, profile, server_pid=srv.proc.pid, db_pid=db_pid)
    out: list[lg.PhaseResult] = []
    side: dict = {}
    args = (srv.base_url, srv.token)

    async def step(coro_fn, n, key, **kw):
        try:
            async with turns.turn(srv.name) if turns else contextlib.nullcontext():
                r = await coro_fn(*args, n, clock.limit(limits[key]), state=st, **kw)
        except Exception as e:  # one broken phase must not hide the others
            r = lg.PhaseResult(kw.get("name") or coro_fn.__name__.removeprefix("phase_"))
            r.fail(f"phase crashed: {type(e).__name__}: {e}")
            r.check = "crashed"
        log(f"{srv.name}: {r.summary()}")
        for e in r.errors[:3]:
            log(f"  ! {e}")
        out.append(r)
        return r

    try:
        await step(lg.phase_create, plan.n, "create")
        await step(lg.phase_lookup, plan.n, "lookup")
        await step(lg.phase_patch, plan.n, "patch")
        await step(lg.phase_paging, (plan.n + 99) // 100, "paging")
        more = max(0, plan.users - len(st.ids))
        if more:
            await step(lg.phase_create, more, "fill", name="user fill")
        side["users_loaded"] = len(st.created())
        if on_users_loaded is not None:
            side.update(await on_users_loaded(st))
        await step(lg.phase_group_fill, plan.members, "members")
        # users kept out of the group, then added 100 per PATCH to the full group
        before = len(st.ids)
        await step(lg.phase_create, lg.MEMBER_BATCH * plan.probe_rounds, "probe", name="probe users")
        st.probe_users = [i for i in range(before, len(st.ids)) if st.ids[i] is not None]
        await step(lg.phase_group_add_probe, plan.probe_rounds, "probe")
        await step(lg.phase_group_get_excluded, plan.excl_gets, "excl")
        await step(lg.phase_group_get_full, plan.full_gets, "full")
        side["rss_end"] = srv.rss_kb()
    finally:
        st.client.close()
    return out, st, side


async def sync_compare(workdir: Path, plan: Plan, clock: Clock) -> dict:
    """scimlet's create phase on a fresh database under synchronous=FULL, then NORMAL."""
    res = {}
    for mode in ("FULL", "NORMAL"):
        db = workdir / f"sync-{mode.lower()}.db"
        port = free_port()
        extra = {"SCIMLET_DATABASE_SYNCHRONOUS": mode}
        srv = None
        try:
            tenant, token = provision_scimlet(db, port, extra)
            srv, _ = await start_scimlet(
                workdir, db, port, tenant, token, plan.limits["ready"], extra, label=f"scimlet-sync-{mode.lower()}"
            )
            st = lg.State(srv.base_url, srv.token, plan.concurrency, server_pid=srv.proc.pid)
            r = await lg.phase_create(
                srv.base_url,
                srv.token,
                plan.sync_n,
                clock.limit(plan.limits["sync"]),
                state=st,
                name=f"create sync={mode}",
            )
            log(f"scimlet: {r.summary()}")
            res[mode] = r
            r1 = await lg.phase_create(
                srv.base_url,
                srv.token,
                plan.sync_seq_n,
                clock.limit(plan.limits["sync_seq"]),
                state=st,
                name=f"create sync={mode}, 1 conn",
                concurrency=1,
            )
            st.client.close()
            log(f"scimlet: {r1.summary()}")
            res[f"{mode} 1 conn"] = r1
        except Exception as e:
            log(f"sync={mode}: {e}")
            res[mode] = str(e)
        finally:
            if srv is not None:
                srv.stop()
    return res


async def bulk_compare(workdir: Path, plan: Plan) -> dict:
    """Server CPU for `bulk_n` creates sent as single requests (32 connections), then as one POST /Bulk
    of `bulk_n` POST operations (the same Entra body each), alternating for `bulk_rounds` rounds on one
    fresh scimlet. Each round's creates are new users. Returns per-round CPU seconds and wall seconds."""
    db = workdir / "bulk.db"
    port = free_port()
    tenant, token = provision_scimlet(db, port)
    srv, _ = await start_scimlet(workdir, db, port, tenant, token, plan.limits["ready"], label="scimlet-bulk")
    rounds: list[dict] = []
    st = lg.State(srv.base_url, srv.token, plan.concurrency, server_pid=srv.proc.pid)
    try:
        for _ in range(plan.bulk_rounds):
            cpu0, t0 = lg.cpu_seconds(srv.proc.pid), time.perf_counter()
            single = await lg.phase_create(srv.base_url, srv.token, plan.bulk_n, 120, state=st, name="bulk: single")
            cpu1, t1 = lg.cpu_seconds(srv.proc.pid), time.perf_counter()
            first = len(st.ids)
            st.ensure_users(first + plan.bulk_n)
            operations = [
                {"method": "POST", "path": "/Users", "bulkId": f"u{i}", "data": lg.loads(lg.user_body(st, i))}
                for i in range(first, first + plan.bulk_n)
            ]
            body = lg.dumps(
                {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations}
            )
            await st.client.reset()
            cpu2, t2 = lg.cpu_seconds(srv.proc.pid), time.perf_counter()
            status, answer, _ = await st.client.one("POST", "/Bulk", body)
            cpu3, t3 = lg.cpu_seconds(srv.proc.pid), time.perf_counter()
            made = (
                sum(op.get("status") == "201" for op in lg.loads(answer).get("Operations", [])) if status == 200 else 0
            )
            for i in range(first, first + plan.bulk_n):
                st.ids[i] = f"bulk-{i}"  # created (the ids are not needed again)
            if cpu0 is None or cpu1 is None or cpu2 is None or cpu3 is None:
                raise RuntimeError("no CPU time readable for the server")
            rounds.append(
                {
                    "single_cpu_s": cpu1 - cpu0,
                    "single_wall_s": t1 - t0,
                    "single_created": single.extra.get("created"),
                    "bulk_cpu_s": cpu3 - cpu2,
                    "bulk_wall_s": t3 - t2,
                    "bulk_status": status,
                    "bulk_created": made,
                }
            )
            log(f"bulk round: {rounds[-1]}")
    finally:
        st.client.close()
        srv.stop()
    return {"n": plan.bulk_n, "rounds": rounds}


async def events_compare(workdir: Path, plan: Plan, db: Path | str | None = None) -> dict:
    """Creates per second on one fresh scimlet: an IdP without event subscriptions against an IdP
    with one whose receiver is down (a loopback port nothing listens on: every delivery attempt is
    refused and backs off), `events_n` creates each, alternating for `events_rounds` rounds. Both
    IdPs are on one server and one database, so the only difference is the subscription: the
    outbox rows written with each create, and the delivery task retrying. `db`: a PostgreSQL
    database's URL (default: a new SQLite file)."""
    db = db or workdir / "events.db"
    port = free_port()
    env = {"SCIMLET_EVENTS_SECRET_KEY": "bench-events-key"}
    tenant, token = provision_scimlet(db, port, env)
    cli_env = scimlet_env(db, port, env)
    key = run_cli(["apikey", "create", "--name", "bench-events", "--write", "users,groups", "--json"], cli_env)
    idp = run_cli(["idp", "create", "--name", "bench-events", "--apikey", "bench-events", "--json"], cli_env)
    dead = f"http://127.0.0.1:{free_port()}/events"
    run_cli(["events", "subscribe", "--idp", idp["id"], "--url", dead, "--json"], cli_env)
    srv, _ = await start_scimlet(workdir, db, port, tenant, token, plan.limits["ready"], env, label="scimlet-events")
    origin = srv.base_url.split("/v1/scim/")[0]
    plain = lg.State(srv.base_url, srv.token, plan.concurrency, server_pid=srv.proc.pid)
    subscribed = lg.State(f"{origin}/v1/scim/{idp['id']}", key["secret"], plan.concurrency, server_pid=srv.proc.pid)
    rounds: list[dict] = []
    try:
        for number in range(plan.events_rounds):
            round_ = {}
            # ABBA: the database grows as the rounds go, so neither side always runs on the larger one.
            sides = [("without", plain), ("with", subscribed)]
            for label, st in sides if number % 2 == 0 else sides[::-1]:
                res = await lg.phase_create(
                    st.base_url, st.token, plan.events_n, 120, state=st, name=f"events: {label}"
                )
                round_[f"{label}_per_s"] = res.ops_per_s
                round_[f"{label}_created"] = res.statuses.get(201, 0)
            rounds.append(round_)
            log(f"events round: {round_}")
        metrics = urlopen(f"{origin}/metrics", timeout=10).read().decode()
        pending = next(
            (
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("scimlet_events_outbox_depth ")
            ),
            0.0,
        )
    finally:
        plain.client.close()
        subscribed.client.close()
        srv.stop()
    return {"n": plan.events_n, "rounds": rounds, "pending": int(pending)}


async def bench_scimlet(workdir: Path, plan: Plan, clock: Clock, turns: Turns | None = None) -> dict:
    db = workdir / "scimlet.db"
    port = free_port()
    tenant, token = provision_scimlet(db, port)
    srv, first_start = await start_scimlet(workdir, db, port, tenant, token, plan.limits["ready"])
    log(f"scimlet up at {srv.base_url} (pid {srv.proc.pid}) in {first_start:.2f}s")
    side: dict = {"first_start_s": first_start}

    async def users_loaded(st: lg.State) -> dict:
        await asyncio.sleep(0.5)  # let the server settle (no requests in flight)
        return {"rss_users": srv.rss_kb()}

    try:
        results, st, more = await suite(srv, plan, plan.limits, lg.Profile(), clock, users_loaded, turns)
        side.update(more)
    finally:
        srv.stop()
        side["server_log_tail"] = srv.log_tail(15)
    # Start-up on the existing database (users + the full group), then synchronous FULL vs NORMAL:
    # one more turn, so that none of it overlaps a scim2-server phase.
    async with turns.turn("scimlet") if turns else contextlib.nullcontext():
        srv, t = await start_scimlet(workdir, db, port, tenant, token, plan.limits["ready"], label="scimlet-restart")
        try:
            side["restart_s"] = t
            side["restart_rss"] = srv.rss_kb()
            st2 = lg.State(srv.base_url, srv.token, 1)
            await st2.client.reset()
            status, body, ns = await st2.client.one("GET", "/Users?startIndex=1&count=0")
            side["restart_total_users"] = lg.loads(body).get("totalResults") if status == 200 else f"{status}"
            if st.created():
                i = st.created()[-1]
                status, body, ns = await st2.client.one(
                    "GET", "/Users?" + lg.filter_query("userName", st.user_names[i])
                )
                side["restart_lookup"] = (status, lg.loads(body).get("totalResults") if status == 200 else body[:200])
                side["restart_first_lookup_ms"] = ns / 1e6
            st2.client.close()
        finally:
            srv.stop()
        log(f"scimlet restart on existing DB: first 200 after {t:.3f}s; {side.get('restart_total_users')} users")
        side["db_bytes"] = sum(p.stat().st_size for p in workdir.glob("scimlet.db*"))
        side["sync"] = await sync_compare(workdir, plan, clock)
        try:
            side["bulk"] = await bulk_compare(workdir, plan)
        except Exception as e:  # reported as failed, never hiding the rest
            side["bulk"] = {"error": f"{type(e).__name__}: {e}"}
        try:
            side["events"] = await events_compare(workdir, plan)
        except Exception as e:
            side["events"] = {"error": f"{type(e).__name__}: {e}"}
    return {"results": results, "state": st, "side": side}


async def bench_baseline(workdir: Path, plan: Plan, clock: Clock, turns: Turns | None = None) -> dict:
    port = free_port()
    srv, t = await start_baseline(workdir, port, plan.limits["ready"])
    log(f"scim2-server up at {srv.base_url} (pid {srv.proc.pid}) in {t:.2f}s")
    profile = lg.Profile(
        name="scim2-server", group_schemas=(lg.GROUP_SCHEMA,), user_patch_ok=(200, 204), member_remove=None
    )
    side: dict = {"first_start_s": t}

    async def users_loaded(st: lg.State) -> dict:
        await asyncio.sleep(0.5)
        return {"rss_users": srv.rss_kb()}

    try:
        results, st, more = await suite(srv, plan, plan.baseline_limits, profile, clock, users_loaded, turns)
        side.update(more)
    finally:
        srv.stop()
        side["server_log_tail"] = srv.log_tail(15)
    return {"results": results, "state": st, "side": side}


async def bench_postgresql(
    workdir: Path, plan: Plan, clock: Clock, pg: pg_server.PostgresServer, turns: Turns | None = None
) -> dict:
    """The suite against scimlet on a fresh database of `pg`, then one instance against two."""
    db = await asyncio.to_thread(pg_server.create_database, pg.url)
    port = free_port()
    tenant, token = await asyncio.to_thread(provision_scimlet, db, port)
    srv, first_start = await start_scimlet(workdir, db, port, tenant, token, plan.limits["ready"], label=PG_PARTY)
    log(f"{PG_PARTY} up at {srv.base_url} (pid {srv.proc.pid}) in {first_start:.2f}s")
    side: dict = {"first_start_s": first_start}

    async def users_loaded(st: lg.State) -> dict:
        await asyncio.sleep(0.5)
        return {"rss_users": srv.rss_kb()}

    try:
        results, st, more = await suite(srv, plan, plan.limits, lg.Profile(), clock, users_loaded, turns, db_pid=pg.pid)
        side.update(more)
    finally:
        srv.stop()
        side["server_log_tail"] = srv.log_tail(15)
    async with turns.turn(PG_PARTY) if turns else contextlib.nullcontext():
        side["instances"] = await instances_compare(workdir, plan, clock, pg)
    return {"results": results, "state": st, "side": side}


def merge(name: str, parts: list[lg.PhaseResult], cpu: float | None) -> lg.PhaseResult:
    """Phases run at once against several instances, as one: requests summed over the longest wall time."""
    r = lg.PhaseResult(name, planned=sum(p.planned for p in parts))
    for p in parts:
        r.ops += p.ops
        r.items += p.items
        r.latencies_ns += p.latencies_ns
        r.statuses.update(p.statuses)
        r.errors += p.errors[:5]
        r.ok = r.ok and p.ok
        r.capped = r.capped or p.capped
        r.notes += p.notes
    r.elapsed_s = max((p.elapsed_s for p in parts), default=0.0)
    r.check = "; ".join(f"instance {k + 1}: {p.check}" for k, p in enumerate(parts))
    if cpu is not None and r.elapsed_s:
        r.extra["server_cpu"] = cpu / r.elapsed_s
    r.extra["client_cpu"] = sum(p.extra.get("client_cpu") or 0.0 for p in parts) / max(1, len(parts))
    return r


async def instances_compare(workdir: Path, plan: Plan, clock: Clock, pg: pg_server.PostgresServer) -> dict:
    """Creates, then lookups, with one instance and then with two `app.py serve` processes on one database.

    Each count gets a fresh database. With two, each instance has half the connections and half the
    requests, and looks up the users created through the other one (the database is all they share).
    Everything server-side stays on CPU 0, the load generator on CPU 1: on two cores that is the only
    split that keeps the client off the servers' core, so the ratio shows what a second instance costs
    or gains on the same CPU (its own event loop, pool and caches; row locks and the database shared),
    not how instances scale across cores.
    """
    out: dict = {}
    for count in (1, 2):
        db = await asyncio.to_thread(pg_server.create_database, pg.url)
        ports = [free_port() for _ in range(count)]
        servers: list[Server] = []
        states: list[lg.State] = []
        try:
            tenant, token = await asyncio.to_thread(provision_scimlet, db, ports[0])
            for k, port in enumerate(ports):
                srv, _ = await start_scimlet(
                    workdir, db, port, tenant, token, plan.limits["ready"], label=f"{PG_PARTY}-{count}x{k + 1}"
                )
                servers.append(srv)
            per = plan.concurrency // count
            states = [
                lg.State(s.base_url, s.token, per, seed=lg.State.seed + 1000 * count + k, server_pid=s.proc.pid)
                for k, s in enumerate(servers)
            ]

            create = await split_phase(
                lg.phase_create,
                f"create, {count} instance(s)",
                plan.n,
                clock.limit(plan.limits["instances_create"]),
                servers,
                states,
                pg,
            )
            if count == 2:  # each looks up what the other created
                a, b = states
                for attr in ("user_names", "external_ids", "ids"):
                    va, vb = getattr(a, attr), getattr(b, attr)
                    setattr(a, attr, vb)
                    setattr(b, attr, va)
            lookup = await split_phase(
                lg.phase_lookup,
                f"lookup, {count} instance(s)",
                plan.n,
                clock.limit(plan.limits["instances_lookup"]),
                servers,
                states,
                pg,
            )
            out[count] = {"create": create, "lookup": lookup}
        except Exception as e:
            log(f"{PG_PARTY} ×{count}: {e}")
            out[count] = str(e)
        finally:
            for st in states:
                st.client.close()
            for srv in servers:
                srv.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(pg_server.drop_database, db)
    return out


async def split_phase(
    phase,
    name: str,
    n: int,
    limit: float,
    servers: list[Server],
    states: list[lg.State],
    pg: pg_server.PostgresServer,
) -> lg.PhaseResult:
    """`phase` against every instance at once, `n` requests split evenly; merged into one result."""
    cpu0 = servers_cpu(servers, pg)
    parts = await asyncio.gather(*(phase(st.base_url, st.token, n // len(states), limit, state=st) for st in states))
    cpu1 = servers_cpu(servers, pg)
    r = merge(name, list(parts), cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None)
    log(f"{PG_PARTY}: {r.summary()}")
    return r


def servers_cpu(servers: list[Server], pg: pg_server.PostgresServer) -> float | None:
    """CPU seconds used so far by the scimlet processes and the whole PostgreSQL server."""
    parts = [lg.cpu_seconds(s.proc.pid) for s in servers] + [lg.tree_cpu_seconds(pg.pid)]
    return None if any(p is None for p in parts) else sum(p or 0.0 for p in parts)


def start_postgresql() -> pg_server.PostgresServer | None:
    """A throwaway PostgreSQL 15 server pinned beside the servers (CPU 0), or None when not installed."""
    bin_dir = pg_server.binaries()
    if bin_dir is None:
        log(f"no PostgreSQL phases: {pg_server.missing_reason()}")
        return None
    pg = pg_server.PostgresServer(bin_dir, options=PG_OPTIONS, prefix=pin_prefix())
    atexit.register(pg.stop)  # main_async stops it; this covers an exit that skips its finally
    try:
        pg.start()
    except BaseException:
        pg.stop()
        raise
    log(f"PostgreSQL up at {pg.url} (postmaster pid {pg.pid}, data in {pg.root})")
    return pg


async def calibrate(plan: Plan, clock: Clock) -> lg.PhaseResult | None:
    """The client's own ceiling: the same phase machinery against a canned-answer server on CPU 0."""
    port = free_port()
    proc = subprocess.Popen(
        [*pin_prefix(), sys.executable, str(BENCH / "loadgen.py"), "nullserver", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1/scim/null"
        await wait_ready(base, "x", 10, proc)
        st = lg.State(base, "x", plan.concurrency)
        r = await lg.phase_calibrate(base, "x", plan.calibrate_n, clock.limit(plan.limits["calibrate"]), state=st)
        st.client.close()
        log(r.summary())
        return r
    except Exception as e:
        log(f"calibration failed: {e}")
        return None
    finally:
        proc.terminate()
        proc.wait(5)


# --------------------------------------------------------------------------- report


def f_num(v, digits=0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def f_ms(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:,.0f}")


def by_name(results: list[lg.PhaseResult]) -> dict[str, lg.PhaseResult]:
    return {r.name: r for r in results}


def mb(kb) -> str:
    return "-" if not kb else f"{kb / 1024:.1f} MB"


def cpu_pair(r: lg.PhaseResult) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.0%}"

    return f"{pct(r.extra.get('server_cpu'))} / {pct(r.extra.get('client_cpu'))}"


def starved(r: lg.PhaseResult) -> str:
    """' ⚠' when the server used under 80% of its core over a phase of some size."""
    return " ⚠" if r.ops >= 50 and (r.extra.get("server_cpu") or 1.0) < 0.8 else ""


def verdict(ok: bool | None, size: int | None = None, target_size: int | None = None) -> str:
    """PASS/MISS; measured below the size the target names, it says so."""
    if ok is None:
        return ""
    v = "PASS" if ok else "**MISS**"
    if size is not None and target_size is not None and size < target_size:
        v += f" (at {size:,}, not {target_size:,})"
    return v


def report(plan: Plan, quick: bool, sc: dict | None, bl: dict | None, cal, meta: dict, pgr: dict | None = None) -> str:
    L: list[str] = []
    w = L.append
    w(f"# scimlet benchmark — {meta['when']}{' (quick smoke run)' if quick else ''}")
    w("")
    w(f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['mem']}; {meta['kernel']}; Python {meta['python']}")
    w(f"- pinning: {meta['pinning']}")
    w(f"- background: {meta['background']}; {meta.get('background_after', '')}")
    if sc and bl:
        w(
            "- order: the two servers are up at once and take their phases in turn (scimlet's create, then "
            "scim2-server's, then scimlet's lookup...), so each ratio compares runs seconds apart"
        )
    w(
        f"- load: N={plan.n:,} users (create, lookup, PATCH), {plan.users:,} users loaded in all, group of "
        f"{plan.members:,} members added 100 per PATCH; {plan.concurrency} keep-alive connections "
        f"(raw asyncio streams, HTTP/1.1, uvloop)"
    )
    w(
        f"- scimlet: {meta['scimlet_rev']}, `app.py serve` with its default config (including its one line per request "
        f"access log at INFO, to a file) on a fresh SQLite database at {meta['tmpfs']}"
    )
    w(
        f"- scim2-server: {meta['baseline_version']} — native ASGI app (`ASGIApplication` + `AsyncInMemoryStorage`, "
        "in memory, nothing persisted) on uvicorn (uvloop, httptools, no access log), mounted under "
        "/v1/scim/<idp> behind a bearer-token middleware (bench/baseline_app.py); no access log, so any "
        "difference in logging favours scim2-server"
    )
    if cal is not None:
        w(
            f"- client ceiling (same client against a canned-answer server on CPU 0): **{cal.ops_per_s:,.0f} req/s** "
            f"(p50 {f_ms(cal.pct_ms(50))} ms, p99 {f_ms(cal.pct_ms(99))} ms)"
        )
    if "postgresql" in meta:
        w(
            f"- scimlet on PostgreSQL: the same `app.py serve`, default config (pool_min 2, pool_max 10), on a fresh "
            f"database of a throwaway PostgreSQL {meta['postgresql']} server (initdb in {meta['tmpfs']}; "
            f"{', '.join(f'{k}={v}' for k, v in PG_OPTIONS.items())}: the durability of SQLite's WAL with "
            "synchronous=NORMAL), the PostgreSQL server **pinned to CPU 0 too**: scimlet and its database share "
            "the one core that scim2-server (in memory, one process) has to itself; its phases take their turn "
            "with the other two servers'"
        )
    w(f"- wall time: {meta['wall']:.0f} s")
    w("")

    S = by_name(sc["results"]) if sc else {}
    B = by_name(bl["results"]) if bl else {}
    w("## scimlet vs scim2-server")
    w("")
    w("| phase | scimlet ops/s | p50 ms | p99 ms | scim2-server ops/s | p99 ms | ratio |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    rows = [
        ("create", "create: POST /Users", False),
        ("lookup", "lookup: userName eq", False),
        ("patch", "PATCH user (legacy dialect)", False),
        ("paging", "paging, count=100 (pages/s)", False),
        ("user fill", "user fill: POST /Users", False),
        ("group member adds", "member adds, 100 per PATCH (**members/s**)", True),
        ("add 100 @ full group", "add 100 to the full group, 1 conn (PATCH/s)", False),
        ("group GET excl. members", "GET group ?excludedAttributes=members", False),
        ("group GET full", "GET group with all members", False),
    ]
    for key, label, items in rows:
        s, b = S.get(key), B.get(key)
        if s is None and b is None:
            continue

        def rate(r: lg.PhaseResult, items: bool = items) -> float:
            return r.items_per_s if items else r.ops_per_s

        def mark(r: lg.PhaseResult | None) -> str:
            if r is None:
                return ""
            return ("" if r.ok else " ✗") + (" ⏱" if r.capped else "") + starved(r)

        ratio = (rate(s) / rate(b)) if s and b and rate(b) else None
        w(
            f"| {label} | {f_num(rate(s)) if s else '-'}{mark(s)} | {f_ms(s.pct_ms(50)) if s else '-'} "
            f"| {f_ms(s.pct_ms(99)) if s else '-'} | {f_num(rate(b)) if b else '-'}{mark(b)} "
            f"| {f_ms(b.pct_ms(99)) if b else '-'} | {f_num(ratio, 1) + '×' if ratio else '-'} |"
        )
    w("")
    w(
        "✗ = correctness check failed (see details); ⏱ = stopped by the phase's time limit before its count; "
        "⚠ = the server used under 80% of its core in that phase (starved by other work on the machine, or "
        "waiting on I/O): compare with care."
    )
    if S.get("group member adds") and B.get("group member adds"):
        w(
            f"Group size reached: scimlet {S['group member adds'].extra.get('members_after', 0):,}, "
            f"scim2-server {B['group member adds'].extra.get('members_after', 0):,} members — the per-PATCH cost "
            "of the group phases grows with the group, so those rows compare different sizes."
        )
    w("")

    if sc:
        side = sc["side"]
        w("## scimlet against the targets")
        w("")
        w("| measure | value | target | |")
        w("|---|---:|---:|---|")
        for key, tgt in TARGETS.items():
            s, b = S.get(key), B.get(key)
            if s is None:
                continue
            ratio = s.ops_per_s / b.ops_per_s if b and b.ops_per_s else None
            ok = s.ops_per_s >= tgt and s.ok
            w(f"| {key} ops/s (N={s.ops:,}) | {f_num(s.ops_per_s)} | ≥ {tgt:,} | {verdict(ok)} |")
            if ratio is not None:
                w(f"| {key}: × scim2-server | {ratio:.1f}× | ≥ 5× | {verdict(ratio >= 5)} |")
        g = S.get("group member adds")
        if g:
            w(
                f"| member adds/s (to {g.extra.get('members_after', 0):,} members) | {f_num(g.items_per_s)} | ≥ 50,000 "
                f"| {verdict(g.items_per_s >= 50000 and g.ok, g.extra.get('members_after', 0), 100000)} |"
            )
            w(
                f"| p99 of a 100-member add, last 10% of the concurrent fill "
                f"({g.extra.get('tail_from', 0):,}+ members, 32 in flight) "
                f"| {f_ms(g.extra.get('tail_p99_ms'))} ms | | |"
            )
        p = S.get("add 100 @ full group")
        if p and p.ops:
            w(
                f"| p99 of adding 100 members to the {p.extra.get('group_members', 0):,}-member group "
                f"(sequential, {p.ops} adds; p50 {f_ms(p.pct_ms(50))}, max {f_ms(p.max_ms())}) "
                f"| {f_ms(p.pct_ms(99))} ms "
                f"| < 20 ms | {verdict(p.pct_ms(99) < 20 and p.ok, p.extra.get('group_members', 0), 100000)} |"
            )
            w(
                f"| p99 of removing those 100 (legacy remove with a value array) | "
                f"{f_ms(p.extra.get('remove_p99_ms'))} ms | | |"
            )
        e = S.get("group GET excl. members")
        if e and e.ops:
            w(
                f"| GET group ?excludedAttributes=members p50 / p99 ({e.ops:,} GETs, 32 in flight) "
                f"| {f_ms(e.pct_ms(50))} / {f_ms(e.pct_ms(99))} ms | | |"
            )
        f = S.get("group GET full")
        if f and f.ops:
            w(
                f"| GET of the full group ({f.extra.get('member_count')} members, "
                f"{(f.extra.get('body_bytes') or 0) / 1e6:.1f} MB) p50 / max "
                f"| {f_ms(f.pct_ms(50))} / {f_ms(f.max_ms())} ms | | |"
            )
        r = side.get("rss_users")
        if r:
            w(
                f"| server RSS after loading {side.get('users_loaded', 0):,} users | {mb(r['tree_kb'])} | < 150 MB "
                f"| {verdict(r['tree_kb'] < 150 * 1024, side.get('users_loaded', 0), 100000)} |"
            )
        r = side.get("rss_end")
        if r:
            w(f"| server RSS at the end (after the group phases and full GETs) | {mb(r['tree_kb'])} | | |")
        if "restart_s" in side:
            restart_users = side.get("restart_total_users")
            restart_users = restart_users if isinstance(restart_users, int) else 0
            w(
                f"| start-up to first 200 on the existing {side.get('restart_total_users')}-user database "
                f"({(side.get('db_bytes') or 0) / 1e6:.0f} MB) | {side['restart_s']:.3f} s | < 1 s "
                f"| {verdict(side['restart_s'] < 1, restart_users, 100000)} |"
            )
            w(
                f"| RSS right after that start-up / first lookup after it | {mb(side['restart_rss']['tree_kb'])} / "
                f"{f_ms(side.get('restart_first_lookup_ms'))} ms | | |"
            )
        sync = side.get("sync", {})
        for suffix, how in (("", f"{plan.concurrency} conns"), (" 1 conn", "1 conn")):
            fu, no = sync.get("FULL" + suffix), sync.get("NORMAL" + suffix)
            if isinstance(fu, lg.PhaseResult) and isinstance(no, lg.PhaseResult):
                for mode, r in (("FULL", fu), ("NORMAL", no)):
                    w(
                        f"| creates/s, synchronous={mode}, {how} (fresh DB, {r.ops:,} creates; p50 "
                        f"{f_ms(r.pct_ms(50))} ms, p99 {f_ms(r.pct_ms(99))} ms) | {f_num(r.ops_per_s)} | | |"
                    )
                if fu.ops_per_s:
                    w(f"| NORMAL / FULL, {how} | {no.ops_per_s / fu.ops_per_s:.2f}× | | |")
        for mode, v in sync.items():
            if not isinstance(v, lg.PhaseResult):
                w(f"| synchronous={mode} | failed: {str(v)[:200]} | | |")
        bulk = side.get("bulk") or {}
        if bulk.get("rounds"):
            rounds = bulk["rounds"]
            single = statistics.median(r["single_cpu_s"] for r in rounds)
            batched = statistics.median(r["bulk_cpu_s"] for r in rounds)
            made = min(r["bulk_created"] for r in rounds)
            wall = statistics.median(r["bulk_wall_s"] for r in rounds)
            ok = batched < single and made == bulk["n"]
            w(
                f"| server CPU for {bulk['n']:,} creates: single requests / one Bulk request (median of "
                f"{len(rounds)} alternating rounds; Bulk wall {wall:.2f} s, {made:,} of {bulk['n']:,} created) "
                f"| {single:.2f} s / {batched:.2f} s = {single / batched if batched else 0:.2f}× "
                f"| Bulk < single | {verdict(ok)} |"
            )
        elif bulk.get("error"):
            w(f"| Bulk against single creates | failed: {bulk['error'][:200]} | | |")
        events = side.get("events") or {}
        if events.get("rounds"):
            rounds = events["rounds"]
            without = statistics.median(r["without_per_s"] for r in rounds)
            with_dead = statistics.median(r["with_per_s"] for r in rounds)
            made = min(min(r["with_created"], r["without_created"]) for r in rounds)
            ratio = with_dead / without if without else 0
            w(
                f"| creates/s with an event subscription whose receiver is down / without one (median of "
                f"{len(rounds)} alternating rounds of {events['n']:,} creates on one server; {events['pending']:,} "
                f"events waiting at the end) | {f_num(with_dead)} / {f_num(without)} = {ratio:.2f}× "
                f"| ≥ 0.90× | {verdict(ratio >= 0.9 and made == events['n'])} |"
            )
        elif events.get("error"):
            w(f"| creates with a dead receiver's subscription | failed: {events['error'][:200]} | | |")
        w("")
        if quick:
            w(
                "Quick run: the targets are stated for N=20,000 and 100,000 users; these numbers only show "
                "the harness works."
            )
            w("")

    if pgr:
        report_postgresql(w, plan, quick, pgr, S, B)

    for label, data in (("scimlet", sc), ("scim2-server", bl), ("scimlet on PostgreSQL", pgr)):
        if not data:
            continue
        w(f"## {label}: every phase")
        w("")
        w("| phase | requests | s | ops/s | p50 | p90 | p99 | max ms | CPU server / client | status codes | check |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        rs = list(data["results"])
        if label == "scimlet":
            rs += [v for v in data["side"].get("sync", {}).values() if isinstance(v, lg.PhaseResult)]
        if label == "scimlet on PostgreSQL":
            rs += [r for v in data["side"].get("instances", {}).values() if isinstance(v, dict) for r in v.values()]
        for r in rs:
            chk = (
                ("" if r.ok else "**FAIL** ")
                + r.check
                + (" (time limit)" if r.capped and "time limit" not in r.check else "")
            )
            chk += "".join(f"; {note}" for note in r.notes)
            w(
                f"| {r.name} | {r.ops:,} | {r.elapsed_s:.2f} | {f_num(r.ops_per_s)} | {f_ms(r.pct_ms(50))} "
                f"| {f_ms(r.pct_ms(90))} | {f_ms(r.pct_ms(99))} | {f_ms(r.max_ms())} | {cpu_pair(r)} "
                f"| {r.status_str()} | {chk} |"
            )
        w("")
        errs = [(r.name, e) for r in rs for e in r.errors]
        if errs:
            w(f"Errors ({label}, first of each phase):")
            w("")
            seen = set()
            for name, e in errs:
                if name in seen:
                    continue
                seen.add(name)
                w(f"- {name}: `{e[:500]}`")
            w("")

    w("## Method and adjustments")
    w("")
    w(
        "- Request bodies are Entra's (bench/loadgen.py: `user_body`, `patch_body`, `members_body`): the create "
        "body with both user schema URNs, `meta`, `emails`, `roles`; the legacy PATCH (`Replace` name.givenName, "
        'name.familyName, active `"False"`); member adds `{"op":"Add","path":"members","value":'
        '[{"value":id}×100]}`; filters form-encoded (`filter=userName+eq+%22...%22`).'
    )
    w(
        "- scim2-server adjustments: its group is created without Microsoft's second schema URN "
        "(`http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group`), which it refuses with 400 "
        "`Unknown extension schemas`; its user PATCH answers 204 with no body (Entra wants 200 with the user), "
        "counted as success; it refuses Entra's legacy member remove with a value array (400 \"a remove "
        'operation carries no value"), so removes are measured on scimlet only. It does not check that '
        "members exist. Everything else is byte-identical."
    )
    w(
        "- Latency: perf_counter_ns from writing the request to reading the whole response, on a connection opened "
        "before the phase; ops/s = requests answered / phase wall time. Paging fetches pages by startIndex, 32 in "
        "flight. 'add 100 @ full group': users created after the fill are added 100 per PATCH to the full "
        "group, one request at a time on one connection, as Entra sends one group's changes (scimlet: then "
        "removed again with the legacy remove, timed apart)."
    )
    w(
        "- CPU server / client: CPU time the server process and the load generator used during the phase, over "
        "its wall time (100% = one core). A server well under 100% while the client is too was not the "
        "bottleneck of its own phase (waiting on fsync, or starved by other work on the machine); a client "
        "near 100% would mean the numbers are the client's."
    )
    w(
        "- RSS: VmRSS of the server process and its children from /proc, read after the user fill with no request "
        "in flight."
    )
    w(
        "- Start-up: from spawning `app.py serve` on the existing database to the first 200 of "
        "GET {tenant}/ServiceProviderConfig with the bearer token (polled every 5 ms)."
    )
    w(
        "- synchronous FULL vs NORMAL: scimlet's create phase, each on a fresh database, with "
        "SCIMLET_DATABASE_SYNCHRONOUS set, first with all connections (scimlet's group commit lets concurrent "
        "writes share a transaction, and so an fsync), then one request at a time (one commit per create); "
        "the main run uses scimlet's default."
    )
    if pgr:
        w(
            "- scimlet on PostgreSQL: the same client, bodies and checks; CPU server counts scimlet and every "
            "PostgreSQL process (the postmaster's tree from /proc), as both share CPU 0. The PostgreSQL server "
            "is a throwaway one (tests/pg_server.py), stopped and its directory removed at the end of the run."
        )
    w("")
    return "\n".join(L)


def report_postgresql(w, plan: Plan, quick: bool, pgr: dict, S: dict, B: dict) -> None:
    """The PostgreSQL sections: each phase against scim2-server (and SQLite), then one vs two instances."""
    P = by_name(pgr["results"])
    w("## scimlet on PostgreSQL vs scim2-server")
    w("")
    w(
        "| phase | scimlet on PostgreSQL ops/s | p50 ms | p99 ms | CPU server | scim2-server ops/s | × scim2-server "
        "| scimlet on SQLite ops/s | target | |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    rows = [
        ("create", "create: POST /Users", False, PG_RATIO_TARGET),
        ("lookup", "lookup: userName eq", False, PG_RATIO_TARGET),
        ("patch", "PATCH user (legacy dialect)", False, PG_RATIO_TARGET),
        ("paging", "paging, count=100 (pages/s)", False, None),
        ("user fill", "user fill: POST /Users", False, None),
        ("group member adds", "member adds, 100 per PATCH (**members/s**)", True, None),
        ("add 100 @ full group", "add 100 to the full group, 1 conn (PATCH/s)", False, None),
        ("group GET excl. members", "GET group ?excludedAttributes=members", False, None),
        ("group GET full", "GET group with all members", False, None),
    ]
    for key, label, items, ratio_target in rows:
        p, b, s = P.get(key), B.get(key), S.get(key)
        if p is None:
            continue

        def rate(r: lg.PhaseResult, items: bool = items) -> float:
            return r.items_per_s if items else r.ops_per_s

        ratio = rate(p) / rate(b) if b and rate(b) else None
        target, ok = "", None
        if ratio_target is not None:
            target = f"≥ {ratio_target:.0f}× scim2-server"
            ok = ratio is not None and ratio >= ratio_target and p.ok
        elif key == "group member adds":
            target = f"≥ {PG_MEMBERS_TARGET:,} members/s"
            ok = p.items_per_s >= PG_MEMBERS_TARGET and p.ok
        cpu = p.extra.get("server_cpu")
        w(
            f"| {label} | {f_num(rate(p))}{' ✗' if not p.ok else ''}{' ⏱' if p.capped else ''}{starved(p)} "
            f"| {f_ms(p.pct_ms(50))} | {f_ms(p.pct_ms(99))} | {'-' if cpu is None else f'{cpu:.0%}'} "
            f"| {f_num(rate(b)) if b else '-'} | {f_num(ratio, 1) + '×' if ratio else '-'} "
            f"| {f_num(rate(s)) if s else '-'} | {target} | {verdict(ok)} |"
        )
    w("")
    g = P.get("group member adds")
    w(
        "CPU server = scimlet plus every PostgreSQL process, over the phase's wall time (100% = the one core they "
        "share). ✗ = correctness check failed; ⏱ = stopped by the time limit before its count; ⚠ = under 80% of "
        "that core used (starved by other work on the machine, or waiting): compare with care."
        + (f" Group size reached: {g.extra.get('members_after', 0):,} members." if g else "")
    )
    r = pgr["side"].get("rss_users")
    if r:
        w(
            f"scimlet's RSS after loading {pgr['side'].get('users_loaded', 0):,} users: {mb(r['tree_kb'])} "
            "(the scimlet process; PostgreSQL's own memory not counted)."
        )
    w("")
    inst = pgr["side"].get("instances") or {}
    if not inst:
        return
    w("## One instance vs two on one PostgreSQL database")
    w("")
    w(
        f"Each on a fresh database: {plan.n:,} creates, then {plan.n:,} lookups by userName, {plan.concurrency} "
        f"connections in all. Two instances: two `app.py serve` processes on different ports, each sent half the "
        f"requests on {plan.concurrency // 2} connections, each looking up the users created through the other. "
        "**Both instances and PostgreSQL run on CPU 0, the load generator on CPU 1**: this machine has two cores, and "
        "giving the second instance CPU 1 would put it on the load generator's core. So this measures what a "
        "second instance on the same CPU costs or gains (a second event loop and pool; rows, locks and the "
        "database shared), not how instances scale across cores: a ratio near 1× means running two costs "
        "nothing; scaling out needs a core per instance, which this machine cannot give."
    )
    w("")
    w("| phase | 1 instance req/s | p99 ms | CPU server | 2 instances req/s | p99 ms | CPU server | 2 / 1 |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    one, two = inst.get(1), inst.get(2)
    for key in ("create", "lookup"):
        a = one.get(key) if isinstance(one, dict) else None
        b = two.get(key) if isinstance(two, dict) else None

        def cells(r: lg.PhaseResult | None) -> str:
            if r is None:
                return "- | - | -"
            cpu = r.extra.get("server_cpu")
            return (
                f"{f_num(r.ops_per_s)}{' ✗' if not r.ok else ''}{' ⏱' if r.capped else ''}{starved(r)} "
                f"| {f_ms(r.pct_ms(99))} "
                f"| {'-' if cpu is None else f'{cpu:.0%}'}"
            )

        ratio = b.ops_per_s / a.ops_per_s if a and b and a.ops_per_s else None
        w(f"| {key} | {cells(a)} | {cells(b)} | {f_num(ratio, 2) + '×' if ratio else '-'} |")
    for count, v in inst.items():
        if not isinstance(v, dict):
            w(f"\n{count} instance(s) failed: `{str(v)[:300]}`")
    w("")
    if quick:
        w("Quick run: these numbers only show the harness works.")
        w("")


def machine_meta() -> dict:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB RAM"
    rev = "unknown revision"
    with contextlib.suppress(OSError):  # read .git without running git
        git = ROOT / ".git"
        if git.is_file():  # a worktree: HEAD in its own git dir, the branches in the main one's
            git = (ROOT / git.read_text().removeprefix("gitdir:").strip()).resolve()
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").exists() else git
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            p = common / ref
            rev = f"{ref.rsplit('/', 1)[-1]}@{p.read_text().strip()[:10]}" if p.exists() else ref
        else:
            rev = head[:10]
    bv = "scim2-server (version unknown)"
    with contextlib.suppress(StopIteration):
        d = next(BASELINE_VENV.glob("lib/python*/site-packages/scim2_server-*.dist-info"))
        bv = "scim2-server " + d.name.removesuffix(".dist-info").split("-")[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({os.path.realpath(sys.executable)})",
        "scimlet_rev": rev,
        "baseline_version": bv,
    }


def pg_version(pg: pg_server.PostgresServer) -> str:
    with contextlib.suppress(Exception):
        return pg_server.psql(pg.url, "SHOW server_version", pg.bin_dir).strip()
    return "15"


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (others' work: nothing of ours runs while it samples)."""

    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return sum(f), idle

    with contextlib.suppress(OSError, ValueError, IndexError):
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
        return 1.0 - (i1 - i0) / max(1, t1 - t0)
    return float("nan")


def background_note(when: str = "just before the run") -> str:
    busy = cpu_busy()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = f"{busy:.0%} of the CPUs busy with other work {when} (load average {load:.2f})"
    if busy > 0.10:
        note += " — **the machine was not quiet: treat the numbers as noisy**"
    return note


def fs_type(path: Path) -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout.strip()
        return f"{path} ({out})"
    return str(path)


def summary_json(plan, sc, bl, cal, meta, pgr=None) -> dict:
    def rj(r: lg.PhaseResult) -> dict:
        return {
            "name": r.name,
            "ops": r.ops,
            "elapsed_s": r.elapsed_s,
            "ops_per_s": r.ops_per_s,
            "items": r.items,
            "items_per_s": r.items_per_s,
            "p50_ms": r.pct_ms(50),
            "p90_ms": r.pct_ms(90),
            "p99_ms": r.pct_ms(99),
            "max_ms": r.max_ms(),
            "statuses": {str(k): v for k, v in r.statuses.items()},
            "ok": r.ok,
            "capped": r.capped,
            "check": r.check,
            "errors": r.errors[:5],
            "extra": {k: v for k, v in r.extra.items()},
        }

    def side(d):
        s = dict(d["side"])
        s.pop("server_log_tail", None)
        if "sync" in s:
            s["sync"] = {k: (rj(v) if isinstance(v, lg.PhaseResult) else v) for k, v in s["sync"].items()}
        if "instances" in s:
            s["instances"] = {
                str(k): ({n: rj(r) for n, r in v.items()} if isinstance(v, dict) else v)
                for k, v in s["instances"].items()
            }
        return s

    return {
        "meta": meta,
        "plan": plan.__dict__,
        "client_ceiling": rj(cal) if cal else None,
        "scimlet": {"phases": [rj(r) for r in sc["results"]], "side": side(sc)} if sc else None,
        "scim2_server": {"phases": [rj(r) for r in bl["results"]], "side": side(bl)} if bl else None,
        "scimlet_postgresql": {"phases": [rj(r) for r in pgr["results"]], "side": side(pgr)} if pgr else None,
    }


async def main_async(args) -> int:
    global PINNED
    plan = QUICK if args.quick else FULL
    if args.n:
        plan = replace(plan, n=args.n, sync_n=args.n)
    if args.users:
        plan = replace(plan, users=args.users)
    if args.members:
        plan = replace(plan, members=args.members)
    plan.users = max(plan.users, plan.n, plan.members)
    meta_bg = background_note()
    PINNED = pin_self()
    clock = Clock(WALL_BUDGET_S if not args.quick else QUICK_BUDGET_S)
    meta = machine_meta()
    meta["background"] = meta_bg
    started = datetime.datetime.now()
    meta["when"] = started.strftime("%Y-%m-%d %H:%M")
    meta["pinning"] = (
        "servers `taskset -c 0`, load generator on CPU 1 (sched_setaffinity)"
        if PINNED
        else "none (taskset missing or fewer than 2 CPUs available): numbers are not comparable"
    )
    workdir = Path(tempfile.mkdtemp(prefix="scimlet-bench-"))
    meta["tmpfs"] = fs_type(workdir)
    failures: list[str] = []
    sc = bl = cal = pgr = None
    pg: pg_server.PostgresServer | None = None
    # SIGTERM ends the run as Ctrl-C does: through every finally, so the servers stop and their data goes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.baseline and not args.skip_baseline:
            await asyncio.to_thread(ensure_baseline_venv)
            meta.update(baseline_version=machine_meta()["baseline_version"])
        if args.postgresql:
            pg = await asyncio.to_thread(start_postgresql)
            if pg is not None:
                meta["postgresql"] = pg_version(pg)
        cal = await calibrate(plan, clock)
        parties = (
            (["scimlet"] if args.scimlet else [])
            + (["scim2-server"] if args.baseline else [])
            + ([PG_PARTY] if pg is not None else [])
        )
        turns = Turns(parties) if len(parties) > 1 else None

        async def run(name: str, bench: Awaitable[dict]) -> dict:
            try:
                return await bench
            finally:  # however it ended, the other server's turns no longer wait for this one
                if turns:
                    await turns.leave(name)

        runs = {}
        if args.scimlet:
            runs["scimlet"] = run("scimlet", bench_scimlet(workdir, plan, clock, turns))
        if args.baseline:
            runs["scim2-server"] = run("scim2-server", bench_baseline(workdir, plan, clock, turns))
        if pg is not None:
            runs[PG_PARTY] = run(PG_PARTY, bench_postgresql(workdir, plan, clock, pg, turns))
        outcomes = dict(zip(runs, await asyncio.gather(*runs.values(), return_exceptions=True), strict=True))
        for name, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                failures.append(f"{name}: {outcome}")
                log(f"{name} run failed: {outcome}")
        sc, bl, pgr = (
            None if isinstance(o, BaseException) else o
            for o in (outcomes.get("scimlet"), outcomes.get("scim2-server"), outcomes.get(PG_PARTY))
        )
    finally:
        if pg is not None:
            pg.stop()
            log("PostgreSQL stopped, its directory removed")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    meta["wall"] = clock.elapsed
    meta["background_after"] = background_note("just after the run")
    text = report(plan, args.quick, sc, bl, cal, meta, pgr)
    if failures:
        text += "\n## Runs that failed\n\n" + "\n".join(f"```\n{f}\n```" for f in failures) + "\n"
    outdir = Path(args.results_dir) if args.results_dir else RESULTS
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
    md = outdir / f"{stamp}.md"
    md.write_text(text)
    (outdir / f"{stamp}.json").write_text(json.dumps(summary_json(plan, sc, bl, cal, meta, pgr), indent=1, default=str))
    print(text)
    log(f"wrote {md}")
    bad = [r for d in (sc, bl, pgr) if d for r in d["results"] if not r.ok]
    if failures or bad:
        log("FAILED: " + "; ".join(failures + [f"{r.name}: {r.errors[:1]}" for r in bad]))
        return 1
    return 0


async def events_only(plan: Plan, with_postgresql: bool) -> int:
    """`bench/run.py --events-only`: the dead receiver's comparison alone, on SQLite and on PostgreSQL."""
    global PINNED
    PINNED = pin_self()
    workdir = Path(tempfile.mkdtemp(prefix="scimlet-bench-events-"))
    pg = await asyncio.to_thread(start_postgresql) if with_postgresql else None
    try:
        backends: list[tuple[str, Path | str | None]] = [("SQLite", None)]
        if pg is not None:
            backends.append(("PostgreSQL", await asyncio.to_thread(pg_server.create_database, pg.url)))
        for name, db in backends:
            rounds = (await events_compare(workdir, plan, db))["rounds"]
            paired = statistics.median(r["with_per_s"] / r["without_per_s"] for r in rounds)
            without = statistics.median(r["without_per_s"] for r in rounds)
            with_dead = statistics.median(r["with_per_s"] for r in rounds)
            print(
                f"{name}: creates/s with a dead receiver's subscription / without, {len(rounds)} ABBA rounds of "
                f"{plan.events_n:,}: {with_dead:,.0f} / {without:,.0f} (median of the paired ratios {paired:.2f}×)"
            )
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: N=500, 2,000 members, < 1 minute")
    ap.add_argument("-n", type=int, help="users to create / look up / patch (default 20,000)")
    ap.add_argument("--users", type=int, help="users loaded in all before the group phase (default 100,000)")
    ap.add_argument("--members", type=int, help="members to put in the group (default 100,000)")
    ap.add_argument("--skip-baseline", dest="baseline", action="store_false", help="scimlet only")
    ap.add_argument("--baseline-only", dest="scimlet", action="store_false", help="scim2-server only")
    ap.add_argument(
        "--skip-postgresql", dest="postgresql", action="store_false", help="no phases with scimlet on PostgreSQL"
    )
    ap.add_argument("--results-dir", help="where to write the report (default bench/results/)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, server logs)")
    ap.add_argument(
        "--events-only",
        action="store_true",
        help="only creates with an event subscription whose receiver is down against none, on each backend",
    )
    args = ap.parse_args()
    if args.events_only:
        plan = replace(FULL, events_n=args.n or FULL.events_n, events_rounds=8)
        return asyncio.run(events_only(plan, args.postgresql))
    args.skip_baseline = not args.baseline
    lg.new_event_loop_policy()
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every finally has run by now
        log("interrupted: servers stopped, temporary data removed, no report written")
        return 130


if __name__ == "__main__":
    sys.exit(main())
