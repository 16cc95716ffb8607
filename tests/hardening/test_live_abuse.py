"""Abuse against the real server process: slow clients, secrets in logs, revocation while serving."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.conftest import PATCH_SCHEMA, entra_user


def trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.is_set():
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


def read_response(sock: socket.socket) -> bytes:
    """Read one whole HTTP response: headers and body may arrive in separate segments."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.serial  # measures how long the other clients wait
def test_slow_senders_starve_no_one_and_a_trickled_body_times_out(server_factory) -> None:
    server = server_factory("slow", server_body_timeout=2)
    path = server.tenant_url.removeprefix(server.base)
    stop = threading.Event()
    body = b'{"userName": "trickle@x", "name": {"givenName": "a", "familyName": "b"}}'
    slow_body = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow_body.sendall(
        f"POST {path}/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.secret}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    slow_headers = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    threads = [
        threading.Thread(target=trickle, args=(slow_body, body, 0.1, stop)),
        threading.Thread(
            target=trickle,
            args=(
                slow_headers,
                f"GET {path}/Users HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Slow: 1\r\n" * 100,
                0.05,
                stop,
            ),
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        latencies = []
        with httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
            for i in range(30):
                started = time.monotonic()
                response = http.post("/Users", json=entra_user(f"fast{i}@x")) if i % 2 else http.get("/Users")
                latencies.append(time.monotonic() - started)
                assert response.status_code in (200, 201)
        # The two slow connections hold only themselves: had they blocked the server, requests would
        # have waited for the slow body's 2 s timeout. (A bound on the timeout, not a speed target.)
        assert max(latencies) < 2, latencies
        slow_body.settimeout(10)
        answer = read_response(slow_body)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive within 2 seconds" in answer and b"application/scim+json" in answer
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        slow_body.close()
        slow_headers.close()
    assert server.query("SELECT count(*) FROM users WHERE user_name = 'trickle@x'") == [(0,)]


def test_no_secret_reaches_the_provisioning_log_or_the_server_output(server_factory) -> None:
    server = server_factory("secrets", logging_level="debug")
    secrets = [
        "Hunter2-create-secret",
        "Patch-path-secret-42",
        "Pathless-secret-7",
        "987654321987",
        "wrong-token-leak-check",
        "Search-token-secret",
        server.secret,
    ]
    with httpx.Client(base_url=server.tenant_url, headers=server.auth) as http:
        created = http.post("/Users", json=entra_user("pw@x", password="Hunter2-create-secret"))
        assert created.status_code == 201 and "password" not in created.json()
        url = f"/Users/{created.json()['id']}"
        for operation in (
            {"op": "replace", "path": "password", "value": "Patch-path-secret-42"},
            {"op": "replace", "value": {"password": "Pathless-secret-7"}},
        ):
            response = http.patch(url, json={"schemas": [PATCH_SCHEMA], "Operations": [operation]})
            assert response.status_code == 200 and "password" not in response.json()
        wrong_type = http.post("/Users", json=entra_user("pw2@x", password=987654321987))
        assert wrong_type.status_code == 400 and "987654321987" not in wrong_type.text
        assert (
            http.post(
                "/Users/.search", json={"filter": 'userName eq "pw@x"', "token": "Search-token-secret"}
            ).status_code
            == 200
        )
        assert http.get("/Users", headers={"Authorization": "Bearer wrong-token-leak-check"}).status_code == 401
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.query("SELECT count(*) FROM provisioning_log")[0][0] < 6:
        time.sleep(0.1)
    rows = server.query("SELECT * FROM provisioning_log")
    assert len(rows) >= 6
    logged = "\n".join(repr(row) for row in rows)
    assert "[redacted]" in logged  # the bodies were kept, with the secrets taken out
    server.stop()
    output = server.output()
    for secret in secrets:
        assert secret not in logged, secret
        assert secret not in output, secret


def test_a_key_revoked_with_the_cli_stops_working_on_the_next_request(server_factory) -> None:
    server = server_factory("revoke")
    with httpx.Client(base_url=server.tenant_url, headers=server.auth) as http:
        assert http.get("/Users").status_code == 200
        result = server.cli("apikey", "revoke", "entra")
        assert result.returncode == 0, result.stderr
        response = http.get("/Users")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="scimlet"'
        assert http.post("/Users", json=entra_user("after.revoke@x")).status_code == 401
    assert server.query("SELECT count(*) FROM users") == [(0,)]
