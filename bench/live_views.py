"""What open live log pages cost SCIM requests (issue 17): 1,000 SCIM requests a second against a fresh
scimlet, each one a provisioning log record, first with no live view open, then with three (the console's
server-sent events, read as a browser would), alternating for a few rounds; the latency of the SCIM
requests and the server's CPU per request in each case.

    .venv/bin/python bench/live_views.py [--rate 1000] [--seconds 8] [--rounds 3]

The server runs on CPU 0 (`taskset -c 0`) and this script on CPU 1 where both are free. The views run
in a process of their own (`--views-of URL`), as browsers would: in this one, reading 3,000 events a
second delayed the timing of the SCIM answers and put the views' cost on the client's side of the
figures. Prints a table and writes it to bench/results/<time>-live-views.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
import loadgen as lg  # noqa: E402 - bench/ on the path first
import run as bench_run  # noqa: E402

PASSWORD = "live-views-bench-password-0123456789"


async def signed_in(base: str) -> httpx.AsyncClient:
    """A console session, as a browser holds it."""
    client = httpx.AsyncClient(base_url=base, timeout=30)
    page = await client.get("/admin/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    answer = await client.post(
        "/admin/login", data={"csrf_token": csrf.group(1), "password": PASSWORD, "next": "/admin/"}
    )
    assert answer.status_code == 303, answer.text[:500]
    return client


async def live_view(client: httpx.AsyncClient, stop: asyncio.Event, received: list[int]) -> None:
    """A log page as a browser keeps it open: from its newest record on, every new one."""
    page = await client.get("/admin/logs")
    newest = re.search(r'data-after="(\d+)"', page.text)
    assert newest, page.text[:300]
    marker = b"\nevent: record\n"
    async with client.stream("GET", f"/admin/logs/live?after={newest.group(1)}") as answer:
        # Counted in the raw bytes, not line by line: httpx's line splitting cost this process (which
        # also times the SCIM requests) enough CPU to slow the views and inflate the latencies it times.
        carried = b""
        async for chunk in answer.aiter_raw():
            text = carried + chunk
            received[0] += text.count(marker)
            carried = text[-(len(marker) - 1) :]
            if stop.is_set():
                return


async def load(scim: lg.Client, rate: int, seconds: float) -> list[float]:
    """`rate` lookups a second for `seconds` (open loop: each starts on time whatever the others
    do, on the first idle one of the client's keep-alive connections), each timed (ms). The raw
    HTTP/1.1 client of bench/loadgen.py: httpx cost this script's CPU about 0.6 ms a request, and
    could not send 1,000 a second."""
    latencies: list[float] = []
    interval = 1 / rate
    idle: asyncio.Queue[lg.Conn] = asyncio.Queue()
    for conn in scim.conns:
        idle.put_nowait(conn)
    start = time.perf_counter()

    async def one(k: int) -> None:
        conn = await idle.get()
        try:
            began = time.perf_counter()
            lookup = quote(f'userName eq "nobody{k}@contoso.com"')
            status, _ = await conn.request("GET", f"{scim.prefix}/Users?filter={lookup}")
            assert status == 200, status
            latencies.append((time.perf_counter() - began) * 1000)
        finally:
            idle.put_nowait(conn)

    tasks = []
    k = 0
    while time.perf_counter() - start < seconds:
        tasks.append(asyncio.create_task(one(k)))
        k += 1
        await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
    await asyncio.gather(*tasks)
    return latencies


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="scimlet-live-views-"))
    db = workdir / "live.db"
    port = bench_run.free_port()
    tenant, token = bench_run.provision_scimlet(db, port)
    srv, _ = await bench_run.start_scimlet(
        workdir, db, port, tenant, token, 30, {"SCIMLET_ADMIN_PASSWORD": PASSWORD}, label="scimlet-live-views"
    )
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        scim = lg.Client(srv.base_url, token, 64)
        try:
            await scim.reset()
            await load(scim, args.rate, 1.0)  # warm up
            for _ in range(args.rounds):
                for views in (0, 3):
                    viewers = await open_views(base, views)
                    await asyncio.sleep(1.5)
                    cpu0 = lg.cpu_seconds(srv.proc.pid)
                    latencies = await load(scim, args.rate, args.seconds)
                    cpu1 = lg.cpu_seconds(srv.proc.pid)
                    await asyncio.sleep(3.0)  # the last records reach the views (written every 0.5 s, read every 1 s)
                    received = [await close_views(viewers)]
                    cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else float("nan")
                    rows.append(
                        (
                            views,
                            statistics.median(latencies),
                            statistics.fmean(latencies),
                            sorted(latencies)[int(len(latencies) * 0.99)],
                            cpu / len(latencies) * 1e6,
                            received[0],
                            len(latencies),
                        )
                    )
                    bench_run.log(
                        f"views {views}: p50 {rows[-1][1]:.2f} ms, mean {rows[-1][2]:.2f} ms, "
                        f"p99 {rows[-1][3]:.2f} ms, {rows[-1][4]:.0f} µs CPU/request, {received[0]} records streamed"
                    )
                    await scim.reset()  # connections idle during the pause are closed by the server
        finally:
            scim.close()
    finally:
        srv.stop()
    none = [r for r in rows if r[0] == 0]
    three = [r for r in rows if r[0] == 3]
    p50 = statistics.median(r[1] for r in three) / statistics.median(r[1] for r in none)
    mean = statistics.median(r[2] for r in three) / statistics.median(r[2] for r in none)
    p99 = statistics.median(r[3] for r in three) / statistics.median(r[3] for r in none)
    cpu = statistics.median(r[4] for r in three) / statistics.median(r[4] for r in none)
    lines = [
        f"# Live log views against SCIM requests ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{args.rate} lookups/s for {args.seconds} s per round, {args.rounds} rounds alternating, "
        "each a provisioning log record.",
        "",
        "| live views | p50 ms | mean ms | p99 ms | server CPU µs / request | records streamed | requests |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:,} | {r[6]:,} |" for r in rows],
        "",
        f"Three live views against none (medians): p50 {p50:.2f}×, mean {mean:.2f}×, p99 {p99:.2f}×, "
        f"server CPU per request {cpu:.2f}× (target: ≤ 1.10×).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    out = BENCH / "results" / f"{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-live-views.md"
    out.write_text(report)
    return 0


async def open_views(base: str, views: int) -> asyncio.subprocess.Process | None:
    """`views` live log views in a process of their own, open once it says "ready"."""
    if not views:
        return None
    viewers = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--views-of", base, "--views", str(views),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert viewers.stdout is not None
    assert await viewers.stdout.readline() == b"ready\n"
    return viewers


async def close_views(viewers: asyncio.subprocess.Process | None) -> int:
    """Stops the views; the records they received, all told."""
    if viewers is None:
        return 0
    out, _ = await viewers.communicate(b"stop\n")
    return int(out)


async def views_main(base: str, views: int) -> int:
    """The views' process: opens them, says "ready", and on a line from stdin prints what they received."""
    stop = asyncio.Event()
    received = [0]
    consoles = [await signed_in(base) for _ in range(views)]
    readers = [asyncio.create_task(live_view(c, stop, received)) for c in consoles]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stop.set()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for console in consoles:
        await console.aclose()
    print(received[0], flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--views-of", metavar="URL", help="run only the live views, against this server")
    parser.add_argument("--views", type=int, default=3)
    args = parser.parse_args()
    if args.views_of:
        return asyncio.run(views_main(args.views_of, args.views))
    bench_run.pin_self()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
