"""The admin side: the console (/admin), the admin JSON API (/v1/admin) and the service both share
with the command line.
"""

from __future__ import annotations

from starlette.routing import Mount

from web.admin.api import AdminApi
from web.admin.auth import AdminAuth
from web.admin.bodies import AdminBodies
from web.admin.connection_test import ConnectionTest
from web.admin.console import Console
from web.admin.service import AdminService


def admin_mounts(service: AdminService, connection_test: ConnectionTest) -> list[Mount]:
    """The console and the admin API, sharing one sign-in state (sessions, throttle) and one body
    reader; `connection_test` runs Test connection against the server's own SCIM app."""
    auth = AdminAuth(service)
    bodies = AdminBodies(service.settings.server.body_timeout)
    console = Console(service, auth, bodies, connection_test).app()
    console.state.auth = auth  # reachable for operators' tooling and tests (e.g. the sign-in throttle)
    return [
        Mount("/admin", app=console),
        Mount("/v1/admin", app=AdminApi(service, auth, bodies, connection_test).app()),
    ]
