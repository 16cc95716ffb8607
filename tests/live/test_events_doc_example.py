"""docs/events.md's Python receiver, run as written against a real scimlet: it receives the events
of an Entra create and delete, acts once per jti, and refuses a forged SET with an RFC 8935 error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from tests.conftest import entra_user
from tests.live_server import ROOT, free_port, running, server_at


def example_code() -> str:
    text = (ROOT / "docs" / "events.md").read_text()
    section = text[text.index("## Consuming events from an app") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/events.md has no Python example in its section on consuming events"
    return match.group(1)


def test_the_documented_receiver_gets_the_events_once_each(tmp_path: Path) -> None:
    server = server_at(tmp_path / "doc.db", tmp_path / "serve.out")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    subscription = server.cli_json("events", "subscribe", "--idp", server.idp_id, "--url", url)
    script = tmp_path / "receiver.py"
    script.write_text(example_code())
    env = {**os.environ, "SCIM_EVENTS_SECRET": subscription["secret"], "SCIM_EVENTS_AUDIENCE": url, "PORT": str(port)}
    output = tmp_path / "receiver.out"
    with open(output, "w") as out:
        receiver = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out, stderr=subprocess.DEVNULL)
    try:
        with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
            user = scim.post("/Users", json=entra_user("doc@example.com")).json()["id"]
            assert scim.delete(f"/Users/{user}").status_code == 204
            deadline = time.monotonic() + 30
            while output.read_text().count("\n") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            forged = jwt.encode({"jti": "x", "events": {}}, "not-the-secret-at-all-0123456789abcdef", algorithm="HS256")
            refused = httpx.post(url, content=forged)
            assert refused.status_code == 400 and refused.json()["err"] == "invalid_key"
            # The same SETs again (as after a crash before scimlet stored the 202): not acted on twice.
            server.cli_json("events", "redeliver", subscription["id"], "--from", "1")
            while server.cli_json("events", "list")[0]["delivered"] < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert server.cli_json("events", "list")[0]["delivered"] == 4
    finally:
        receiver.terminate()
        receiver.wait(10)
    assert output.read_text().splitlines() == [
        f"create:full /Users/{user} doc@example.com",
        f"delete /Users/{user} ",
    ]
