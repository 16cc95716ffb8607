"""SCIM events (RFC 9967) from a real `app.py serve` to real HTTP receivers on loopback: the
`events-listen` receiver (which verifies each SET's signature and claims), and receivers of the
tests' own that answer 400, 500 or never. Each test runs once per backend."""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import GROUP_SCHEMA, entra_user, patch_body
from tests.live_server import ROOT, Server, free_port, running, server_at

ADMIN_TOKEN = "events-admin-token-0123456789"
PREFIX = "urn:ietf:params:scim:event:prov:"


def events_server(tmp_path: Path, database_url: Path | str, **env: str) -> Server:
    return server_at(
        database_url,
        tmp_path / "serve.out",
        SCIMLET_ADMIN_TOKEN=ADMIN_TOKEN,
        SCIMLET_EVENTS_SECRET_KEY="events-test-key",
        **env,
    )


def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """A SQLite file's path, or a new PostgreSQL database's URL."""
    if backend == "postgresql":
        return request.getfixturevalue("postgresql_database")
    return tmp_path / "events.db"


class Listener:
    """`python app.py events-listen --json` on a port: its verified SETs, one JSON object per line."""

    def __init__(self, port: int, output: Path, *args: str) -> None:
        self.port, self.output, self.args = port, output, args
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.output, "a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "app.py", "events-listen", "--port", str(self.port), "--json", *self.args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return
            time.sleep(0.05)
        raise RuntimeError("events-listen did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def sets(self) -> list[dict]:
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line.strip()]

    def wait_for(self, done: Callable[[list[dict]], bool], timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sets = self.sets()
            if done(sets):
                return sets
            time.sleep(0.1)
        raise AssertionError(f"events not received in {timeout} s; got {self.sets()}")


@contextlib.contextmanager
def listening(port: int, output: Path, *args: str) -> Iterator[Listener]:
    listener = Listener(port, output, *args)
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def subscribe(server: Server, *args: str) -> dict:
    return server.cli_json("events", "subscribe", "--idp", server.idp_id, *args)


def event_of(claims: dict) -> tuple[str, str]:
    (uri, _), *_ = claims["events"].items()
    return uri.removeprefix(PREFIX), claims["sub_id"]["uri"]


def create_users(scim: httpx.Client, count: int, prefix: str) -> list[str]:
    ids = []
    for n in range(count):
        answer = scim.post("/Users", json=entra_user(f"{prefix}{n}@example.com"))
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_entra_cycle_gives_exactly_its_events_signed_and_in_order(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = events_server(tmp_path, database(backend, tmp_path, request))
    port = free_port()
    subscription = subscribe(server, "--url", f"http://127.0.0.1:{port}/")
    assert subscription["state"] == "active" and subscription["secret"]
    with (
        running(server),
        listening(
            port, tmp_path / "sets.jsonl", "--secret", subscription["secret"], "--audience", f"http://127.0.0.1:{port}/"
        ) as listener,
        httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim,
    ):
        user = scim.post("/Users", json=entra_user("ada@example.com", externalId="ada")).json()["id"]
        # Entra's two PATCH dialects: the legacy one ("Replace", a string boolean) and aadOptscim062020.
        legacy = patch_body({"op": "Replace", "path": "displayName", "value": "Ada L."})
        assert scim.patch(f"/Users/{user}", json=legacy).status_code in (200, 204)
        disable = patch_body({"op": "replace", "path": "active", "value": False})
        assert scim.patch(f"/Users/{user}", json=disable).status_code in (200, 204)
        unchanged = patch_body({"op": "replace", "path": "active", "value": False})
        assert scim.patch(f"/Users/{user}", json=unchanged).status_code in (200, 204)  # no change: no event
        group = scim.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Pilots"}).json()["id"]
        add = patch_body({"op": "add", "path": "members", "value": [{"value": user}]})
        assert scim.patch(f"/Groups/{group}", json=add).status_code == 204
        remove = patch_body({"op": "remove", "path": f'members[value eq "{user}"]'})
        assert scim.patch(f"/Groups/{group}", json=remove).status_code == 204
        assert scim.delete(f"/Users/{user}").status_code == 204
        assert scim.delete(f"/Groups/{group}").status_code == 204
        sets = listener.wait_for(lambda sets: len(sets) >= 9)
        time.sleep(1.5)  # nothing more comes
        sets = listener.sets()
    users, groups = f"/Users/{user}", f"/Groups/{group}"
    assert [event_of(s) for s in sets] == [
        ("create:full", users),
        ("patch:full", users),
        ("patch:full", users),
        ("deactivate", users),
        ("create:full", groups),
        ("patch:full", groups),
        ("patch:full", groups),
        ("delete", users),
        ("delete", groups),
    ]
    for claims in sets:
        assert claims["iss"] == server.tenant_url
        assert claims["aud"] == f"http://127.0.0.1:{port}/"
        assert claims["jti"].startswith(subscription["id"] + ".")
        assert isinstance(claims["iat"], int) and claims["txn"]
    assert len({s["jti"] for s in sets}) == 9
    created = sets[0]["events"][PREFIX + "create:full"]
    assert created["data"]["userName"] == "ada@example.com" and created["data"]["id"] == user
    assert created["version"] == 'W/"1"' and sets[0]["sub_id"]["externalId"] == "ada"
    # The patch and the deactivate it caused are one SCIM request: one txn.
    assert sets[2]["txn"] == sets[3]["txn"] != sets[1]["txn"]
    assert sets[2]["events"][PREFIX + "patch:full"]["data"]["Operations"] == disable["Operations"]
    member_add = sets[5]["events"][PREFIX + "patch:full"]["data"]["Operations"]
    assert member_add == [{"op": "add", "path": "members", "value": [{"value": user}]}]


def test_notice_form_and_a_chosen_event_kind_only(tmp_path: Path) -> None:
    server = events_server(tmp_path, tmp_path / "notice.db")
    port = free_port()
    subscription = subscribe(
        server, "--url", f"http://127.0.0.1:{port}/hook", "--form", "notice", "--events", "patch", "members"
    )
    with (
        running(server),
        listening(port, tmp_path / "sets.jsonl", "--secret", subscription["secret"]) as listener,
        httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim,
    ):
        user = scim.post("/Users", json=entra_user("bo@example.com")).json()["id"]
        scim.patch(f"/Users/{user}", json=patch_body({"op": "replace", "path": "title", "value": "Pilot"}))
        group = scim.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Crew"}).json()["id"]
        scim.patch(f"/Groups/{group}", json=patch_body({"op": "add", "path": "members", "value": [{"value": user}]}))
        sets = listener.wait_for(lambda sets: len(sets) >= 2)
        time.sleep(1)
        sets = listener.sets()
    assert [event_of(s) for s in sets] == [("patch:notice", f"/Users/{user}"), ("patch:notice", f"/Groups/{group}")]
    assert sets[0]["events"][PREFIX + "patch:notice"] == {"attributes": ["title"], "version": 'W/"2"'}
    assert sets[1]["events"][PREFIX + "patch:notice"]["attributes"] == ["members"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_receiver_down_then_up_and_a_sigkill_lose_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = events_server(tmp_path, database(backend, tmp_path, request), SCIMLET_EVENTS_RETRY_MAX_DELAY="1")
    port = free_port()
    subscription = subscribe(server, "--url", f"http://127.0.0.1:{port}/")
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
        first = create_users(scim, 15, "down")
        time.sleep(2)  # the receiver is down: attempts fail and back off
        listed = server.cli_json("events", "list")[0]
        assert listed["pending"] == 15 and listed["delivered"] == 0 and "cannot reach" in listed["last_error"]
        second = create_users(scim, 10, "killed")
        server.stop(signal.SIGKILL)
    with running(server), listening(port, tmp_path / "sets.jsonl", "--secret", subscription["secret"]) as listener:
        sets = listener.wait_for(lambda sets: len({s["jti"] for s in sets}) >= 25)
    created = [s["sub_id"]["uri"].removeprefix("/Users/") for s in sets if event_of(s)[0] == "create:full"]
    assert set(created) == set(first + second)
    # At least once: a repeat carries the jti of the first delivery, and the order is commit order.
    by_jti = {s["jti"]: s["sub_id"]["uri"] for s in sets}
    assert len(by_jti) == 25
    assert list(dict.fromkeys(created)) == first + second
    status = server.cli_json("events", "list")[0]
    assert status["delivered"] >= 25 and status["pending"] == 0


class Receiver(http.server.ThreadingHTTPServer):
    """A receiver of the test's own: `answer(body)` gives (status, body) for each SET; every SET is kept."""

    daemon_threads = True

    def __init__(self, answer: Callable[[bytes], tuple[int, bytes]]) -> None:
        self.received: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(body)
                status, reply = answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_receivers_that_refuse_fail_or_hang(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    refusing = Receiver(lambda body: (400, b'{"err": "invalid_audience", "description": "not ours"}'))
    failing_now = {"on": True}
    failing = Receiver(lambda body: (500, b"{}") if failing_now["on"] else (202, b""))
    hang = threading.Event()

    def hanging_answer(body: bytes) -> tuple[int, bytes]:
        hang.wait(30)
        return 202, b""

    hanging = Receiver(hanging_answer)
    server = events_server(
        tmp_path,
        database(backend, tmp_path, request),
        SCIMLET_EVENTS_RETRY_LIMIT="3",
        SCIMLET_EVENTS_RETRY_MAX_DELAY="1",
        SCIMLET_EVENTS_DELIVERY_TIMEOUT="1",
    )
    to_refusing = subscribe(server, "--url", refusing.url)["id"]
    to_failing = subscribe(server, "--url", failing.url)["id"]
    to_hanging = subscribe(server, "--url", hanging.url)["id"]
    try:
        with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
            started = time.monotonic()
            ids = create_users(scim, 5, "refused")
            assert time.monotonic() - started < 5  # SCIM does not wait for any receiver

            def state(subscription_id: str) -> dict:
                return next(s for s in server.cli_json("events", "list") if s["id"] == subscription_id)

            wait_until(lambda: state(to_refusing)["rejected"] == 5)
            refused = state(to_refusing)
            assert refused["last_error"] == "invalid_audience: not ours" and refused["pending"] == 0
            assert len(refusing.received) == 5  # a 400 is never retried
            wait_until(lambda: state(to_failing)["state"] == "failed", timeout=30)
            assert len(failing.received) >= 2 and state(to_failing)["last_error"] == "the receiver answered 500"
            wait_until(lambda: "no answer within 1 s" in (state(to_hanging)["last_error"] or ""))
            assert scim.get("/Users", params={"count": 1}).status_code == 200
            failing_now["on"] = False
            again = server.cli_json("events", "redeliver", to_failing)
            assert again["state"] == "active"
            wait_until(lambda: state(to_failing)["delivered"] == 5)
            delivered = {jwt.decode(b, options={"verify_signature": False})["sub_id"]["uri"] for b in failing.received}
            assert delivered == {f"/Users/{i}" for i in ids}
    finally:
        hang.set()
        for receiver in (refusing, failing, hanging):
            receiver.shutdown()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_poll_delivery_fetches_and_acknowledges(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    server = events_server(tmp_path, database(backend, tmp_path, request))
    subscription = subscribe(server, "--poll")
    poll_url, secret = subscription["poll_url"], subscription["secret"]
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
        ids = create_users(scim, 3, "polled")
        with httpx.Client(timeout=20, headers={"Authorization": f"Bearer {secret}"}) as receiver:
            assert httpx.post(poll_url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
            bad = receiver.post(poll_url, json={"maxEvents": -1})
            assert bad.status_code == 400 and bad.json()["err"] == "invalid_request"
            huge = receiver.post(poll_url, content=b'{"ack": [' + b'"x",' * 300_000 + b'"x"]}')
            assert huge.status_code == 413 and huge.json()["err"] == "invalid_request"
            first = receiver.post(poll_url, json={"maxEvents": 2, "returnImmediately": True}).json()
            assert len(first["sets"]) == 2 and first["moreAvailable"] is True
            claims = {
                jti: jwt.decode(token, secret, algorithms=["HS256"], audience=server.tenant_url)
                for jti, token in first["sets"].items()
            }
            assert [c["sub_id"]["uri"] for c in claims.values()] == [f"/Users/{i}" for i in ids[:2]]
            # Acknowledge them and fetch in one request: the third comes, the first two never again.
            second = receiver.post(poll_url, json={"ack": list(first["sets"]), "maxEvents": 10}).json()
            assert len(second["sets"]) == 1 and second["moreAvailable"] is False
            (third_jti,) = second["sets"]
            # A refused SET (setErrs) is not sent again either.
            errors = {third_jti: {"err": "invalid_request", "description": "cannot use it"}}
            third = receiver.post(poll_url, json={"setErrs": errors, "returnImmediately": True}).json()
            assert third == {"sets": {}, "moreAvailable": False}
            # Waiting (returnImmediately false): a create meanwhile comes in the answer.
            late = threading.Timer(0.5, lambda: create_users(scim, 1, "late"))
            late.start()
            waited = receiver.post(poll_url, json={"returnImmediately": False}).json()
            late.join()  # its answer may come after the poll's: the client stays open until then
            assert len(waited["sets"]) == 1
            # Acks sent again (RFC 8936 lets an unsure receiver) count once; a jti of no event is ignored.
            again = [*first["sets"], f"{subscription['id']}.999999999", "not-a-jti"]
            assert receiver.post(poll_url, json={"ack": again, "maxEvents": 0}).json() == {
                "sets": {},
                "moreAvailable": False,
            }
    status = next(iter(server.cli_json("events", "list")))
    assert status["delivered"] == 2 and status["rejected"] == 1


def test_rs256_and_es256_sets_verify_with_the_jwks_through_a_key_rotation(tmp_path: Path) -> None:
    server = events_server(tmp_path, tmp_path / "rs.db")
    port = free_port()
    subscribe(server, "--url", f"http://127.0.0.1:{port}/", "--alg", "RS256", "--events", "create")
    keeping = Receiver(lambda body: (202, b""))
    subscribe(server, "--url", keeping.url, "--alg", "ES256", "--events", "create")
    try:
        with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
            jwks_url = f"{server.base}/v1/events/jwks.json"
            with listening(port, tmp_path / "sets.jsonl", "--jwks", jwks_url) as listener:
                create_users(scim, 1, "rs")
                assert event_of(listener.wait_for(lambda sets: len(sets) == 1)[0])[0] == "create:full"
            wait_until(lambda: len(keeping.received) == 1)
            before = {k["kid"] for k in httpx.get(jwks_url).json()["keys"]}
            assert {k.split("-")[0] for k in before} == {"rs256", "es256"}
            rotated = {k["kid"] for k in server.cli_json("events", "rotate-keys")}
            assert before < rotated  # the old keys stay in the JWKS during the overlap
            time.sleep(6)  # the server reads the rotated keys within SigningKeys.CACHE_SECONDS
            create_users(scim, 1, "es-after")
            wait_until(lambda: len(keeping.received) == 2)
            jwks = jwt.PyJWKClient(jwks_url)
            kids = []
            for token in keeping.received:
                key = jwks.get_signing_key_from_jwt(token.decode())
                claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=keeping.url)
                assert claims["iss"] == server.tenant_url
                kids.append(jwt.get_unverified_header(token.decode())["kid"])
            assert kids[0] in before and kids[1] in rotated - before
    finally:
        keeping.shutdown()
