"""uvicorn's httptools protocol, with each response's writes sent in one system call, a bound on what
one connection may queue, and a lingering close after an answer that left its request body unread.

uvicorn writes a response's status line and headers, then its body, as two transport writes:
two send() calls, two TCP segments and two wake-ups of the client for every SCIM answer. Holding
writes until the end of the event loop's current step joins them, which took about a tenth off
the server's CPU per SCIM request (pinned A/B, 10,000 creates and lookups).

uvicorn parses every request it reads and queues those that arrive behind the one being answered,
without limit: a client pipelining requests and never reading the answers grew the server by
100 MiB in 15 s on one connection. Here the parser is fed at most MAX_PIPELINED queued requests
(plus one FEED_SLICE of them); the rest of what was read waits unparsed and reading pauses until
the queue drains. Answers are bounded by uvicorn's write flow control: a response waits while the
transport's buffer is above its high-water mark, and a connection whose buffer stays there for
server.write_timeout seconds (its client reads nothing) is dropped.

Closing a connection whose client is still sending makes the kernel answer with a reset, which can
destroy the answer (a 413 and its detail) before the client reads it: such a close first sends
FIN, then reads and discards for at most LINGER_SECONDS or LINGER_BYTES (RFC 9112 §9.6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Data this large is written at once (after what is held): joining would copy it for no gain.
LARGE_WRITE = 64 * 1024
# Requests a connection may have parsed and waiting behind the one being answered. Clients that
# pipeline at all (Entra does not) send a few; past this the connection is simply read later.
MAX_PIPELINED = 16
# The parser is fed at most this much at a time while requests queue: a slice holds at most ~200
# of the smallest requests, which bounds what the queue can overshoot MAX_PIPELINED by.
FEED_SLICE = 4096
# The scope extension through which the app may close the connection unanswered (web/faults.py reads it).
CLOSE_EXTENSION = "scimlet.close"
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024

if TYPE_CHECKING:
    # To a type checker a CoalescingTransport is the Transport it stands in for, as uvicorn takes it:
    # what it does not define, __getattr__ takes from the real one. At run time it is a plain class,
    # so that no method of asyncio.Transport (which raise NotImplementedError) shadows that delegation.
    _Transport = asyncio.Transport
else:
    _Transport = object


class CoalescingTransport(_Transport):
    """A transport whose writes are held until the end of the current event loop step, then sent
    together. Everything else goes to the real transport; closing sends what is held first, and
    lingers when `unread()` says the client may still be sending."""

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, unread: Callable[[], bool]
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.unread = unread
        self.held: list[bytes | bytearray | memoryview] = []
        self.lingering = False
        self.discarded = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return  # an answer still being sent when the connection ended: nobody will read it
        if len(data) >= LARGE_WRITE:
            self.flush()
            self.transport.write(data)
            return
        if not self.held:
            self.loop.call_soon(self.flush)
        self.held.append(data)

    def flush(self) -> None:
        if self.held:
            data = b"".join(self.held)
            self.held.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        if self.lingering or self.transport.is_closing():
            return
        if not self.unread() or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.lingering = True
        self.transport.write_eof()
        self.transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def discard(self, data: bytes) -> None:
        """Data read while lingering: dropped unparsed, up to LINGER_BYTES."""
        self.discarded += len(data)
        if self.discarded > LINGER_BYTES:
            self.transport.close()

    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def abort(self) -> None:
        self.held.clear()
        self.transport.abort()

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)


class QueueFlowControl(FlowControl):
    """uvicorn resumes reading after each answer and whenever an app reads its body: here reading
    resumes only while the connection's queue has room and nothing read waits unparsed."""

    def __init__(self, transport: CoalescingTransport, protocol: CoalescingHttpProtocol) -> None:
        super().__init__(transport)
        self.protocol = protocol

    def resume_reading(self) -> None:
        if self.protocol.may_read():
            super().resume_reading()


class CoalescingHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a CoalescingTransport, with a bounded pipeline and a
    lingering close; pass it to uvicorn as `http`."""

    write_timeout = 30.0
    unparsed: memoryview | None = None  # read but not yet fed to the parser
    write_stalled: asyncio.TimerHandle | None = None

    # Only ever a CoalescingTransport once connection_made has run.
    transport: CoalescingTransport

    # The same narrowing as uvicorn's own override (asyncio's BaseProtocol takes a BaseTransport).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop, self.body_unread)
        super().connection_made(coalescing)
        self.flow = QueueFlowControl(coalescing, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.write_stalled is not None:
            self.write_stalled.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_stalled is None:
            self.write_stalled = self.loop.call_later(self.write_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_stalled is not None:
            self.write_stalled.cancel()
            self.write_stalled = None

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.discard(data)
            return
        if self.unparsed is None and len(data) <= FEED_SLICE and len(self.pipeline) < MAX_PIPELINED:
            super().data_received(data)  # the usual case: one request (or less) per read
            return
        self.unparsed = memoryview(bytes(self.unparsed) + data) if self.unparsed is not None else memoryview(data)
        self.feed()

    def feed(self) -> None:
        """Parse what waits, a slice at a time, while the queue has room; pause reading otherwise."""
        while self.unparsed is not None and len(self.pipeline) < MAX_PIPELINED:
            if self.parser is None or self.transport.is_closing():
                self.unparsed = None
                return
            piece, rest = self.unparsed[:FEED_SLICE], self.unparsed[FEED_SLICE:]
            self.unparsed = rest if rest else None
            # uvicorn annotates bytes, but only hands them to httptools' feed_data, which takes any buffer.
            super().data_received(piece)  # type: ignore[arg-type]
        if self.unparsed is not None:
            self.flow.pause_reading()

    def on_headers_complete(self) -> None:
        # A way for the app to end this connection without answering (fault injection's "close",
        # web/faults.py), as an ASGI scope extension: uvicorn offers none.
        self.scope["extensions"] = {CLOSE_EXTENSION: {"close": self.transport.close}}
        super().on_headers_complete()

    def may_read(self) -> bool:
        return self.unparsed is None and len(self.pipeline) < MAX_PIPELINED

    def body_unread(self) -> bool:
        """Whether the client may still be sending: a request answered before its body arrived
        whole (a 413, a 401 to a large post), or requests read but not answered."""
        return (self.cycle is not None and self.cycle.more_body) or bool(self.pipeline) or self.unparsed is not None

    def on_response_complete(self) -> None:
        if not self.pipeline and self.cycle.more_body:
            # Answered without reading the whole body: what remains of it is not worth reading
            # (it may be anything up to what Content-Length claims), so the connection ends here.
            self.transport.close()
        super().on_response_complete()
        if self.unparsed is not None and not self.transport.is_closing():
            self.feed()
            self.flow.resume_reading()


def http_protocol(write_timeout: float) -> type[CoalescingHttpProtocol]:
    """The protocol class to give uvicorn, with the configured write timeout."""
    return type("ScimletHttpProtocol", (CoalescingHttpProtocol,), {"write_timeout": write_timeout})
