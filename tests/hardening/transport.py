"""Transport-level attacks on a live server, shared by the hardening tests (small sizes) and the stress
runs (full sizes): each drives one class well past its limit and leaves the judging to the caller,
which reads the server's resident memory from /proc."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ADMIN_PASSWORD = "correct horse battery staple"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS), in MiB."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB, as the kernel keeps it."""
    return _status_mib(pid, "VmHWM")


def _status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def warmed(server) -> float:
    """The server's RSS once it has answered a few ordinary requests (its steady start)."""
    with httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as http:
        for _ in range(20):
            assert http.get("/Users", params={"count": 1}).status_code == 200
    return rss_mib(server.process.pid)


def read_only_tenant(server) -> tuple[str, str]:
    """A second IdP on a not yet started server, with a key that has no write privilege: its
    tenant URL and secret."""
    key = json.loads(server.cli("apikey", "create", "--name", "reader", "--json").stdout)
    idp = json.loads(server.cli("idp", "create", "--name", "Reader", "--apikey", "reader", "--json").stdout)
    return idp["tenant_url"], key["secret"]


@dataclass
class Peak:
    """The highest VmRSS of a process, sampled every few milliseconds while the attack runs."""

    pid: int
    mib: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def __enter__(self) -> Peak:
        self.mib = rss_mib(self.pid)
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join()
        self.mib = max(self.mib, rss_mib(self.pid))

    def _sample(self) -> None:
        while not self.stop.wait(0.005):
            try:
                self.mib = max(self.mib, rss_mib(self.pid))
            except OSError:
                return


def path_of(server) -> str:
    return server.tenant_url.removeprefix(server.base)


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """One whole HTTP response (Content-Length delimited), or what arrived before EOF or the timeout."""
    sock.settimeout(timeout)
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and len(rest) >= _content_length(head):
            return data
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# --- 1. failing requests with large bodies -------------------------------------------------------


def failing_search_body(size: int) -> bytes:
    """A valid JSON search of about `size` bytes that fails validation (400): a read-only key may send it."""
    body = {"schemas": [SEARCH_SCHEMA], "filter": 'userName eq "x"', "sortOrder": "sideways", "pad": "x" * size}
    return json.dumps(body).encode()


def failing_searches(tenant_url: str, secret: str, count: int, size: int) -> list[int]:
    """`count` failing .search requests of `size` bytes over one keep-alive connection; their statuses."""
    body = failing_search_body(size)
    statuses = []
    with httpx.Client(base_url=tenant_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http:
        for _ in range(count):
            response = http.post("/Users/.search", content=body, headers={"Content-Type": "application/scim+json"})
            statuses.append(response.status_code)
    return statuses


# --- 2. console and admin API bodies -------------------------------------------------------------


def chunks_of(fields: int, field_size: int, chunk: int = 65536) -> Iterator[bytes]:
    """A form body of `fields` fields of `field_size` bytes each, in pieces of `chunk` bytes."""
    value = b"x" * field_size
    pending = b""
    for number in range(fields):
        pending += (b"&" if number else b"") + b"f%d=" % number + value
        while len(pending) >= chunk:
            yield pending[:chunk]
            pending = pending[chunk:]
    if pending:
        yield pending


def chunked_post(port: int, path: str, pieces: Iterator[bytes], headers: dict[str, str], timeout: float = 60) -> bytes:
    """POST a chunked body piece by piece; stop sending as soon as an answer arrives. The answer, or b''."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return read_response(sock, timeout)
        except ConnectionResetError:
            return b""
    finally:
        sock.close()


def concurrent_chunked_logins(server, clients: int, fields: int, field_size: int) -> list[tuple[bytes, float]]:
    """`clients` concurrent chunked sign-in posts of fields x field_size bytes: (status line, seconds)."""
    results: list[tuple[bytes, float]] = []

    def post() -> None:
        started = time.monotonic()
        answer = chunked_post(server.port, "/admin/login", chunks_of(fields, field_size), FORM)
        results.append((answer.partition(b"\r\n")[0], time.monotonic() - started))

    threads = [threading.Thread(target=post) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- 3. pipelining without reading the answers ---------------------------------------------------


def pipeline_flood(server, seconds: float, target: str = "", batch: int = 2000) -> int:
    """Pipeline GETs of `target` (a SCIM lookup by default) on one connection for `seconds`, or until
    the server drops it, without reading a single answer; bytes sent."""
    target = target or f"{path_of(server)}/Users?count=1"
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.secret}\r\n\r\n"
    data = request.encode() * batch
    sent = 0
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                sent += sock.send(data)
            except BlockingIOError:
                select.select([], [sock], [], 0.05)
            except OSError:
                break
    finally:
        sock.close()
    return sent


# --- 4. bodies over max_body_bytes ---------------------------------------------------------------


def oversized_create(size: int) -> bytes:
    return json.dumps({"schemas": [USER_SCHEMA], "userName": "big@x", "title": "x" * size}).encode()


def raw_post(server, path: str, body: bytes, extra_headers: str = "", sndbuf: int | None = None) -> bytes:
    """POST the whole body on a fresh connection, then read the answer (as simple clients do). A small
    send buffer (`sndbuf`) makes the client wait on the server's reading, as over a real network."""
    sock = socket.socket()
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.secret}\r\n"
            f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n"
        )
        sock.sendall(head.encode() + body)
        return read_response(sock)
    finally:
        sock.close()


def trickled_post(port: int, path: str, headers: dict[str, str], body: bytes, every: float) -> bytes:
    """POST a body one byte every `every` seconds; the answer, as soon as one comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode())
        for byte in body:
            if select.select([sock], [], [], every)[0]:
                break
            sock.sendall(bytes([byte]))
        return read_response(sock, 30)
    finally:
        sock.close()


def abandoned_post(port: int, path: str, headers: dict[str, str], sent: bytes, declared: int) -> None:
    """Start a POST of `declared` bytes, send `sent` of them, and go away."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: {declared}\r\n\r\n".encode() + sent)
    time.sleep(0.2)
    sock.close()
