"""`python app.py backup PATH` while the server serves writes, then a restore that serves the copy."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from storage.sqlite import AdminError, backup, migrate
from tests.conftest import free_port, run_cli
from tests.hardening.conftest import Server
from tests.hardening.load import Load, verify


async def test_backup_under_load_is_consistent_and_restores(server_factory, tmp_path: Path) -> None:
    server = server_factory("primary")
    async with httpx.AsyncClient(base_url=server.tenant_url, headers=server.auth) as http:
        group_id = (await http.post("/Groups", json={"displayName": "Backed up"})).json()["id"]
    load = Load(server, group_id)
    copy = tmp_path / "backups" / "scimlet-backup.db"
    seen: dict = {}

    async def back_up_mid_load() -> None:
        await asyncio.sleep(1.0)
        seen.update(created=dict(load.created), titles=dict(load.titles), members=set(load.members))
        started = time.monotonic()
        result = await asyncio.to_thread(server.cli, "backup", str(copy))
        seen["seconds"] = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert "integrity ok" in result.stdout

    await asyncio.gather(load.run(writers=8, seconds=3), back_up_mid_load())
    assert len(load.created) > len(seen["created"]) > 0  # writes went on during and after the backup
    assert server.process.poll() is None

    # The copy is one standalone file (no -wal to carry) that passes integrity_check.
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}.partial").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()

    # Restore as the README says: the copy becomes database.path of a (stopped) server, which serves it.
    restored_db = tmp_path / "restored" / "scimlet.db"
    restored_db.parent.mkdir()
    shutil.copyfile(copy, restored_db)
    port = free_port()
    env = {**server.env, "SCIMLET_DATABASE_PATH": str(restored_db), "SCIMLET_SERVER_PORT": str(port)}
    restored = Server(env, port, restored_db, tmp_path / "restored.out",
                      tenant_url=f"http://127.0.0.1:{port}/v1/scim/{server.idp_id}", secret=server.secret)
    restored.start()
    try:
        snapshot = Load(restored, group_id)
        snapshot.created, snapshot.titles, snapshot.members = seen["created"], seen["titles"], seen["members"]
        await verify(restored, snapshot)  # the same key works: api_keys and idps are in the copy
    finally:
        restored.stop()


def test_backup_refuses_to_overwrite_and_names_a_missing_database(tmp_path: Path) -> None:
    db = tmp_path / "scimlet.db"
    migrate(str(db))
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    result = run_cli({**os.environ, "SCIMLET_DATABASE_PATH": str(db)}, "backup", str(existing))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(AdminError, match="no database"):
        backup(str(tmp_path / "nothing-here.db"), str(tmp_path / "other.db"))
    assert not (tmp_path / "other.db").exists()
    assert backup(str(db), str(tmp_path / "offline.db")) == {"users": 0, "groups": 0}
