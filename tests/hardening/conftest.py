"""Live servers for the hardening tests, with settings given as keyword arguments and the server's
output kept in a file (it is read by the log tests). The servers are tests/live_server.py's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import Server as Server  # re-exported: the hardening tests import both from here
from tests.live_server import make_server as make_server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """make_server + start, stopping every server at the end of the test."""
    servers: list[Server] = []

    def factory(name: str = "live", start: bool = True, **settings: object) -> Server:
        server = make_server(tmp_path, name, **settings)
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.close()
