"""A clean stop of a live server loses no provisioning log record, even of its very last requests."""

from __future__ import annotations

import signal
import sqlite3

import httpx

from tests.conftest import LiveServer, entra_user


def test_records_of_requests_just_before_a_clean_stop_are_kept(sqlite_live_server: LiveServer) -> None:
    names = [f"last{i:02d}@contoso.com" for i in range(40)]
    server = sqlite_live_server  # SQLite only: the test reads the stored records with sqlite3
    auth = {"Authorization": f"Bearer {server.secret}"}
    with httpx.Client(base_url=server.tenant_url, headers=auth, timeout=10) as client:
        for name in names:
            assert client.post("/Users", json=entra_user(name)).status_code == 201
        assert client.get("/Users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # SIGTERM at once: the log buffer is flushed every 0.5 s, so these records are still in memory.
    server.process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean stop.
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    with sqlite3.connect(server.db_path) as conn:
        rows = conn.execute("SELECT operation, target, status FROM provisioning_log ORDER BY id").fetchall()
    assert rows[:40] == [("Create User", name, 201) for name in names]
    assert rows[40:] == [("List Users", None, 401)]
