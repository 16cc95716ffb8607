"""`python app.py entra-sim`: passes against scimlet, and catches servers that break Entra's rules."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from entra_sim import LEGACY, simulate
from tests.conftest import ROOT, LiveServer, free_port

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def broken_server(upstream: str, fault: str) -> Starlette:
    """A SCIM server with one classic Entra incompatibility: scimlet behind a proxy that adds the fault.

    "empty-filter-404": a filter that matches nothing answers 404 (Entra's Test Connection fails).
    "remove-all": a legacy member removal with a value array removes every member.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream) as client:
            app.state.client = client
            yield

    async def forward(request: Request) -> Response:
        body = await request.body()
        if fault == "remove-all" and request.method == "PATCH":
            patch = json.loads(body)
            for operation in patch["Operations"]:
                if operation.get("op", "").lower() == "remove" and operation.get("path") == "members":
                    operation.pop("value", None)
            body = json.dumps(patch).encode()
        target = f"/{request.path_params['path']}" + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
        answer = await request.app.state.client.request(request.method, target, content=body, headers=headers)
        if (
            fault == "empty-filter-404"
            and "filter=" in request.url.query
            and answer.status_code == 200
            and answer.json()["totalResults"] == 0
        ):
            return Response(
                json.dumps({"schemas": [SCIM_ERROR], "status": "404", "detail": "No such user"}),
                status_code=404,
                media_type="application/scim+json",
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k in ("content-type", "location")},
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


@contextlib.contextmanager
def running(app: Starlette) -> Iterator[str]:
    """The app on uvicorn in a thread, on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the broken server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def failures(output: str) -> list[str]:
    """The "failed #N Action identity: detail" lines of the summary."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith("failed #")]


def idp_path(server: LiveServer) -> str:
    return server.tenant_url.split("://", 1)[1].split("/", 1)[1]


def test_the_simulator_passes_against_scimlet(entra_server: LiveServer) -> None:
    # A tenant URL pasted with Entra's feature flag still works: the simulator adds the flag itself.
    url = f"{entra_server.tenant_url}?aadOptscim062020"
    done = subprocess.run(
        [
            sys.executable,
            "app.py",
            "entra-sim",
            "--url",
            url,
            "--token",
            entra_server.secret,
            "--users",
            "3",
            "--groups",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[legacy" in out and "[aadOptscim062020]" in out
    summary = next(line for line in out.splitlines() if line.startswith("Summary:"))
    total = int(summary.split()[1])
    assert total >= 80 and f"{total} succeeded, 0 failed, 0 skipped" in summary
    for action in (
        "Test connection",
        "Read schemas",
        "Create User",
        "Add members",
        "Update User",
        "Disable User",
        "Enable User",
        "Remove members",
        "Update Group",
        "Delete User",
        "Delete Group",
    ):
        assert f"  {action} " in out, action
    # The cycle cleans up after itself: nothing named entra-sim-... is left.
    with httpx.Client(
        base_url=entra_server.tenant_url, headers={"Authorization": f"Bearer {entra_server.secret}"}
    ) as http:
        assert http.get("/Users", params={"filter": 'userName sw "entra-sim-"'}).json()["totalResults"] == 0
        assert http.get("/Groups", params={"filter": 'displayName sw "entra-sim-"'}).json()["totalResults"] == 0


def test_a_404_for_an_empty_filter_fails_test_connection(entra_server: LiveServer) -> None:
    with running(broken_server(f"http://127.0.0.1:{entra_server.port}", "empty-filter-404")) as url:
        out = io.StringIO()
        code = simulate(
            f"{url}/{idp_path(entra_server)}", entra_server.secret, users=2, groups=1, dialect="legacy", out=out
        )
    assert code == 1
    failed = failures(out.getvalue())
    assert len(failed) == 2 and all("Test connection" in line and "404" in line for line in failed), failed
    assert all("No such user" in line for line in failed)  # the server's own detail is shown
    assert "Entra would not save these credentials" in out.getvalue()
    assert "Create User" not in out.getvalue()
    assert (
        out.getvalue().rstrip().endswith("Result: FAILED: Entra would log these operations as failures and retry them.")
    )


def test_a_legacy_remove_read_as_remove_all_is_caught(entra_server: LiveServer) -> None:
    with running(broken_server(f"http://127.0.0.1:{entra_server.port}", "remove-all")) as url:
        out = io.StringIO()
        code = simulate(f"{url}/{idp_path(entra_server)}", entra_server.secret, users=3, groups=2, out=out)
    assert code == 1
    failed = failures(out.getvalue())
    # Both groups of the legacy cycle lose all their members; the RFC-style removal of the flag works.
    assert len(failed) == 2, failed
    assert all(
        "Verify members" in line and "-l Group" in line and "members are 0 (0 unexpected, 2 missing)" in line
        for line in failed
    ), failed


def test_a_wrong_token_fails_with_the_servers_detail(entra_server: LiveServer) -> None:
    out = io.StringIO()
    code = simulate(entra_server.tenant_url, "not-the-secret", users=1, groups=0, dialect="aadOptscim062020", out=out)
    assert code == 1
    failed = failures(out.getvalue())
    assert len(failed) == 2 and all("401" in line and "bearer token" in line for line in failed), failed


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "app.py",
            "entra-sim",
            "--url",
            "http://127.0.0.1:9/v1/scim/x",
            "--token",
            "t",
            "--dialect",
            "modern",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "aadOptscim062020" in done.stderr
    for users, groups in ((0, 1), (1, -1)):
        assert simulate("http://127.0.0.1:9/v1/scim/x", "t", users=users, groups=groups) == 2
        assert "--users must be at least 1" in capsys.readouterr().err


def test_keep_leaves_what_the_cycle_provisioned(entra_server: LiveServer) -> None:
    out = io.StringIO()
    code = simulate(entra_server.tenant_url, entra_server.secret, users=2, groups=1, dialect=LEGACY, keep=True, out=out)
    report = out.getvalue()
    assert code == 0, report
    run = next(line.split()[1].rstrip(":") for line in report.splitlines() if line.startswith("run "))
    assert "Kept (--keep): 2 users and 1 groups" in report and "Delete User" not in report
    with httpx.Client(
        base_url=entra_server.tenant_url, headers={"Authorization": f"Bearer {entra_server.secret}"}
    ) as http:
        users = http.get("/Users", params={"filter": f'userName sw "entra-sim-{run}-"'}).json()
        groups = http.get("/Groups", params={"filter": f'displayName sw "entra-sim-{run}-"'}).json()
        assert users["totalResults"] == 2 and groups["totalResults"] == 1
        # The kept group still has the members the cycle left it (one was removed).
        assert len(groups["Resources"][0]["members"]) == 1
