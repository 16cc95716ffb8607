"""The storage seam: the backend chosen by database.url, the operations web/ and app.py call on a
store instead of SQLite internals, and the boundary itself (nothing above storage/ imports a backend)."""

from __future__ import annotations

import ast
import inspect
import sqlite3
from pathlib import Path

import pytest

import storage
from settings import ConfigError, load_settings
from storage import Change, Store, create_store
from storage.sqlite import MIGRATIONS, SqliteStore

ROOT = Path(__file__).resolve().parents[2]
ALL_MIGRATIONS = sorted(f.name for f in MIGRATIONS.glob("*.sql"))


def settings_with(**env: str):
    return load_settings(environ={f"SCIMLET_DATABASE_{key.upper()}": value for key, value in env.items()})


def test_the_sqlite_file_is_database_path_when_database_url_is_not_set(tmp_path: Path) -> None:
    store = create_store(settings_with(path=str(tmp_path / "p.db")))
    assert isinstance(store, SqliteStore) and store.path == str(tmp_path / "p.db")


@pytest.mark.parametrize(
    ("url", "path"), [("sqlite:///./data/x.db", "./data/x.db"), ("sqlite:////srv/x.db", "/srv/x.db")]
)
def test_database_url_names_the_sqlite_file(url: str, path: str) -> None:
    store = create_store(settings_with(url=url, path="/elsewhere.db"))
    assert isinstance(store, SqliteStore) and store.path == path


def test_a_scheme_without_a_backend_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"database.url: no storage backend for mysql://; use one of sqlite://"):
        create_store(settings_with(url="mysql://db.example.com/scim"))


def test_settings_reach_the_sqlite_store(tmp_path: Path) -> None:
    store = create_store(
        settings_with(path=str(tmp_path / "s.db"), readers="3", synchronous="full", min_free_bytes="123")
    )
    assert isinstance(store, SqliteStore)
    assert (store.reader_count, store.synchronous, store.min_free_bytes) == (3, "FULL", 123)


def test_sqlite_store_has_every_protocol_method_with_its_signature() -> None:
    """mypy checks this statically (create_store's builders return a Store); this names a drift at run time."""
    for name, member in inspect.getmembers(Store):
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(SqliteStore, name)
        assert inspect.signature(ours) == inspect.signature(member), name
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(member), name
    assert isinstance(inspect.getattr_static(SqliteStore, "write_queue_depth"), property)


async def test_migrate_and_describe_work_before_open_and_ask_nothing_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "s.db"
    store = SqliteStore(str(path))
    assert await store.describe() == [f"database {path}: does not exist yet; `serve` or `migrate` creates it"]
    assert await store.pending_migrations() == ALL_MIGRATIONS
    assert not path.exists()  # asking created nothing
    assert await store.migrate() == ALL_MIGRATIONS
    assert await store.migrate() == []
    assert await store.pending_migrations() == []
    assert await store.describe() == [f"database {path}: exists, schema up to date"]
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM schema_version WHERE name = ?", (ALL_MIGRATIONS[-1],))
    assert await store.pending_migrations() == [ALL_MIGRATIONS[-1]]
    assert await store.describe() == [
        f"database {path}: 1 pending migrations ({ALL_MIGRATIONS[-1]}); `migrate` or `serve` applies them"
    ]


async def test_describe_reports_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database, but long enough to have a header of sorts" * 20)
    (line,) = await SqliteStore(str(path)).describe()
    assert line.startswith(f"database {path}: cannot be read (")


async def test_open_store_operations(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.migrate()
    await store.open()
    try:
        assert await store.pending_migrations() == []
        assert await store.readiness(2.0) == {"database": "ok", "migrations": "ok", "writer": "ok", "disk": "ok"}
        key, _ = await store.create_api_key("k", "", True, True)
        idp = await store.create_idp("Entra", "key", key.id)
        row = await store.create("User", idp.id, {"userName": "alice"})
        before = await store.stats()
        await store.update("User", idp.id, row.id, lambda current: Change(doc={**current.doc, "active": False}))
        after = await store.stats()
        assert after.write_batches == before.write_batches + 1 and after.write_queue_depth == 0
        assert set(after.sizes) == {"database", "wal"}
        assert after.sizes["database"] == path.stat().st_size > 0
        assert after.sizes["wal"] == Path(f"{path}-wal").stat().st_size
        assert await store.backup(str(tmp_path / "copy.db")) == {"users": 1, "groups": 0}
        with sqlite3.connect(tmp_path / "copy.db") as copy:
            assert copy.execute("SELECT user_name FROM users").fetchall() == [("alice",)]
    finally:
        await store.close()


async def test_readiness_names_no_path_and_reports_a_full_disk_budget(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path), min_free_bytes=2**62)
    await store.migrate()
    await store.open()
    try:
        checks = await store.readiness(2.0)
    finally:
        await store.close()
    assert checks["disk"].endswith("MiB free on the disk, below database.min_free_bytes (4398046511104 MiB)")
    assert {name: text for name, text in checks.items() if name != "disk"} == {
        "database": "ok",
        "migrations": "ok",
        "writer": "ok",
    }
    assert str(tmp_path) not in "".join(checks.values())


def imported_modules(file: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_web_and_app_import_no_backend_and_no_database_driver() -> None:
    """web/ and app.py see storage through storage/'s interfaces only; storage.create_store picks the backend."""
    backends = {"sqlite3", "aiosqlite", "asyncpg", "psycopg"}
    for file in [ROOT / "app.py", *sorted((ROOT / "web").rglob("*.py"))]:
        for module in imported_modules(file):
            top = module.split(".")[0]
            assert top not in backends, f"{file.relative_to(ROOT)} imports {module}"
            assert not module.startswith(("storage.sqlite", "storage.postgresql")), (
                f"{file.relative_to(ROOT)} imports {module}: use the interfaces in storage/ (storage.create_store)"
            )
    assert set(storage.BACKENDS) >= {"sqlite"}
