"""The live log's shared reading: one tail per log query, read once for every live view that shows it.

Three console tabs on the log page would otherwise each read every new record from the store and
render it, once a second: at 600 SCIM requests a second that cost 30% more server CPU per request.
A tail keeps the newest events of its query (rendered rows as server-sent events) and reads the
store at most once per POLL_SECONDS for all of its views; a view that is further behind than the
tail reaches reads its own way up to it. The tail is bounded in bytes, not in events: at 1,000
records a second one poll brings a thousand, and a tail of 500 left every view that had not yet
sent the last batch further behind than the tail, reading and rendering on its own (half of what
three views cost the server, under py-spy).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections.abc import Callable

from storage import LogQuery, LogRecord

TAIL_BYTES = 2_000_000  # the rendered events a tail keeps, at most (about 1 KB each: seconds of a busy sync)
READ_BATCH = 100
RENDER_STEP = 25  # rows rendered before other work runs
POLL_SECONDS = 1.0


class LiveTail:
    """The newest events of one log query: (record id, event text), oldest first."""

    def __init__(self, query: LogQuery, after: int) -> None:
        self.query = query
        self.start = after  # the tail holds every matching record with an id above this, up to `end`
        self.end = after
        self.events: list[tuple[int, str]] = []
        self.size = 0  # the events' length in characters
        self.more = False  # the last read stopped at READ_BATCH: more are waiting
        self.read_at = 0.0
        self.lock = asyncio.Lock()
        self.views = 0

    def covers(self, last: int) -> bool:
        return last >= self.start

    async def refresh(self, read: Callable, render: Callable[[LogRecord], str]) -> None:
        """Read the records written since `end`, when the last read is older than POLL_SECONDS (or
        left more waiting); one reader at a time, the others wait for its result."""
        async with self.lock:
            if not self.more and time.monotonic() - self.read_at < POLL_SECONDS:
                return
            records, self.more = await read(dataclasses.replace(self.query, after_id=self.end, limit=READ_BATCH))
            self.read_at = time.monotonic()
            for number, record in enumerate(records, 1):
                assert record.id is not None, "a stored record has its id"
                text = render(record)
                self.events.append((record.id, text))
                self.size += len(text)
                self.end = record.id
                if number % RENDER_STEP == 0:
                    await asyncio.sleep(0)  # SCIM requests run between steps: a batch renders in about 1 ms
            dropped = 0
            while self.size > TAIL_BYTES:
                self.size -= len(self.events[dropped][1])
                dropped += 1
            if dropped:
                self.start = self.events[dropped - 1][0]
                del self.events[:dropped]

    def after(self, last: int) -> list[tuple[int, str]]:
        """The events after `last` (which the tail covers), oldest first."""
        return self.events[bisect.bisect_right(self.events, last, key=lambda event: event[0]) :]
