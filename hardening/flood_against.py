"""What a flood of unauthenticated requests makes a scimlet checkout store: for before/after figures.

    .venv/bin/python hardening/flood_against.py CHECKOUT COUNT SIZE [ADDRESSES]

Starts `python app.py serve` from CHECKOUT (with CHECKOUT/.venv) on a throwaway database and a free
port, logging at info, makes an IdP with its CLI, sends COUNT requests carrying SIZE characters of
client values (tests/hardening/flood.py) from 127.0.0.1 or from ADDRESSES local addresses, stops it
with SIGTERM and prints one JSON line: statuses, provisioning_log records and bytes of text, database
file bytes, the largest stored detail, process log bytes. 127.0.0.1 only; the files are removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hardening.flood import flood, stored_log_bytes  # noqa: E402 - after the path is set


def main(checkout: str, count: int, size: int, addresses: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "flood.db")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {
            **os.environ,
            "SCIMLET_DATABASE_PATH": db,
            "SCIMLET_SERVER_PORT": str(port),
            "SCIMLET_SERVER_HOST": "127.0.0.1",
            "SCIMLET_LOGGING_LEVEL": "info",
        }
        python = os.path.join(checkout, ".venv", "bin", "python")

        def cli(*args: str) -> dict:
            done = subprocess.run([python, "app.py", *args], cwd=checkout, env=env, capture_output=True, check=True)
            return json.loads(done.stdout)

        cli("apikey", "create", "--name", "entra", "--write", "users,groups", "--json")
        idp = cli("idp", "create", "--name", "Entra", "--apikey", "entra", "--json")
        with open(os.path.join(tmp, "output"), "w") as output:
            server = subprocess.Popen(
                [python, "app.py", "serve"], cwd=checkout, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.05)
            sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(addresses)] or None
            tenant_path = idp["tenant_url"].split(f":{port}", 1)[1]
            started = time.monotonic()
            statuses = asyncio.run(flood(port, tenant_path, count, size, sources=sources))
            seconds = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(30)

        def query(sql: str) -> list[tuple]:
            conn = sqlite3.connect(db)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()

        records, stored = stored_log_bytes(query)
        return {
            "checkout": checkout,
            "requests": count,
            "size": size,
            "addresses": addresses or 1,
            "seconds": round(seconds, 2),
            "statuses": statuses,
            "records": records,
            "stored_text_bytes": stored,
            "database_file_bytes": sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)),
            "max_detail": query("SELECT max(length(detail)) FROM provisioning_log")[0][0],
            "process_log_bytes": os.path.getsize(os.path.join(tmp, "output")),
        }


if __name__ == "__main__":
    checkout, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(main(checkout, count, size, int(sys.argv[4]) if len(sys.argv) > 4 else 0)))
