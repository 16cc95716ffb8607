"""Fault injection on a real server through the CLI: a "close" rule ends the connection without an
answer (what a crashing app behind a proxy looks like to Entra), a throttle preset answers 429 with
Retry-After; both are recorded, and clearing them restores normal answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.live_server import running, server_at


def test_close_and_throttle_rules_through_the_cli(tmp_path: Path) -> None:
    server = server_at(
        tmp_path / "faults.db", tmp_path / "faults.out", SCIMLET_ADMIN_TOKEN="admin-token-0123456789abcdef"
    )
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
        assert scim.get("/Users").status_code == 200
        on = server.cli_json("faults", "add", "--idp", server.idp_id, "--kind", "close", "--fraction", "1")
        assert on["kind"] == "close"
        with pytest.raises(httpx.RemoteProtocolError):
            scim.get("/Users")
        listed = server.cli("faults", "list", "--idp", server.idp_id)
        assert "close the connection without an answer on 100% of all requests" in listed.stdout
        assert "1 fault rule turned off" in server.cli("faults", "clear", "--idp", server.idp_id).stdout
        assert scim.get("/Users").status_code == 200

        server.cli_json("faults", "add", "--idp", server.idp_id, "--preset", "throttle", "--minutes", "5")
        statuses = [scim.get("/Users") for _ in range(8)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert len(throttled) == 2 and all(r.headers["retry-after"] == "5" for r in throttled)
        server.cli("faults", "clear", "--idp", server.idp_id)
    records = server.provisioning_log()
    closed = [r for r in records if r["injected"] == "close"]
    assert len(closed) == 1 and closed[0]["status"] == 444 and closed[0]["outcome"] == "failure"
    assert len([r for r in records if r["injected"] == "429"]) == 2
    bad = server.cli("faults", "add", "--idp", server.idp_id, "--kind", "429", "--fraction", "2")
    assert bad.returncode == 2 and "fraction must be a number above 0 and at most 1" in bad.stderr
