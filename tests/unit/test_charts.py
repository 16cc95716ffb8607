"""The console's activity charts (web/admin/charts.py): every bucket of the window drawn, empty ones as
gaps, failures hatched, and the figures in words for a reader without colour."""

from __future__ import annotations

from datetime import UTC, datetime

from web.admin.charts import activity_chart, window_start


def test_the_window_starts_a_whole_bucket_back_and_fills_missing_buckets() -> None:
    moment = datetime(2026, 12, 6, 22, 51, 24, tzinfo=UTC)
    first, chars = window_start("24h", moment)
    assert (first, chars) == (datetime(2026, 12, 5, 23, 0, tzinfo=UTC), 13)
    chart = activity_chart("24h", [("2026-12-06T10", 10, 0), ("2026-12-06T22", 30, 3)], moment, "c1")
    assert (chart.operations, chart.failures, round(chart.failure_rate, 3)) == (40, 3, 0.075)
    svg = str(chart.svg)
    assert svg.count('class="operations"') == 2  # the 22 empty hours draw nothing
    assert svg.count('class="failures"') == 1 and 'fill="url(#hatch-c1)"' in svg
    assert "last 24 hours, per hour: 40 operations, 3 failures (7.5%)" in svg
    assert "2026-12-06 22:00 UTC: 30 operations, 3 failures" in svg
    hour = activity_chart("1h", [("2026-12-06T22:51", 2, 0)], moment, "c2")
    assert window_start("1h", moment) == (datetime(2026, 12, 6, 21, 52, tzinfo=UTC), 16)
    assert hour.operations == 2 and str(hour.svg).count('class="operations"') == 1


def test_an_idle_window_is_drawn_empty_without_dividing_by_zero() -> None:
    chart = activity_chart("7d", [], datetime(2026, 12, 6, 22, 0, tzinfo=UTC), "c3")
    assert (chart.operations, chart.failures, chart.failure_rate) == (0, 0, 0.0)
    assert "0 operations, 0 failures (0%)" in str(chart.svg)
