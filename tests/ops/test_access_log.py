"""Request logs: a real `app.py serve` with logging.format=json, and the text format in process."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import entra_user, patch_body
from tests.live_server import running, server_at
from tests.ops.conftest import Ops

PASSWORD = "Pa55-" + uuid.uuid4().hex  # distinct enough that any trace of it in the output is a leak
WRONG_TOKEN = "not-the-secret-" + uuid.uuid4().hex
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


def test_json_request_lines_and_no_secret_anywhere(tmp_path: Path) -> None:
    server = server_at(
        tmp_path / "live.db",
        tmp_path / "live.out",
        SCIMLET_LOGGING_LEVEL="info",
        SCIMLET_LOGGING_FORMAT="json",
        # A configured admin password: serve has none to generate and print (as in docs/deploy.md).
        SCIMLET_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    secret, port = server.secret, server.port
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
        created = http.post("/Users", json=entra_user("alice@contoso.com", password=PASSWORD))
        assert created.status_code == 201
        user_id = created.json()["id"]
        changed = http.patch(
            f"/Users/{user_id}", json=patch_body({"op": "replace", "path": "password", "value": PASSWORD})
        )
        assert changed.status_code == 200
        assert http.get(f"/Users?filter=userName+eq+%22{secret}%22").status_code == 200
        assert http.get("/Users", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}).status_code == 401
        assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        sign_in = http.post(
            f"http://127.0.0.1:{port}/admin/login",
            headers={"Authorization": ""},
            data={"password": ADMIN_PASSWORD, "csrf_token": "stale"},
        )
        assert sign_in.status_code == 403  # without the form's token; the password still went in a body
    output = server.output()

    assert secret not in output  # not from the header, nor from the query string (never logged)
    assert PASSWORD not in output
    assert WRONG_TOKEN not in output
    assert ADMIN_PASSWORD not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines too
    requests = [line for line in lines if line["logger"] == "scimlet.access"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [
        ("POST", "/v1/scim/{idp}/Users", 201),
        ("PATCH", "/v1/scim/{idp}/Users/{id}", 200),
        ("GET", "/v1/scim/{idp}/Users", 200),
        ("GET", "/v1/scim/{idp}/Users", 401),
        ("POST", "/admin/login", 403),
    ]  # the health check is logged at debug level only
    create = requests[0]
    assert create["path"] == f"/v1/scim/{server.idp_id}/Users"
    assert create["idp"] == server.idp_id
    assert create["client"] == "127.0.0.1"
    assert create["level"] == "info"
    assert isinstance(create["duration_ms"], float) and 0 < create["duration_ms"] < 10_000
    assert create["message"].startswith(f"POST /v1/scim/{server.idp_id}/Users 201 ")
    assert requests[1]["path"] == f"/v1/scim/{server.idp_id}/Users/{user_id}"


async def test_text_lines_keep_the_path_percent_encoded(ops: Ops, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scimlet.access")
    response = await ops.scim.get("/Users/x%0AINFO%20forged%20line")
    assert response.status_code == 404
    [line] = [r.getMessage() for r in caplog.records if r.name == "scimlet.access"]
    assert line.startswith(f"GET /v1/scim/{ops.idp_id}/Users/x%0AINFO%20forged%20line 404 ")
    assert line.endswith("ms") and "\n" not in line


async def test_probes_log_at_debug_level(ops: Ops, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scimlet.access")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await ops.root.get(path)).status_code == 200
    assert [(r.levelno, r.request["route"]) for r in caplog.records if r.name == "scimlet.access"] == [
        (logging.DEBUG, "/healthz"),
        (logging.DEBUG, "/readyz"),
        (logging.DEBUG, "/metrics"),
    ]


def test_text_request_lines_from_a_live_server(tmp_path: Path) -> None:
    """The default format, as `make run` prints it: one line per request, level and logger first."""
    server = server_at(
        tmp_path / "text.db", tmp_path / "text.out", SCIMLET_LOGGING_LEVEL="info", SCIMLET_LOGGING_FORMAT="text"
    )
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
        assert http.post("/Users", json=entra_user("text@contoso.com")).status_code == 201
        assert http.get("/Users/nope%0Aforged").status_code == 404
    output = server.output()
    lines = [line for line in output.splitlines() if line.startswith("INFO scimlet.access: ")]
    assert len(lines) == 2, output
    assert re.fullmatch(rf"INFO scimlet\.access: POST /v1/scim/{server.idp_id}/Users 201 \d+\.\dms", lines[0])
    assert re.fullmatch(
        rf"INFO scimlet\.access: GET /v1/scim/{server.idp_id}/Users/nope%0Aforged 404 \d+\.\dms", lines[1]
    )
    assert server.secret not in output
