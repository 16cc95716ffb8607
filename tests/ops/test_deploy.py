"""deploy/: the systemd unit, the Caddyfile and the Dockerfile say what docs/deploy.md says.

The structural checks run everywhere; the checks that run systemd-analyze or caddy are skipped,
with the reason in the summary, where those are not installed (.ci/run installs Debian's caddy).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from settings import DEFAULTS
from tests.conftest import ROOT, LiveServer, free_port

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "scimlet.service"
DOCS = (ROOT / "docs" / "deploy.md").read_text()


def unit() -> configparser.ConfigParser:
    # strict=False: systemd allows a key more than once (SystemCallFilter); the last one is kept here.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)
needs_caddy = pytest.mark.skipif(
    shutil.which("caddy") is None, reason="caddy is not installed (Debian: apt-get install caddy; .ci/run does)"
)


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: point it at this interpreter, keep the rest.
    copy = tmp_path / "scimlet.service"
    copy.write_text(UNIT.read_text().replace("/opt/scimlet/.venv/bin/python", sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # an unknown or misspelt directive is only a warning: none


def test_unit_runs_serve_as_a_dedicated_user_in_a_sandbox() -> None:
    service = unit()["Service"]
    assert service["User"] == "scimlet" and service["Group"] == "scimlet"
    assert service["ExecStart"].endswith("/app.py serve")
    for key, wanted in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "StateDirectory": "scimlet",
    }.items():
        assert service[key] == wanted, key
    assert service["ReadWritePaths"] == "/var/lib/scimlet"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit()["Unit"]["After"]


def test_unit_paths_are_the_ones_the_walkthrough_creates() -> None:
    service = unit()["Service"]
    config = service["Environment"].removeprefix("SCIMLET_CONFIG=")
    interpreter, script = service["ExecStart"].split()[:2]
    for path in (config, interpreter, script, service["WorkingDirectory"], service["ReadWritePaths"]):
        assert path in DOCS, path
    # The walkthrough's database must be inside the only writable directory.
    assert re.search(r'path = "/var/lib/scimlet/[^"]+\.db"', DOCS)


def test_caddyfile_proxies_to_scimlets_default_address() -> None:
    text = (DEPLOY / "Caddyfile").read_text()
    server = DEFAULTS["server"]
    assert f"reverse_proxy {server['host']}:{server['port']}" in text
    assert re.search(r"^\s*respond /metrics 404$", text, re.MULTILINE)
    assert "base_url" in text


@needs_caddy
def test_caddy_validates_the_caddyfile() -> None:
    result = subprocess.run(
        ["caddy", "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@needs_caddy
def test_caddy_in_front_of_a_live_server(sqlite_live_server: LiveServer, tmp_path: Path) -> None:
    """The Caddyfile's own site block, served on plain HTTP: SCIM goes through, /metrics does not."""
    port = free_port()
    site = (
        (DEPLOY / "Caddyfile")
        .read_text()
        .replace("scim.example.com {", f"http://127.0.0.1:{port} {{")
        .replace("127.0.0.1:8000", f"127.0.0.1:{sqlite_live_server.port}")
    )
    config = tmp_path / "Caddyfile"
    config.write_text("{\n\tadmin off\n}\n\n" + site)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proxied = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{proxied}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert caddy.poll() is None and time.monotonic() < deadline, "caddy did not start"
                time.sleep(0.1)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert httpx.get(f"{proxied}/metrics", timeout=5).status_code == 404
        tenant = proxied + sqlite_live_server.tenant_url.split(f":{sqlite_live_server.port}", 1)[1]
        probe = httpx.get(
            f"{tenant}/Users",
            params={"filter": 'userName eq "7d420df3-9995-4831-a406-ecf8166f5f6a"'},
            headers={"Authorization": f"Bearer {sqlite_live_server.secret}"},
            timeout=5,
        )
        assert probe.status_code == 200 and probe.json()["totalResults"] == 0
        direct = httpx.get(f"http://127.0.0.1:{sqlite_live_server.port}/metrics", timeout=5)
        assert direct.status_code == 200 and 'route="/v1/scim/{idp}/Users"' in direct.text
    finally:
        caddy.terminate()
        caddy.wait(timeout=10)


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert re.search(r'^VOLUME \["/data"\]$', text, re.MULTILINE)
    assert "SCIMLET_DATABASE_PATH=/data/" in text
    for source in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "tests" in ignored and ".venv*" in ignored and "*.db" in ignored
