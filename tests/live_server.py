"""The one way to run a live server: `python app.py serve` as a subprocess on a loopback port and a
database (a temporary SQLite file, or any database.url: a PostgreSQL database), its output kept in a
file, with an Entra IdP and a Users+Groups key made by the CLI. The test fixtures (tests/conftest.py,
tests/hardening/conftest.py) and the conformance and schemathesis runners all start their servers here.

Standard library only: the conformance runner imports it from its own venv.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0

# Every pytest-xdist worker (and a process outside pytest) draws ports from a block of its own, below
# the kernel's ephemeral range (where bind(0) and client sockets land): a port chosen here is taken by
# no other test process in the moment between choosing it and the server binding it.
PORT_BLOCK_START = 20000
PORT_BLOCK_SIZE = 500


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"...; unset outside xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") else 0
    start = PORT_BLOCK_START + index * PORT_BLOCK_SIZE
    return range(start, start + PORT_BLOCK_SIZE)


def _candidate_ports() -> Iterator[int]:
    block = _port_block()
    offset = random.randrange(len(block))  # two suites run at once on one machine start apart
    return itertools.cycle([*block[offset:], *block[:offset]])


_ports = _candidate_ports()


def free_port() -> int:
    """A loopback port nothing listens on, from this process's own block."""
    for _ in range(PORT_BLOCK_SIZE):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_port_block()}")


def run_cli(env: dict, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "app.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def sqlite_url(path: Path) -> str:
    """The database.url of the SQLite file at `path` (sqlite:////... when it is absolute)."""
    return f"sqlite:///{path}"


def settings_env(**settings: object) -> dict[str, str]:
    """Settings as the server reads them from its environment: scim_max_page_size=5 →
    SCIMLET_SCIM_MAX_PAGE_SIZE=5."""
    return {f"SCIMLET_{key.upper()}": str(value) for key, value in settings.items()}


@dataclass
class Server:
    env: dict
    port: int
    database_url: str
    output_path: Path
    tenant_url: str = ""
    secret: str = ""
    idp_id: str = ""
    process: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)
    python: str = sys.executable

    @property
    def db_path(self) -> Path:
        """The SQLite file, for a test about the file itself; a server on another backend has none."""
        scheme, _, path = self.database_url.partition(":///")
        if scheme != "sqlite":
            raise ValueError(f"not a SQLite database: {scheme}://")
        return Path(path)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_cli(self.env, *args, python=self.python)

    def cli_json(self, *args: str) -> dict:
        """A CLI command with --json, its answer parsed; a failure says what the CLI printed."""
        done = self.cli(*args, "--json")
        if done.returncode != 0:
            raise RuntimeError(f"app.py {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def provision(self) -> None:
        """An Entra IdP with a Users+Groups key, as docs/entra.md has an admin make them."""
        self.tenant_url, self.secret, self.idp_id = self.add_idp("Entra", key_name="entra")

    def add_idp(self, name: str, profile: str = "meta-networks", key_name: str = "") -> tuple[str, str, str]:
        """Another IdP of that schema profile with a Users+Groups key of its own (named `key_name`,
        else "<name> key"): (tenant URL, secret, IdP ID)."""
        key = self.cli_json("apikey", "create", "--name", key_name or f"{name} key", "--write", "users,groups")
        idp = self.cli_json("idp", "create", "--name", name, "--apikey", key["id"], "--profile", profile)
        return idp["tenant_url"], key["secret"], idp["id"]

    def start(self) -> None:
        """Start serving (appending to the output file) and return once the port accepts connections."""
        with open(self.output_path, "a") as output:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [self.python, "app.py", "serve"], cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise RuntimeError(f"server did not start in {START_TIMEOUT:.0f} s: {self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` and wait for the exit status; a server still running after `timeout` is killed
        and the timeout raised."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def close(self) -> None:
        """At the end of a test: stop the server if it still runs, killing it when SIGTERM is not enough."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed by stop(); the test has its answer
                self.stop(timeout=15)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match:
        """The first match of `pattern` in the server's output, once it is there."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited before printing {pattern!r}: {self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not print {pattern!r} in {timeout:.0f} s: {self.output()}")
            time.sleep(0.05)

    def provisioning_log(self) -> list[dict]:
        """Every provisioning log record, newest first, as GET /v1/admin/logs shows it, read from this
        server started again after it stopped (a clean stop stores all it buffered): the same on every
        backend. The server's environment must set SCIMLET_ADMIN_TOKEN."""
        assert self.process is None or self.process.poll() is not None, "stop the server first"
        headers = {"Authorization": f"Bearer {self.env['SCIMLET_ADMIN_TOKEN']}"}
        records: list[dict] = []
        page: dict = {"next": ""}
        with running(self):
            while page["next"] is not None:
                query = urllib.parse.urlencode({"count": 200, **({"before": page["next"]} if page["next"] else {})})
                request = urllib.request.Request(f"{self.base}/v1/admin/logs?{query}", headers=headers)
                with urllib.request.urlopen(request, timeout=30) as response:
                    page = json.load(response)
                records += page["Resources"]
        return records

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the SQLite file directly, as an operator would (a fresh connection sees all commits)."""
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def server_at(
    database: Path | str, output_path: Path, *, provision: bool = True, python: str = sys.executable, **env: str
) -> Server:
    """A server (not yet started) on `database`, a SQLite file's path or a database URL (such as
    postgresql://...), its output in `output_path`; `env` adds SCIMLET_* variables by their names and
    wins over the defaults here. provision=False leaves the database empty (serve then bootstraps a
    Default IdP on its first start)."""
    port = free_port()
    database_url = sqlite_url(database) if isinstance(database, Path) else database
    server_env = {
        **os.environ,
        "SCIMLET_DATABASE_URL": database_url,
        "SCIMLET_SERVER_PORT": str(port),
        "SCIMLET_SERVER_HOST": "127.0.0.1",
        "SCIMLET_LOGGING_LEVEL": "warning",
        **env,
    }
    server = Server(server_env, port, database_url, output_path, python=python)
    if provision:
        server.provision()
    return server


def make_server(tmp_path: Path, name: str = "live", database_url: str = "", **settings: object) -> Server:
    """A server (not yet started) on `database_url`, else on tmp_path/<name>.db, its output in
    tmp_path/<name>.out, with settings as keyword arguments (scim_max_page_size=5 →
    SCIMLET_SCIM_MAX_PAGE_SIZE=5)."""
    database = database_url or tmp_path / f"{name}.db"
    return server_at(database, tmp_path / f"{name}.out", **settings_env(**settings))


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """`server` started for the block, and stopped after it."""
    server.start()
    try:
        yield server
    finally:
        server.close()
