"""Two `app.py serve` processes on one PostgreSQL database, seen from outside over real HTTP.

Each test gets a fresh database on the run's throwaway PostgreSQL server (tests/pg_server.py) and
starts instances A and B on it; A's CLI provisions the Entra IdP and its key, B serves the same
tenant. What one instance writes, the other must see: uniqueness, group members, versions, sign-ins
(LISTEN/NOTIFY plus a 1 s poll) and the provisioning log. One test stops a PostgreSQL server of its
own under a running instance; another ends the instances' connections with pg_terminate_backend.
docs/deploy.md ("Two instances on PostgreSQL") states what these tests show.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Iterator
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


# --- 3. member PATCH race ------------------------------------------------------------------------


@pytest.mark.serial
async def test_members_added_concurrently_through_both_instances_are_all_kept(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with scim_client(a) as on_a, scim_client(b) as on_b:
            users = await asyncio.gather(*(on_a.post("/Users", json=entra_user(f"member{i}@x")) for i in range(40)))
            assert all(u.status_code == 201 for u in users), [u.text for u in users if u.status_code != 201]
            user_ids = {u.json()["id"] for u in users}
            group = await on_a.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Raced"})
            assert group.status_code == 201, failure(a, group)
            path = f"/Groups/{group.json()['id']}"

            adds = [
                (on_a if i % 2 else on_b).patch(
                    path, json=patch_body({"op": "add", "path": "members", "value": [{"value": user_id}]})
                )
                for i, user_id in enumerate(sorted(user_ids))
            ]
            answers = await asyncio.gather(*adds)
            assert all(r.status_code in (200, 204) for r in answers), [
                f"{r.status_code} {r.text}" for r in answers if r.status_code not in (200, 204)
            ]
            for client in (on_a, on_b):
                after = await client.get(path)
                assert after.status_code == 200, after.text
                assert {m["value"] for m in after.json()["members"]} == user_ids
                assert after.json()["meta"]["version"] != group.json()["meta"]["version"]


# --- 4. If-Match across instances ----------------------------------------------------------------


async def test_an_etag_read_on_one_instance_is_stale_after_a_change_on_the_other(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with scim_client(a) as on_a, scim_client(b) as on_b:
            created = await on_a.post("/Users", json=entra_user("etag@x"))
            assert created.status_code == 201, failure(a, created)
            path = f"/Users/{created.json()['id']}"
            read = await on_a.get(path)
            old_etag = read.headers["etag"]

            changed = await on_b.patch(
                path,
                json=patch_body({"op": "replace", "path": "displayName", "value": "Changed on B"}),
                headers={"If-Match": old_etag},
            )
            assert changed.status_code == 200, failure(b, changed)
            new_etag = changed.headers["etag"]
            assert new_etag != old_etag

            stale = await on_a.patch(
                path,
                json=patch_body({"op": "replace", "path": "displayName", "value": "Changed on A"}),
                headers={"If-Match": old_etag},
            )
            assert stale.status_code == 412, failure(a, stale)
            assert ERROR_SCHEMA in stale.json()["schemas"]
            for client in (on_a, on_b):
                now = await client.get(path)
                assert now.json()["displayName"] == "Changed on B"
                assert now.headers["etag"] == new_etag


# --- 5. provisioning log -------------------------------------------------------------------------


async def logged_names(server: Server, expected: set[str], timeout: float = 10) -> set[str]:
    """The resource names in the provisioning log read from `server`, once they hold `expected`
    (the log is appended in batches) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    async with admin_client(server) as admin:
        while True:
            response = await admin.get("/v1/admin/logs", params={"operation": "Create User", "count": 100})
            assert response.status_code == 200, failure(server, response)
            names = {r["resource_name"] for r in response.json()["Resources"]}
            if expected <= names or time.monotonic() > deadline:
                return names
            await asyncio.sleep(0.1)


async def test_the_provisioning_log_read_from_either_instance_shows_both_instances_requests(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with scim_client(a) as on_a, scim_client(b) as on_b:
            assert (await on_a.post("/Users", json=entra_user("logged-on-a@x"))).status_code == 201
            assert (await on_b.post("/Users", json=entra_user("logged-on-b@x"))).status_code == 201
        expected = {"logged-on-a@x", "logged-on-b@x"}
        for server in (a, b):
            assert expected <= await logged_names(server, expected)


# --- 6. SIGKILL under load -----------------------------------------------------------------------


@pytest.mark.serial
async def test_an_instance_killed_under_load_loses_no_acknowledged_create_and_comes_back(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        created: dict[str, str] = {}  # userName -> id, for every 201
        b_errors: list[str] = []
        made_by_b_after_kill: list[str] = []  # ids of creates B was sent after A was killed
        killed, stop = asyncio.Event(), asyncio.Event()

        async def load(client: httpx.AsyncClient, side: str, worker: int) -> None:
            n = 0
            while not stop.is_set():
                name = f"load-{side}{worker}-{n}@x"
                n += 1
                after_kill = killed.is_set()
                try:
                    response = await client.post("/Users", json=entra_user(name))
                except httpx.TransportError:
                    if side == "b":
                        raise
                    await asyncio.sleep(0.05)  # A is down: its clients only see refused connections
                    continue
                if response.status_code == 201:
                    created[name] = response.json()["id"]
                    if side == "b" and after_kill:
                        made_by_b_after_kill.append(created[name])
                elif side == "b":
                    b_errors.append(f"{response.status_code} {response.text[:300]}")

        async with scim_client(a) as on_a, scim_client(b) as on_b:
            workers = [
                asyncio.create_task(load(client, side, w))
                for side, client in (("a", on_a), ("b", on_b))
                for w in range(4)
            ]
            await asyncio.sleep(1.5)
            assert any(name.startswith("load-a") for name in created), "A made no user before it was killed"
            assert a.stop(signal.SIGKILL) == -signal.SIGKILL
            killed.set()
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*workers)
            assert made_by_b_after_kill, "B made no user after A was killed"
            assert not b_errors, f"{b_errors[:5]}\nB's log tail:\n{b.output()[-2000:]}"

            for name, user_id in created.items():
                got = await on_b.get(f"/Users/{user_id}")
                assert got.status_code == 200 and got.json()["userName"] == name, failure(b, got)

            a.start()
            async with scim_client(a) as restarted:
                found = await restarted.get("/Users", params={"filter": 'userName sw "load-"', "count": 1})
                assert found.status_code == 200, failure(a, found)
                assert found.json()["totalResults"] >= len(created)
                made_on_b = await restarted.get(f"/Users/{made_by_b_after_kill[-1]}")
                assert made_on_b.status_code == 200, failure(a, made_on_b)
                assert (await restarted.post("/Users", json=entra_user("after-restart@x"))).status_code == 201


# --- 7. database loss and recovery ---------------------------------------------------------------


def assert_unavailable(server: Server, response: httpx.Response, took: float, limit: float) -> None:
    assert response.status_code == 503, failure(server, response)
    assert int(response.headers["retry-after"]) >= 1, response.headers
    body = response.json()
    assert ERROR_SCHEMA in body["schemas"] and body["status"] == "503", body
    assert took < limit, f"{response.request.method} {response.request.url} took {took:.1f} s"


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


@pytest.mark.serial
async def test_scim_answers_503_while_postgresql_is_away_and_recovers_without_a_restart(tmp_path: Path) -> None:
    bin_dir = pg_server.binaries()
    if bin_dir is None:
        pytest.skip(pg_server.missing_reason())
    database = pg_server.PostgresServer(bin_dir)
    try:
        url = pg_server.create_database(database.start())
        server = instance(
            tmp_path,
            "alone",
            url,
            provision=True,
            SCIMLET_POSTGRESQL_CONNECT_TIMEOUT="2",
            SCIMLET_POSTGRESQL_RETRY_AFTER="3",
        )
        with running(server):
            async with scim_client(server) as scim, httpx.AsyncClient(base_url=server.base, timeout=30) as plain:
                assert (await scim.post("/Users", json=entra_user("before@x"))).status_code == 201
                assert (await plain.get("/readyz")).status_code == 200

                database.halt()
                limit = 5.0
                for _ in range(3):
                    response, took = await timed(scim.get("/Users"))
                    assert_unavailable(server, response, took, limit)
                    assert response.headers["retry-after"] == "3"
                    response, took = await timed(scim.post("/Users", json=entra_user("during@x")))
                    assert_unavailable(server, response, took, limit)
                ready, took = await timed(plain.get("/readyz"))
                assert ready.status_code == 503 and ready.json()["status"] == "unavailable", ready.text
                assert took < limit

                database.resume()
                deadline = time.monotonic() + 15
                while (response := await scim.post("/Users", json=entra_user("after@x"))).status_code != 201:
                    assert response.status_code == 503, failure(server, response)
                    assert time.monotonic() < deadline, failure(server, response)
                    await asyncio.sleep(0.2)
                found = await find_user(scim, "before@x")
                assert found["totalResults"] == 1
                assert (await find_user(scim, "during@x"))["totalResults"] == 0
                assert (await plain.get("/readyz")).status_code == 200

                # The sign-ins' listener lost its connection with the database: it is back too.
                done = server.cli("apikey", "revoke", "entra")
                assert done.returncode == 0, done.stderr
                took = await until_status(scim, 401, SIGN_IN_PROPAGATION)
                assert took <= SIGN_IN_PROPAGATION, f"a key revoked after the outage still signed in for {took:.2f} s"
    finally:
        database.stop()


def end_scimlet_connections(url: str) -> int:
    """pg_terminate_backend for every scimlet connection to the database `url` names; how many."""
    database = url.rsplit("/", 1)[1]
    # In the select list, not the WHERE clause: only the rows the WHERE clause keeps are ended.
    ended = pg_server.psql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND application_name = 'scimlet'",
    )
    return ended.split().count("t")


@pytest.mark.serial
async def test_connections_ended_by_postgresql_are_replaced_on_both_instances(
    tmp_path: Path, postgresql_database: str
) -> None:
    with two_instances(tmp_path, postgresql_database) as (a, b):
        async with scim_client(a) as on_a, scim_client(b) as on_b:
            instances = ((a, on_a), (b, on_b))
            answers: list[tuple[Server, httpx.Response]] = []
            for round_ in range(10):
                for _, client in instances:
                    assert (await client.get("/Users", params={"count": 1})).status_code == 200
                assert end_scimlet_connections(postgresql_database) >= 4  # each pool and sign-ins listener
                for server, client in instances:
                    posts = [client.post("/Users", json=entra_user(f"r{round_}-{server.port}-{i}@x")) for i in range(5)]
                    answers += [(server, response) for response in await asyncio.gather(*posts)]
                    deadline = time.monotonic() + 5
                    while (response := await client.get("/Users", params={"count": 1})).status_code != 200:
                        answers.append((server, response))
                        assert time.monotonic() < deadline, failure(server, response)
                        await asyncio.sleep(0.1)
            # The database never went away: a request may be told to retry (503), never a 500.
            for server, response in answers:
                assert response.status_code in (201, 503), failure(server, response)
                if response.status_code == 503:
                    assert "retry-after" in response.headers, failure(server, response)

            async with admin_client(a) as admin:
                revoked = await admin.post("/v1/admin/apikeys/entra/revoke")
                assert revoked.status_code == 200, failure(a, revoked)
            took = await until_status(on_b, 401, SIGN_IN_PROPAGATION)
            assert took <= SIGN_IN_PROPAGATION, f"a key revoked after the reconnection signed in on B for {took:.2f} s"


def test_backup_refuses_a_postgresql_database_and_names_pg_dump(tmp_path: Path, postgresql_database: str) -> None:
    server = instance(tmp_path, "backup", postgresql_database, provision=True)
    done = server.cli("backup", str(tmp_path / "copy.db"))
    assert done.returncode != 0
    assert "pg_dump --format=custom" in done.stderr, done.stderr
    assert not (tmp_path / "copy.db").exists()
