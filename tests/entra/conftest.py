"""The Entra replay suite: every request shape of docs/entra.md against one live server.

One `python app.py serve` process serves the whole suite (starting one per test would dominate its
run time); every test makes its own users and groups with unique names, so tests stay independent.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, serve_live


@pytest.fixture(scope="session")
def entra_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # The suite provokes a few dozen 401s on purpose; the failed-authentication throttle (its own
    # tests live elsewhere) would turn the later ones into 429s.
    with serve_live(tmp_path_factory.mktemp("entra") / "entra.db", SCIMLET_SECURITY_AUTH_FAILURE_LIMIT="0") as server:
        yield server


@pytest.fixture
def http(entra_server: LiveServer) -> Iterator[httpx.Client]:
    """A client on the tenant URL with the secret token, as Entra is configured."""
    with httpx.Client(
        base_url=entra_server.tenant_url, timeout=15, headers={"Authorization": f"Bearer {entra_server.secret}"}
    ) as client:
        yield client
