"""Live servers for the hardening tests: `python app.py serve` on a temporary database, with settings
given as SCIMLET_* variables and the server's output kept in a file (it is read by the log tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, run_cli


@dataclass
class Server:
    env: dict
    port: int
    db_path: Path
    output_path: Path
    tenant_url: str = ""
    secret: str = ""
    idp_id: str = ""
    process: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_cli(self.env, *args)

    def start(self) -> None:
        output = open(self.output_path, "a")  # noqa: SIM115 - handed to the child; closed with it
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "serve"], cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT
        )
        output.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("server did not start in 30 s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the database directly, as an operator would (a fresh connection sees all commits)."""
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def make_server(tmp_path: Path, name: str = "live", **settings: object) -> Server:
    """A server (not yet started) with an Entra IdP and a Users+Groups key made by the CLI."""
    port = free_port()
    env = {
        **os.environ,
        "SCIMLET_DATABASE_PATH": str(tmp_path / f"{name}.db"),
        "SCIMLET_SERVER_PORT": str(port),
        "SCIMLET_SERVER_HOST": "127.0.0.1",
        "SCIMLET_LOGGING_LEVEL": "warning",
    }
    env.update({f"SCIMLET_{key.upper()}": str(value) for key, value in settings.items()})
    server = Server(env, port, tmp_path / f"{name}.db", tmp_path / f"{name}.out")
    key = json.loads(server.cli("apikey", "create", "--name", "entra", "--write", "users,groups", "--json").stdout)
    idp = json.loads(server.cli("idp", "create", "--name", "Entra", "--apikey", "entra", "--json").stdout)
    server.tenant_url, server.secret, server.idp_id = idp["tenant_url"], key["secret"], idp["id"]
    return server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """make_server + start, stopping every server at the end of the test."""
    servers: list[Server] = []

    def factory(name: str = "live", start: bool = True, **settings: object) -> Server:
        server = make_server(tmp_path, name, **settings)
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()
