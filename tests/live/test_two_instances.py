"""Two `app.py serve` processes on one PostgreSQL database, seen from outside over real HTTP.

Each test gets a fresh database on the run's throwaway PostgreSQL server (tests/pg_server.py) and
starts instances A and B on it; A's CLI provisions the Entra IdP and its key, B serves the same
tenant. What one instance writes, the other must see: uniqueness, group members, versions, sign-ins
(LISTEN/NOTIFY plus a 1 s poll) and the provisioning log. The last test stops a PostgreSQL server of
its own under a running instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import pg_server
from tests.conftest import GROUP_SCHEMA, entra_user, patch_body
from tests.live_server import Server, running, server_at

ADMIN_TOKEN = "two-instances-admin-token"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SIGN_IN_PROPAGATION = 1.0  # seconds: the auth cache's poll interval, the most a sign-in change may take


def instance(tmp_path: Path, name: str, url: str, *, provision: bool, **env: str) -> Server:
    """A server (not started) on the PostgreSQL database `url`; its SQLite path is never used."""
    return server_at(
        tmp_path / f"{name}.db",
        tmp_path / f"{name}.out",
        provision=provision,
        SCIMLET_DATABASE_URL=url,
        SCIMLET_ADMIN_TOKEN=ADMIN_TOKEN,
        **env,
    )


def tenant(server: Server, idp_id: str) -> str:
    return f"{server.base}/v1/scim/{idp_id}"


@contextlib.contextmanager
def two_instances(tmp_path: Path, url: str) -> Iterator[tuple[Server, Server]]:
    """A (provisioned by its CLI) and B on one database, both started, sharing A's IdP and key."""
    a = instance(tmp_path, "a", url, provision=True)
    b = instance(tmp_path, "b", url, provision=False)
    b.secret, b.idp_id = a.secret, a.idp_id
    b.tenant_url = tenant(b, a.idp_id)
    with running(a), running(b):
        yield a, b


def scim_client(server: Server, secret: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=tenant(server, server.idp_id),
        headers={"Authorization": f"Bearer {secret or server.secret}"},
        timeout=30,
    )


def admin_client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def failure(server: Server, response: httpx.Response) -> str:
    """What a failed assertion shows: the request, the answer, and the server's last output."""
    return (
        f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:500]}\n"
        f"server log tail:\n{server.output()[-2000:]}"
    )


async def find_user(client: httpx.AsyncClient, user_name: str) -> dict:
    response = await client.get("/Users", params={"filter": f'userName eq "{user_name}"'})
    assert response.status_code == 200, response.text
    return response.json()


# --- 1. create race ------------------------------------------------------------------------------


@pytest.mark.serial
async def test_one_user_name_raced_on_both_instances_is_created_once(tmp_path: Path, postgresql_database: str) -> None:
    spellings = ["Race.User@Example.com", "race.user@example.com", "RACE.USER@EXAMPLE.COM", "Race.user@example.COM"]
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with scim_client(a) as on_a, scim_client(b) as on_b:
            posts = [
                client.post("/Users", json=entra_user(spellings[i % len(spellings)], externalId=f"race-{side}-{i}"))
                for i in range(20)
                for side, client in (("a", on_a), ("b", on_b))
            ]
            answers = await asyncio.gather(*posts)
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [201] + [409] * 39, [r.text for r in answers if r.status_code not in (201, 409)]
            for response in answers:
                if response.status_code == 409:
                    assert response.json()["scimType"] == "uniqueness", response.text
            for client in (on_a, on_b):
                for spelling in spellings:
                    found = await find_user(client, spelling)
                    assert found["totalResults"] == 1, found


# --- 2. sign-in propagation ----------------------------------------------------------------------


async def until_status(client: httpx.AsyncClient, status: int, limit: float) -> float:
    """Seconds until GET /Users answers `status` (polled every 20 ms); fails after `limit` * 3."""
    started = time.monotonic()
    while True:
        response = await client.get("/Users", params={"count": 1})
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < limit * 3, f"still {response.status_code} after {elapsed:.2f} s: {response.text}"
        await asyncio.sleep(0.02)


@pytest.mark.serial
async def test_a_key_made_or_revoked_on_one_instance_takes_effect_on_the_other_within_a_second(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with admin_client(a) as admin:
            key = await admin.post("/v1/admin/apikeys", json={"name": "second", "users_write": True})
            assert key.status_code == 201, failure(a, key)
            idp = await admin.post("/v1/admin/idps", json={"name": "Second", "api_key": key.json()["id"]})
            assert idp.status_code == 201, failure(a, idp)
            created = time.monotonic()
            b.idp_id = idp.json()["id"]
            async with scim_client(b, key.json()["secret"]) as on_b:
                await until_status(on_b, 200, SIGN_IN_PROPAGATION)
                took = time.monotonic() - created
                assert took <= SIGN_IN_PROPAGATION, f"a new IdP and key worked on B only after {took:.2f} s"

                revoked = await admin.post(f"/v1/admin/apikeys/{key.json()['id']}/revoke")
                assert revoked.status_code == 200, failure(a, revoked)
                took = await until_status(on_b, 401, SIGN_IN_PROPAGATION)
                assert took <= SIGN_IN_PROPAGATION, f"a revoked key still signed in on B for {took:.2f} s"

        done = a.cli("apikey", "revoke", "entra")
        assert done.returncode == 0, done.stderr
        b.idp_id = a.idp_id
        async with scim_client(b) as on_b:
            took = await until_status(on_b, 401, SIGN_IN_PROPAGATION)
            assert took <= SIGN_IN_PROPAGATION, f"a key revoked by the CLI still signed in on B for {took:.2f} s"
