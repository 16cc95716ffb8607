"""HTTP/1.1 on the wire against a real server: what scimlet's write-coalescing protocol must keep.

Each response goes out in one write (web/http_protocol.py); these tests read raw sockets so that
an interim 100 Continue, pipelined answers, Connection: close and large bodies are seen exactly as
a client sees them.
"""

from __future__ import annotations

import json
import socket

import httpx

from tests.conftest import GROUP_SCHEMA, LiveServer, entra_user


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def request_bytes(
    server: LiveServer, method: str, path: str, body: bytes = b"", length: int | None = None, **headers: str
) -> bytes:
    """A request's bytes; `length` declares a Content-Length other than the body's (one sent later)."""
    target = server.tenant_url.split(str(server.port), 1)[1] + path
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {server.secret}",
        "Content-Type: application/scim+json",
        f"Content-Length: {len(body) if length is None else length}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from the socket (bytes past it stay in `buffered` for the next call)."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-headers: {bytes(buffered)[:200]!r}"
        buffered += chunk
    head, _, _ = bytes(buffered).partition(b"\r\n\r\n")
    del buffered[: len(head) + 4]
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(buffered) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        buffered += chunk
    body = bytes(buffered[:length])
    del buffered[:length]
    return int(status_line.split(" ")[1]), headers, body


def test_expect_100_continue_gets_the_interim_answer_before_the_body_is_sent(sqlite_live_server: LiveServer) -> None:
    body = json.dumps(entra_user("continue@x")).encode()
    with connect(sqlite_live_server) as sock:
        sock.sendall(request_bytes(sqlite_live_server, "POST", "/Users", length=len(body), Expect="100-continue"))
        buffered = bytearray()
        while b"\r\n\r\n" not in buffered:
            buffered += sock.recv(65536)
        assert bytes(buffered).startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), bytes(buffered)
        del buffered[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(body)
        status, headers, answer = read_response(sock, buffered)
    assert status == 201 and json.loads(answer)["userName"] == "continue@x"
    assert headers["location"].endswith(json.loads(answer)["id"])


def test_pipelined_requests_are_answered_in_order_on_one_connection(sqlite_live_server: LiveServer) -> None:
    names = [f"pipe{i}@x" for i in range(5)]
    burst = b"".join(
        request_bytes(sqlite_live_server, "POST", "/Users", json.dumps(entra_user(name)).encode()) for name in names
    )
    burst += request_bytes(sqlite_live_server, "GET", "/Users?filter=userName+sw+%22pipe%22&sortBy=userName")
    with connect(sqlite_live_server) as sock:
        sock.sendall(burst)
        buffered = bytearray()
        created = [read_response(sock, buffered) for _ in names]
        status, _, listed = read_response(sock, buffered)
    assert [(s, json.loads(b)["userName"]) for s, _, b in created] == [(201, name) for name in names]
    assert status == 200 and [u["userName"] for u in json.loads(listed)["Resources"]] == names


def test_connection_close_gets_the_whole_answer_then_end_of_stream(sqlite_live_server: LiveServer) -> None:
    with connect(sqlite_live_server) as sock:
        sock.sendall(request_bytes(sqlite_live_server, "GET", "/ServiceProviderConfig", Connection="close"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head.lower()
    assert json.loads(body)["patch"]["supported"] is True


def test_a_204_and_a_large_answer_share_a_connection_intact(sqlite_live_server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {sqlite_live_server.secret}"}
    with httpx.Client(base_url=sqlite_live_server.tenant_url, headers=auth, timeout=30) as http:
        ids = [
            http.post("/Users", json=entra_user(f"wide{i}@x", displayName="w" * 500)).json()["id"] for i in range(300)
        ]
        group = http.post(
            "/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Wide", "members": [{"value": i} for i in ids]}
        ).json()
    with connect(sqlite_live_server) as sock:
        sock.sendall(
            request_bytes(
                sqlite_live_server,
                "PATCH",
                f"/Groups/{group['id']}",
                json.dumps(
                    {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "displayName", "value": "Wider"}],
                    }
                ).encode(),
            )
            + request_bytes(sqlite_live_server, "GET", "/Users?count=300")
        )
        buffered = bytearray()
        patched, _, empty = read_response(sock, buffered)
        status, _, listed = read_response(sock, buffered)
    assert patched == 204 and empty == b""
    page = json.loads(listed)
    assert len(listed) > 64 * 1024 and status == 200
    assert page["totalResults"] == 300 and sorted(u["id"] for u in page["Resources"]) == sorted(ids)
