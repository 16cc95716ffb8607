"""The Entra replay suite: every request shape of docs/entra.md against one live server.

One `python app.py serve` process per backend serves the whole suite (starting one per test would dominate its
run time); every test makes its own users and groups with unique names, so tests stay independent. The
server has an IdP of each schema profile, and each test that takes `http` runs on each (`profile`).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from scim.profiles import PROFILES
from tests.backends import BACKENDS
from tests.conftest import LiveServer, backend_database, serve_live


@pytest.fixture(scope="session", params=BACKENDS)
def entra_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The suite's server, once per backend (each test runs on each)."""
    directory = tmp_path_factory.mktemp("entra")
    # The suite provokes a few dozen 401s on purpose; the failed-authentication throttle (its own
    # tests live elsewhere) would turn the later ones into 429s.
    with (
        backend_database(request.param, directory, request) as database,
        serve_live(database, directory / "entra.out", SCIMLET_SECURITY_AUTH_FAILURE_LIMIT="0") as server,
    ):
        yield server


@pytest.fixture(scope="session")
def rfc7643_tenant(entra_server: LiveServer) -> tuple[str, str]:
    """(tenant URL, secret) of the server's rfc7643 IdP, made once per server."""
    url, secret, _ = entra_server.add_idp("Entra, any app", "rfc7643")
    return url, secret


@pytest.fixture(params=list(PROFILES))
def profile(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def http(entra_server: LiveServer, profile: str, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A client on the tenant URL of the profile's IdP with its secret token, as Entra is configured."""
    url, secret = (
        (entra_server.tenant_url, entra_server.secret)
        if profile == "meta-networks"
        else request.getfixturevalue("rfc7643_tenant")
    )
    with httpx.Client(base_url=url, timeout=15, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client
