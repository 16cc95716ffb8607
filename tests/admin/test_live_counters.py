"""The Overview's counters as server-sent events from a real server: the first event holds every
IdP's counters of the last 24 hours, and a SCIM request made meanwhile comes in a later one."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import httpx

from tests.live_server import running, server_at

PASSWORD = "live-counters-password-0123456789"


def sign_in(console: httpx.Client) -> None:
    match = re.search(r'name="csrf_token" value="([^"]+)"', console.get("/admin/login").text)
    assert match, "no CSRF field on the sign-in page"
    assert console.post("/admin/login", data={"csrf_token": match.group(1), "password": PASSWORD}).status_code == 303


def test_the_overview_counters_stream_keeps_up(tmp_path: Path) -> None:
    server = server_at(tmp_path / "counters.db", tmp_path / "serve.out", SCIMLET_ADMIN_PASSWORD=PASSWORD)
    with running(server), httpx.Client(base_url=server.base, timeout=20) as console:
        sign_in(console)
        assert 'data-counters="/admin/counters/live"' in console.get("/admin/").text
        scim = httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10)
        with console.stream("GET", "/admin/counters/live") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen: list[int] = []
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                mine = next(c for c in json.loads(line[6:]) if c["idp_id"] == server.idp_id)
                seen.append(mine["operations"])
                if len(seen) == 1:
                    for n in range(3):
                        assert scim.get(f"/Users/missing-{n}").status_code == 404
                elif mine["operations"] >= seen[0] + 3:
                    assert mine["failures"] >= 3
                    break
        scim.close()
    assert len(seen) >= 2


def test_live_views_are_limited_and_a_closed_one_frees_its_place(tmp_path: Path) -> None:
    server = server_at(tmp_path / "limit.db", tmp_path / "serve.out", SCIMLET_ADMIN_PASSWORD=PASSWORD)
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    with running(server), httpx.Client(base_url=server.base, timeout=20, limits=limits) as console:
        sign_in(console)
        with contextlib.ExitStack() as open_views:
            views = [
                open_views.enter_context(console.stream("GET", "/admin/logs/live" if n % 2 else "/admin/counters/live"))
                for n in range(16)
            ]
            assert all(v.status_code == 200 for v in views)
            for path in ("/admin/logs/live", "/admin/counters/live"):
                refused = console.get(path)
                assert refused.status_code == 503 and "At most 16 live views" in refused.text
                assert refused.headers["retry-after"] == "5"
            views[0].close()

            def freed() -> bool:
                with console.stream("GET", "/admin/counters/live") as again:
                    return again.status_code == 200

            deadline = time.monotonic() + 10
            while not freed():
                assert time.monotonic() < deadline, "a closed view's place never came free"
                time.sleep(0.2)
