"""A throwaway PostgreSQL 15 server for the tests: initdb in a temporary directory, `postgres` on a
loopback port, stopped and removed afterwards.

One server serves a whole test run: the pytest-xdist workers of one run share it (the first to need
it starts it, the last to leave stops it; tests/conftest.py's `postgresql_url` fixture), and each test
gets a database of its own (`fresh_database`). As root (CI) the server runs as the OS user `postgres`:
PostgreSQL refuses to run as root. Durability is off (fsync, synchronous_commit, full_page_writes):
a test server's data is worth nothing after a crash.

`python tests/pg_server.py` starts one and prints its URL until Ctrl-C or SIGTERM (for the bench,
.ci/run and by hand); `python tests/pg_server.py createdb URL` makes an empty database on the server
at URL and prints its URL (for `make conformance DATABASE_URL=...`).
Standard library only, psql as the client: it runs outside the venv too.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root, for tests.live_server
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live_server import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
START_ATTEMPTS = 5
# A test server: nothing it holds has to survive a crash, and every test creates a database.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def binaries() -> Path | None:
    """The directory holding PostgreSQL 15's initdb, pg_ctl, postgres and psql, or None."""
    for directory in (PG_BIN, *(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)):
        if all((directory / name).is_file() for name in PROGRAMS) and _major(directory) == 15:
            return directory
    return None


def _major(directory: Path) -> int | None:
    result = subprocess.run([directory / "postgres", "--version"], capture_output=True, text=True)
    words = result.stdout.split()
    return int(words[-1].split(".")[0]) if result.returncode == 0 and words else None


def missing_reason() -> str:
    return (
        "PostgreSQL 15 is not installed (no initdb, pg_ctl, postgres and psql in "
        f"{PG_BIN} or on PATH): apt-get install postgresql-15"
    )


def _as_server_user(command: list[str]) -> list[str]:
    """The command as the OS user `postgres` when running as root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """One server: a data directory under a temporary directory, and the postmaster on `port`."""

    def __init__(
        self,
        bin_dir: Path,
        root: Path | None = None,
        port: int = 0,
        options: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        """A new server in a new temporary directory, or the one already in `root`. `options` override
        SERVER_OPTIONS (the bench turns durability back on); `prefix` goes before the start command and
        so applies to every server process (the bench's `taskset -c 0`)."""
        self.bin_dir = bin_dir
        self.options = {**SERVER_OPTIONS, **(options or {})}
        self.prefix = list(prefix)
        self.root = root or Path(tempfile.mkdtemp(prefix="scimlet-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = port
        if root is None and os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """initdb, then the server on a free loopback port; its URL (database `postgres`)."""
        self._run(
            self.bin_dir / "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            # A UTF-8 locale, as a deployment has: lower() folds non-ASCII letters there, which the
            # contract's ASCII-only case folding must not inherit.
            "--locale=C.UTF-8",
            "--no-sync",
        )
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            if self._launch():
                return self.url
            # Most likely the port was taken between choosing it and binding it: another port.
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self.log_text()}")

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (every server process is its child)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _launch(self) -> bool:
        """The postmaster started on self.port and accepting connections, or False."""
        options = " ".join(f"-c {name}={value!r}" for name, value in {**self.options, "port": self.port}.items())
        started = subprocess.run(
            self.prefix
            + _as_server_user(
                [str(self.bin_dir / "pg_ctl"), "start", "-w", "-D", str(self.data), "-l", str(self.log)]
                + ["-o", options]
            ),
            capture_output=True,
            text=True,
        )
        return started.returncode == 0

    def halt(self) -> None:
        """Stop the server (fast: its connections end), keeping its data for resume()."""
        self._run(self.bin_dir / "pg_ctl", "stop", "-w", "-D", str(self.data), "-m", "fast")

    def resume(self) -> None:
        """Start a halted server again on the same port and data: as a database coming back."""
        if not self._launch():
            raise RuntimeError(f"PostgreSQL did not start again on port {self.port}; its log:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the server (immediate: nothing to flush) and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate"]),
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def _run(self, *command: str | Path) -> None:
        result = subprocess.run(_as_server_user([str(part) for part in command]), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {result.stderr or result.stdout}")


def psql(url: str, sql: str, bin_dir: Path | None = None) -> str:
    """Run SQL on the server at `url`; its output (unaligned, tuples only)."""
    program = (bin_dir or binaries() or PG_BIN) / "psql"
    result = subprocess.run(
        [str(program), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql: {result.stderr.strip()}")
    return result.stdout


def with_database(url: str, name: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{name}"


def create_database(url: str, template: str = "template0") -> str:
    """A new empty database on the server at `url` (a copy of `template`); its URL."""
    name = f"test_{uuid.uuid4().hex[:20]}"
    psql(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return with_database(url, name)


def drop_database(url: str) -> None:
    """Drop the database `url` names, ending any connection still open to it."""
    name = url.rsplit("/", 1)[1]
    psql(with_database(url, "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(url: str, template: str = "template0") -> Iterator[str]:
    """A database of its own for one test on the server at `url`, dropped after the block."""
    database = create_database(url, template)
    try:
        yield database
    finally:
        drop_database(database)


# --- one server per test run, shared by its xdist workers -----------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedServer:
    """The run's server, started by the first process that asks and stopped by the last to release.

    The run is PYTEST_XDIST_TESTRUNUID (the same in every worker of one run) or this process. State
    (server directory, port, the pids using it) is a JSON file beside a lock file, both in the temp
    directory; a user that died without releasing (SIGKILL) is dropped from it by the next one.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
        base = Path(tempfile.gettempdir()) / f"scimlet-pg-run-{run}"
        self.lock_path = base.with_suffix(".lock")
        self.state_path = base.with_suffix(".json")
        self.url: str | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
            state["users"] = [pid for pid in state.get("users", []) if _alive(pid)]
            yield state
            if state.get("root"):
                self.state_path.write_text(json.dumps(state))
            else:
                self.state_path.unlink(missing_ok=True)
                self.lock_path.unlink(missing_ok=True)

    def acquire(self) -> str:
        with self._locked() as state:
            if not state.get("root") or not Path(state["root"], "data", "postmaster.pid").exists():
                server = PostgresServer(self.bin_dir)
                try:
                    server.start()
                except BaseException:
                    server.stop()
                    raise
                state.update(root=str(server.root), port=server.port, url=server.url, users=[])
            state["users"].append(os.getpid())
            self.url = state["url"]
        atexit.register(self.release)  # a worker that ends without its session finalizer still lets go
        return self.url

    def release(self) -> None:
        if self.url is None:
            return
        self.url = None
        atexit.unregister(self.release)
        with self._locked() as state:
            state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
            if not state["users"] and state.get("root"):
                PostgresServer(self.bin_dir, Path(state["root"]), state["port"]).stop()
                state.clear()


def main() -> None:
    if sys.argv[1:2] == ["createdb"]:
        if len(sys.argv) != 3:
            sys.exit("usage: python tests/pg_server.py createdb SERVER_URL")
        print(create_database(sys.argv[2]))
        return
    bin_dir = binaries()
    if bin_dir is None:
        sys.exit(missing_reason())
    server = PostgresServer(bin_dir)
    atexit.register(server.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print(server.start(), flush=True)
    except RuntimeError as exc:
        sys.exit(str(exc))
    print("PostgreSQL is running; Ctrl-C stops it and removes its data.", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
