"""Test connection: what Entra's Test Connection button sends (docs/entra.md), sent by the server
to one of its own tenants and reported step by step, with what to fix when a step fails.

The requests go through the whole SCIM app in process (ASGI: sign-in, routing, the handlers, the
provisioning log, which records them as Test connection probes), not over the network: the server
may sit behind a proxy whose public URL it cannot reach itself, and what is tested here is what
scimlet answers, which is what Entra's verdict depends on. The admin pastes the secret token as
in Entra (scimlet keeps only its hash, so it cannot test a key by itself); it is never stored or
logged.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson
from starlette.types import ASGIApp

from scim.routes import SCIM_PREFIX
from storage import Idp, ResourceStore
from web.scim.auth import rejected

if TYPE_CHECKING:
    import httpx

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_AGENT = "scimlet Test connection"


@dataclass(frozen=True)
class Step:
    """One request of the test and what came of it."""

    name: str
    request: str  # method and path as sent (the tenant URL left out)
    expected: str
    status: int
    ms: float
    passed: bool
    detail: str  # what the server answered, in words
    fix: str  # what to do when it failed; "" when it passed


@dataclass(frozen=True)
class ConnectionReport:
    passed: bool
    verdict: str
    steps: list[Step]

    def json(self) -> dict:
        return {"passed": self.passed, "verdict": self.verdict, "steps": [asdict(step) for step in self.steps]}


class ConnectionTest:
    """Runs Test connection against the SCIM app `scim` (an ASGI app serving SCIM_PREFIX)."""

    def __init__(self, scim: ASGIApp, store: ResourceStore) -> None:
        self.scim = scim
        self.store = store

    async def run(self, idp: Idp, secret: str) -> ConnectionReport:
        import httpx  # imported here: the HTTP client costs 40 ms of every server start-up otherwise

        secret = secret.strip()
        probe = str(uuid.uuid4())
        transport = httpx.ASGITransport(app=self.scim, client=("127.0.0.1", 0))
        base = f"http://scimlet.internal{SCIM_PREFIX}{idp.id}"
        user_filter = quote(f'userName eq "{probe}"')
        group_filter = quote(f'displayName eq "{probe}"')
        async with httpx.AsyncClient(transport=transport, base_url=base, headers={"User-Agent": USER_AGENT}) as http:
            steps = [
                await self._listing(http, idp, secret, "Users, by a random userName", f"/Users?filter={user_filter}"),
                await self._listing(
                    http,
                    idp,
                    secret,
                    "Groups, by a random displayName",
                    f"/Groups?excludedAttributes=members&filter={group_filter}",
                ),
                await self._wrong_secret(http, f"/Users?filter={user_filter}"),
            ]
        passed = all(step.passed for step in steps)
        verdict = (
            "Passed: Entra's Test Connection would succeed with this tenant URL and secret token."
            if passed
            else "Failed: Entra would refuse to save these credentials; see the failed steps."
        )
        return ConnectionReport(passed, verdict, steps)

    async def _listing(self, http: httpx.AsyncClient, idp: Idp, secret: str, name: str, path: str) -> Step:
        started = time.perf_counter()
        response = await http.get(path, headers={"Authorization": f"Bearer {secret}"})
        ms = (time.perf_counter() - started) * 1000
        expected = "200 and an empty ListResponse"
        request = f"GET {path}"
        body = _json(response)
        if response.status_code == 200:
            if body.get("schemas") == [LIST_RESPONSE] and body.get("totalResults") == 0 and body.get("Resources") == []:
                return Step(name, request, expected, 200, ms, True, "200, an empty list, as Entra expects", "")
            return Step(
                name,
                request,
                expected,
                200,
                ms,
                False,
                f"200 but not an empty ListResponse (totalResults {body.get('totalResults')!r})",
                "a resource with this random name exists: run the test again",
            )
        detail = f"{response.status_code}: {body.get('detail') or response.reason_phrase}"
        if response.status_code == 401:
            fix = rejected(idp.id, self.store.sign_in_failure(idp.id, secret)).removeprefix("401: ")
        elif response.status_code == 403:
            fix = "the API key lacks a privilege this request needs: give it Users and Groups Write"
        elif response.status_code in (429, 503):
            fix = "the server cannot answer now (see /readyz): try again once it is ready"
        else:
            fix = "Entra counts any answer but 200 as a failed test: see this request's provisioning log record"
        return Step(name, request, expected, response.status_code, ms, False, detail, fix)

    async def _wrong_secret(self, http: httpx.AsyncClient, path: str) -> Step:
        started = time.perf_counter()
        response = await http.get(path, headers={"Authorization": f"Bearer wrong-{uuid.uuid4().hex}"})
        ms = (time.perf_counter() - started) * 1000
        passed = response.status_code == 401 and "bearer" in response.headers.get("www-authenticate", "").lower()
        return Step(
            "With a wrong secret token",
            f"GET {path}",
            "401 with WWW-Authenticate: Bearer",
            response.status_code,
            ms,
            passed,
            f"{response.status_code}, WWW-Authenticate {response.headers.get('www-authenticate', '(none)')}",
            "" if passed else "a wrong token must be refused with 401: report this as a scimlet bug",
        )


def _json(response: httpx.Response) -> dict:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
