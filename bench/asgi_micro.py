"""The SCIM hot path in process: create, get, PATCH and search called straight into the ASGI app.

    taskset -c 0 .venv/bin/python bench/asgi_micro.py              # 2,000 of each, 3 runs
    taskset -c 0 .venv/bin/python bench/asgi_micro.py -n 5000 --runs 5
    taskset -c 0 .venv/bin/python bench/asgi_micro.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

No socket, no HTTP parser, no client: each request is one `await app(scope, receive, send)` on a
fresh SQLite database in a temporary directory, so the figure is the server's own CPU and I/O per
request (routing, authentication, parsing, scim/, storage, rendering, the access log at INFO to
/dev/null, metrics and the provisioning record), the part a change to web/ moves. Requests go one
after another; the median of the runs is printed per operation, in µs per request. With
--database-url (a PostgreSQL server, e.g. from `make postgres`) each run is on a new database of that
server, dropped after it; the figure then includes the round trips to PostgreSQL. With --events the
IdP has an event subscription whose receiver is down: every write also puts its events in the
outbox, and the delivery task retries in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from settings import load_settings  # noqa: E402
from web.log_setup import configure_logging  # noqa: E402

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
App = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


async def call(
    app: App, method: str, path: str, token: bytes, body: bytes = b"", query: bytes = b""
) -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would hand it over: (status, body)."""
    headers = [(b"host", b"scim.bench"), (b"authorization", b"Bearer " + token)]
    if body:
        headers += [(b"content-type", b"application/scim+json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    answer: dict[str, object] = {}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def fresh_database(server_url: str | None) -> AsyncIterator[dict[str, str]]:
    """The settings of a new empty database: a SQLite file, or a database on the PostgreSQL server."""
    if server_url is None:
        with tempfile.TemporaryDirectory(prefix="scimlet-micro-") as tmp:
            yield {"SCIMLET_DATABASE_PATH": str(Path(tmp) / "scimlet.db")}
        return
    import asyncpg

    name = f"scimlet_micro_{os.getpid()}_{time.monotonic_ns()}"
    yield {"SCIMLET_DATABASE_URL": urlsplit(server_url)._replace(path=f"/{name}").geturl()}
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def run(n: int, server_url: str | None, events: bool = False) -> dict[str, float]:
    """µs per request of each operation over n requests, on a fresh database."""
    async with fresh_database(server_url) as database:
        settings = load_settings(
            environ={**database, "SCIMLET_SERVER_BASE_URL": "http://scim.bench", "SCIMLET_EVENTS_SECRET_KEY": "micro"}
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            store = app.state.store
            key, secret = await store.create_api_key("bench", "", True, True)
            idp = await store.create_idp("bench", "bench", key.id)
            token = secret.encode()
            if events:  # a receiver on a port nothing listens on: every attempt is refused
                await app.state.events.subscriptions.subscribe(idp.id, url="http://127.0.0.1:9/events")
            users = f"/v1/scim/{idp.id}/Users"
            ids: list[str] = []
            timings: dict[str, float] = {}

            async def timed(name: str, requests: Callable[[int], Awaitable[tuple[int, bytes]]], expected: int) -> None:
                started = time.perf_counter()
                for i in range(n):
                    status, answer = await requests(i)
                    if status != expected:
                        raise SystemExit(f"{name} #{i}: {status} {answer[:300]!r}")
                timings[name] = (time.perf_counter() - started) / n * 1e6

            async def create(i: int) -> tuple[int, bytes]:
                doc = {
                    "schemas": [USER_SCHEMA],
                    "userName": f"user{i}@bench.test",
                    "name": {"givenName": "User", "familyName": str(i)},
                    "displayName": f"User {i}",
                    "active": True,
                }
                status, answer = await call(app, "POST", users, token, orjson.dumps(doc))
                if status == 201:
                    ids.append(orjson.loads(answer)["id"])
                return status, answer

            patch = orjson.dumps(
                {
                    "schemas": [PATCH_SCHEMA],
                    "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}],
                }
            )
            await timed("create", create, 201)
            await timed("get", lambda i: call(app, "GET", f"{users}/{ids[i]}", token), 200)
            await timed("patch", lambda i: call(app, "PATCH", f"{users}/{ids[i]}", token, patch), 200)
            await timed(
                "search",
                lambda i: call(app, "GET", users, token, query=f'filter=userName eq "user{i}@bench.test"'.encode()),
                200,
            )
            return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="requests per operation and run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh database (default 3)")
    parser.add_argument("--database-url", help="a PostgreSQL server's URL: run on new databases there, not SQLite")
    parser.add_argument("--events", action="store_true", help="with an event subscription whose receiver is down")
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        configure_logging("info", "text")  # the default access log, one line per request, to /dev/null
        results = [asyncio.run(run(args.n, args.database_url, args.events)) for _ in range(args.runs)]
    for name in results[0]:
        runs = [result[name] for result in results]
        shown = " ".join(f"{value:.0f}" for value in runs)
        print(f"{name:7} {statistics.median(runs):6.0f} µs/op (median of {len(runs)}: {shown})")


if __name__ == "__main__":
    main()
