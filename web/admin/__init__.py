"""The admin side: the console (/admin), the admin JSON API (/v1/admin) and the service both share
with the command line.
"""

from __future__ import annotations

from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from web.admin.auth import AdminAuth
from web.admin.bodies import AdminBodies
from web.admin.connection_test import ConnectionTest
from web.admin.service import AdminService


class AdminApps:
    """The console and the admin API, sharing one sign-in state (sessions, throttle) and one body
    reader; `connection_test` runs Test connection against the server's own SCIM app.

    Each app is built on its first request: their modules and Jinja2 cost about 60 ms of every
    start-up (an eighth of it), which a server that only ever answers SCIM would pay for nothing."""

    def __init__(self, service: AdminService, connection_test: ConnectionTest) -> None:
        self.service = service
        self.connection_test = connection_test
        self.auth = AdminAuth(service)  # reachable for operators' tooling and tests (the sign-in throttle)
        self.bodies = AdminBodies(service.settings.server.body_timeout)
        self._console: ASGIApp | None = None
        self._api: ASGIApp | None = None

    def mounts(self) -> list[Mount]:
        return [Mount("/admin", app=self.console), Mount("/v1/admin", app=self.api)]

    async def console(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._console is None:
            from web.admin.console import Console

            self._console = Console(self.service, self.auth, self.bodies, self.connection_test).app()
        await self._console(scope, receive, send)

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._api is None:
            from web.admin.api import AdminApi

            self._api = AdminApi(self.service, self.auth, self.bodies, self.connection_test).app()
        await self._api(scope, receive, send)
