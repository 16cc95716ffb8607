"""The baseline for `make bench`: scim2-server (PyPI) served by uvicorn like scimlet.

scim2-server ships a native ASGI application (`scim2_server.applications.asgi.ASGIApplication`)
over an asynchronous storage; its only bundled storage keeps resources in memory
(`AsyncInMemoryStorage`, which indexes unique values and, after the first such filter,
`attr eq "value"` lookups). No WSGI bridge is involved.

In front of it, one small ASGI middleware does what scimlet's router does before the SCIM
code runs: it mounts the app under /v1/scim/<idp> and checks `Authorization: Bearer <token>`.

Run from bench/ in the baseline venv (never the project venv: its deps may conflict):

    BENCH_IDP=... BENCH_TOKEN=... .venv-baseline/bin/python -m uvicorn baseline_app:app \
        --host 127.0.0.1 --port 8001 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import json
import os

from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.utils import load_default_provider

IDP = os.environ.get("BENCH_IDP", "bench")
TOKEN = os.environ.get("BENCH_TOKEN", "bench-token")

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def _error(status: int, detail: str) -> bytes:
    return json.dumps({"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}).encode()


class MountWithBearer:
    """Serve `app` under `prefix`, for requests carrying `Authorization: Bearer <token>` only."""

    def __init__(self, app, prefix: str, token: str):
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.expected = b"Bearer " + token.encode()

    async def _reply(self, send, status: int, detail: str, extra=()):
        body = _error(status, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/scim+json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self._reply(send, 404, "Unknown tenant")
            return
        for name, value in scope["headers"]:
            if name == b"authorization":
                if value == self.expected:
                    break
                await self._reply(send, 401, "Invalid bearer token", [(b"www-authenticate", b'Bearer realm="scim"')])
                return
        else:
            await self._reply(send, 401, "Missing bearer token", [(b"www-authenticate", b'Bearer realm="scim"')])
            return
        # ASGI: `path` keeps the full path and `root_path` names the mount point;
        # scim2-server's ASGIApplication strips root_path itself.
        scope = dict(scope)
        scope["root_path"] = scope.get("root_path", "") + self.prefix
        await self.app(scope, receive, send)


scim_app = ASGIApplication(AsyncInMemoryStorage(), load_default_provider())
app = MountWithBearer(scim_app, f"/v1/scim/{IDP}", TOKEN)
