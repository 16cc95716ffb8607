"""`python app.py backup PATH` while the server serves writes, then a restore that serves the copy."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from storage import AdminError
from storage.sqlite import backup, migrate
from tests.conftest import run_cli
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
        result = await asyncio.to_thread(server.cli, "backup", str(copy))
        seen["done"] = set(load.created)
        load.deadline = time.monotonic() + 0.7  # and some more writes after it
        assert result.returncode == 0, result.stderr
        assert "integrity ok" in result.stdout

    await asyncio.gather(load.run(writers=8, seconds=60), back_up_mid_load())
    later = set(load.created) - seen["done"]
    assert later and seen["created"]  # writes went on before, during and after the backup
    assert server.process.poll() is None

    # The copy is one standalone file (no -wal to carry) that passes integrity_check.
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}.partial").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()

    # Restore as the README says: stop, remove the database and its -wal/-shm, copy the backup in, start.
    assert server.stop() in (0, -signal.SIGTERM)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{server.db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, server.db_path)
    server.start()
    snapshot = Load(server, group_id)
    snapshot.created, snapshot.titles, snapshot.members = seen["created"], seen["titles"], seen["members"]
    await verify(server, snapshot)  # the same key still works: api_keys and idps are in the copy
    # One point in time: what was acknowledged after the backup finished is not in it.
    restored = {row[0] for row in server.query("SELECT user_name FROM users")}
    assert not later & restored


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
