"""The throwaway PostgreSQL server the suite runs the PostgreSQL backend on (tests/pg_server.py)."""

from __future__ import annotations

import os

import pytest

from tests import pg_server


def test_the_server_is_postgresql_15_on_loopback_with_durability_off(postgresql_url: str) -> None:
    assert postgresql_url.startswith("postgresql://postgres@127.0.0.1:")
    settings = pg_server.psql(
        postgresql_url,
        "SELECT current_setting('server_version_num')::int / 10000, current_setting('listen_addresses'), "
        "current_setting('fsync'), current_setting('synchronous_commit'), current_setting('server_encoding')",
    )
    assert settings.strip() == "15|127.0.0.1|off|off|UTF8"
    owner = pg_server.psql(postgresql_url, "SELECT pg_read_file('postmaster.pid', 0, 16)").split()[0]
    server_user = os.stat(f"/proc/{owner}").st_uid
    assert server_user != 0  # PostgreSQL refuses root; as root the harness runs it as `postgres`


def test_each_fresh_database_is_empty_and_its_own(postgresql_url: str) -> None:
    with pg_server.fresh_database(postgresql_url) as first, pg_server.fresh_database(postgresql_url) as second:
        assert first != second
        pg_server.psql(first, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        assert pg_server.psql(second, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").strip() == "0"
        assert pg_server.psql(first, "SELECT x FROM t").strip() == "1"
    names = pg_server.psql(postgresql_url, "SELECT datname FROM pg_database")
    assert first.rsplit("/", 1)[1] not in names and second.rsplit("/", 1)[1] not in names  # dropped


def test_the_database_fixture_gives_a_connectable_database(postgresql_database: str) -> None:
    assert (
        pg_server.psql(postgresql_database, "SELECT current_database()").strip()
        == postgresql_database.rsplit("/", 1)[1]
    )


def test_without_postgresql_the_reason_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_server, "PG_BIN", pg_server.PG_BIN / "missing")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert pg_server.binaries() is None
    assert "apt-get install postgresql-15" in pg_server.missing_reason()
