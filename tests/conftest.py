"""Shared fixtures: an in-process app on a database of each backend (a real temporary SQLite file, a
database of its own on the throwaway PostgreSQL server, tests/pg_server.py), and a live uvicorn server."""

from __future__ import annotations

import contextlib
import os
import re
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import create_app
from settings import Settings, load_settings
from storage import Store
from tests import pg_server
from tests.backends import BACKENDS, open_store
from tests.live_server import ROOT as ROOT  # re-exported: the live-server names tests import from here
from tests.live_server import Server as LiveServer
from tests.live_server import free_port as free_port
from tests.live_server import run_cli as run_cli
from tests.live_server import running, server_at, sqlite_url

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# `make test` runs the suite on every core, then the tests marked `serial` alone (docs/architecture.md,
# "Tests"): those that measure latency or memory, which a neighbour test on another core would skew.
# Besides an explicit @pytest.mark.serial, a test is serial when it, or a function of its own module
# that it calls, uses one of these names or names RSS (a fixture, a function, a "VmRSS" string).
MEASURING_NAMES = frozenset({"other_tenant_p99", "P99_BUDGET_MS"})


def _names_in(code: types.CodeType, module: dict, depth: int = 2) -> Iterator[str]:
    for name in code.co_names:
        yield name
        helper = module.get(name)
        if depth and isinstance(helper, types.FunctionType) and helper.__globals__ is module:
            yield from _names_in(helper.__code__, module, depth - 1)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _names_in(constant, module, depth)
        elif isinstance(constant, str):
            yield constant


def measures_latency_or_memory(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    function = getattr(item, "function", None)
    if isinstance(function, types.FunctionType):
        names.update(_names_in(function.__code__, function.__globals__))
    return bool(names & MEASURING_NAMES) or any("rss" in name.lower() for name in names)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("serial") is None and measures_latency_or_memory(item):
            item.add_marker(pytest.mark.serial)


# --- storage backends ---------------------------------------------------------------------------


def postgresql_required() -> bool:
    """CI (CI=true, or SCIMLET_REQUIRE_POSTGRESQL=1 as .ci/run sets): a PostgreSQL test may not skip."""
    return os.environ.get("CI") == "true" or os.environ.get("SCIMLET_REQUIRE_POSTGRESQL") == "1"


def on_postgresql(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.skipped and postgresql_required() and on_postgresql(item) and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"a PostgreSQL test skipped in CI, where it must run: {report.longrepr}"
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tally the PostgreSQL tests that passed, for .ci/run's check (SCIMLET_POSTGRESQL_TALLY names a
    file). Where the results arrive: the xdist controller, or the one process without xdist."""
    tally = os.environ.get("SCIMLET_POSTGRESQL_TALLY")
    if "PYTEST_XDIST_WORKER" in os.environ or not tally:
        return
    if report.when == "call" and report.passed and re.search(r"[\[-]postgresql[-\]]", report.nodeid):
        with open(tally, "a") as out:
            out.write(report.nodeid + "\n")


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """The URL of the run's throwaway PostgreSQL server (database `postgres`), shared by the xdist
    workers; skipped, with the reason, when PostgreSQL 15 is not installed (failed in CI)."""
    bin_dir = pg_server.binaries()
    if bin_dir is None:
        if postgresql_required():
            pytest.fail(pg_server.missing_reason())
        pytest.skip(pg_server.missing_reason())
    server = pg_server.SharedServer(bin_dir)
    try:
        yield server.acquire()
    finally:
        server.release()


@pytest.fixture
def postgresql_database(postgresql_url: str) -> Iterator[str]:
    """The URL of a new empty database for this test alone, dropped after it."""
    with pg_server.fresh_database(postgresql_url) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each storage backend in turn (tests/backends.py): a test taking it runs once per backend."""
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of this test's own on `backend`: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if backend == "postgresql":
        return request.getfixturevalue("postgresql_database")
    return sqlite_url(tmp_path / "scimlet.db")


def entra_user(user_name: str, **extra: object) -> dict:
    """The create body Entra sends (docs/entra.md), with a given userName."""
    body = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": f"ext-{user_name}",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"{user_name}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
        "roles": [],
    }
    body.update(extra)
    return body


def patch_body(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


@dataclass
class Tenant:
    client: httpx.AsyncClient
    store: Store
    idp_id: str
    secret: str
    url: str


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The app's settings on this test's database (of each backend in turn, see `backend`)."""
    return load_settings(environ={"SCIMLET_DATABASE_URL": database_url, "SCIMLET_SERVER_BASE_URL": "https://scim.test"})


@pytest.fixture
async def tenant(settings: Settings) -> AsyncIterator[Tenant]:
    """An IdP with a Users+Groups key, and an httpx client on the ASGI app pointed at its tenant URL;
    once per backend."""
    store = await open_store(settings.database.url)
    key, secret = await store.create_api_key("test", "", True, True)
    idp = await store.create_idp("test", "key", key.id)
    app = create_app(settings, store)
    url = f"https://scim.test/v1/scim/{idp.id}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=url, headers={"Authorization": f"Bearer {secret}"}
    ) as client:
        yield Tenant(client, store, idp.id, secret, url)
    await store.close()


@contextlib.contextmanager
def serve_live(database: Path | str, output_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    """A started live server on `database` (a SQLite file or a database URL, see tests/live_server.py),
    its output in `output_path`, stopped after the block.

    extra_env adds SCIMLET_* settings (e.g. SCIMLET_SCIM_MAX_WRITE_QUEUE="1").
    """
    with running(server_at(database, output_path, **extra_env)) as server:
        yield server


@contextlib.contextmanager
def backend_database(backend: str, directory: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database on `backend` for the block: a SQLite file in `directory`, or a new
    PostgreSQL database, dropped after it. For fixtures wider than a test (see `database_url`)."""
    if backend == "postgresql":
        with pg_server.fresh_database(request.getfixturevalue("postgresql_url")) as url:
            yield url
    else:
        yield sqlite_url(directory / "scimlet.db")


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on a fresh database for one test (see serve_live); once per backend."""
    with serve_live(database_url, tmp_path / "live.out") as server:
        yield server


@pytest.fixture
def sqlite_live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on a fresh SQLite file, for a test that reads the file, or that is about the
    HTTP transport (the same whatever the backend)."""
    with serve_live(tmp_path / "live.db", tmp_path / "live.out") as server:
        yield server
