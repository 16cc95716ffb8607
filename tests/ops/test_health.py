"""/healthz and /readyz: unauthenticated, cheap, and /readyz fails when SCIM traffic would."""

from __future__ import annotations

import os
import sqlite3
import uuid

from storage.sqlite import MIGRATIONS
from tests.ops.conftest import Ops


async def test_healthz_answers_without_credentials(ops: Ops) -> None:
    response = await ops.root.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert (await ops.root.head("/healthz")).status_code == 200


async def test_readyz_reports_each_check(ops: Ops) -> None:
    response = await ops.root.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"},
    }


async def test_readyz_fails_when_the_database_file_is_gone(ops: Ops) -> None:
    for suffix in ("", "-wal", "-shm"):
        with_suffix = ops.store.path + suffix
        if os.path.exists(with_suffix):
            os.remove(with_suffix)
    # The open connections still work on the deleted file: only /readyz tells that writes are doomed.
    assert (await ops.scim.get("/Users")).status_code == 200
    response = await ops.root.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "the database file is missing"
    assert ops.store.path not in response.text  # the answer is public: no file system paths
    assert (await ops.root.get("/healthz")).status_code == 200  # alive, just not ready


async def test_readyz_fails_with_pending_migrations(ops: Ops) -> None:
    first = sorted(MIGRATIONS.glob("*.sql"))[0].name
    with sqlite3.connect(ops.store.path) as conn:
        conn.execute("DELETE FROM schema_version WHERE name = ?", (first,))
    response = await ops.root.get("/readyz")
    assert response.status_code == 503
    migrations = response.json()["checks"]["migrations"]
    assert migrations.startswith("1 pending: ") and first in migrations and "migrate" in migrations
    assert response.json()["checks"]["writer"] == "ok"


async def test_readyz_fails_while_the_writer_is_stuck_and_recovers(ops: Ops) -> None:
    ops.app.state.health.timeout = 0.3
    blocker = sqlite3.connect(ops.store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        response = await ops.root.get("/readyz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["writer"] == "the database writer does not complete writes within 0.3 s"
        assert checks["database"] == "ok" and checks["migrations"] == "ok"
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    ops.app.state.health.timeout = 5.0
    assert (await ops.root.get("/readyz")).status_code == 200


async def test_probes_stay_out_of_the_provisioning_log(ops: Ops) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await ops.root.get(path)).status_code == 200
    assert (await ops.scim.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")).status_code == 200
    await ops.app.state.provisioning_log.flush()
    with sqlite3.connect(ops.store.path) as conn:
        paths = [row[0] for row in conn.execute("SELECT path FROM provisioning_log")]
    assert paths == [f"/v1/scim/{ops.idp_id}/Users"]
