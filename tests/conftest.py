"""Shared fixtures: an in-process app on a real temporary SQLite file, and a live uvicorn server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import create_app
from settings import load_settings
from storage.sqlite import SqliteStore, migrate

ROOT = Path(__file__).resolve().parent.parent
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def entra_user(user_name: str, **extra: object) -> dict:
    """The create body Entra sends (docs/entra.md), with a given userName."""
    body = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": f"ext-{user_name}",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"{user_name}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
        "roles": [],
    }
    body.update(extra)
    return body


def patch_body(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


@dataclass
class Tenant:
    client: httpx.AsyncClient
    store: SqliteStore
    idp_id: str
    secret: str
    url: str


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(
        environ={"SCIMLET_DATABASE_PATH": str(tmp_path / "scimlet.db"), "SCIMLET_SERVER_BASE_URL": "https://scim.test"}
    )


@pytest.fixture
async def tenant(settings) -> AsyncIterator[Tenant]:
    """An IdP with a Users+Groups key, and an httpx client on the ASGI app pointed at its tenant URL."""
    migrate(settings["database"]["path"])
    store = SqliteStore(settings["database"]["path"])
    await store.open()
    key, secret = await store.create_api_key("test", "", True, True)
    idp = await store.create_idp("test", "key", key.id)
    app = create_app(settings, store)
    url = f"https://scim.test/v1/scim/{idp.id}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=url, headers={"Authorization": f"Bearer {secret}"}
    ) as client:
        yield Tenant(client, store, idp.id, secret, url)
    await store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    process: subprocess.Popen
    env: dict
    port: int
    tenant_url: str
    secret: str
    db_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_cli(self.env, *args)


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def start_server(env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "app.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start in 30 s")


@contextlib.contextmanager
def serve_live(db_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    """`python app.py serve` as a subprocess on a free port, with a key and IdP made by the CLI.

    extra_env adds SCIMLET_* settings (e.g. SCIMLET_SCIM_MAX_WRITE_QUEUE="1").
    """
    port = free_port()
    env = {
        **os.environ,
        "SCIMLET_DATABASE_PATH": str(db_path),
        "SCIMLET_SERVER_PORT": str(port),
        "SCIMLET_SERVER_HOST": "127.0.0.1",
        "SCIMLET_LOGGING_LEVEL": "warning",
        **extra_env,
    }
    key = json.loads(run_cli(env, "apikey", "create", "--name", "entra", "--write", "users,groups", "--json").stdout)
    idp = json.loads(run_cli(env, "idp", "create", "--name", "Entra", "--apikey", "entra", "--json").stdout)
    process = start_server(env, port)
    try:
        yield LiveServer(process, env, port, idp["tenant_url"], key["secret"], db_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on a fresh database for one test (see serve_live)."""
    with serve_live(tmp_path / "live.db") as server:
        yield server
