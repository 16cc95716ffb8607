"""The live log's shared tail (web/admin/live.py): read once for every view, trimmed, and never the
reason a view misses a record (a view the tail no longer covers reads its own way)."""

from __future__ import annotations

from storage import LogQuery, LogRecord
from web.admin import live


def records(first: int, last: int) -> list[LogRecord]:
    return [
        LogRecord(
            "t", "idp", "k", "GET", "/", "Get User", "User", None, None, 200, None, None, 1.0, None, None, None, id=n
        )
        for n in range(first, last + 1)
    ]


async def test_a_tail_reads_once_for_its_views_and_trims_what_it_keeps(monkeypatch) -> None:
    monkeypatch.setattr(live, "TAIL_BYTES", 38)  # the newest five events below: 7 + 7 + 8 + 8 + 8
    written = records(1, 12)
    reads: list[int | None] = []

    async def read(query: LogQuery) -> tuple[list[LogRecord], bool]:
        reads.append(query.after_id)
        found = [r for r in written if r.id > (query.after_id or 0)]
        return found[: query.limit], len(found) > query.limit

    tail = live.LiveTail(LogQuery(), after=0)
    await tail.refresh(read, lambda r: f"event {r.id}")
    await tail.refresh(read, lambda r: f"event {r.id}")  # within POLL_SECONDS: no second read
    assert reads == [0]
    assert [event_id for event_id, _ in tail.events] == [8, 9, 10, 11, 12]  # as many as TAIL_BYTES holds
    assert tail.start == 7 and tail.end == 12
    assert not tail.covers(3) and tail.covers(7)  # a view at 3 reads 4..7 on its own
    assert [text for _, text in tail.after(9)] == ["event 10", "event 11", "event 12"]
    written += records(13, 14)
    tail.read_at = 0.0
    await tail.refresh(read, lambda r: f"event {r.id}")
    assert reads == [0, 12] and tail.after(12) == [(13, "event 13"), (14, "event 14")]
