"""The console's activity charts: an IdP's operations and failures over a window, drawn as SVG on the
server (no front-end build, no script). Failures are hatched as well as coloured, and every chart
says its figures in words (its title, its caption and each bar's tooltip): it reads without colour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from markupsafe import Markup

# window -> (its length, the characters of a stored time that name its bucket, a bucket's length, label)
WINDOWS: dict[str, tuple[timedelta, int, timedelta, str]] = {
    "1h": (timedelta(hours=1), 16, timedelta(minutes=1), "last hour, per minute"),
    "24h": (timedelta(hours=24), 13, timedelta(hours=1), "last 24 hours, per hour"),
    "7d": (timedelta(days=7), 13, timedelta(hours=1), "last 7 days, per hour"),
}
WIDTH, HEIGHT, LEFT, BOTTOM = 600, 120, 34, 18  # the drawing, in SVG units, and its axes' margins


@dataclass(frozen=True)
class Activity:
    """One chart: its window, the figures it shows and the SVG that draws them."""

    window: str
    label: str
    operations: int
    failures: int
    svg: Markup

    @property
    def failure_rate(self) -> float:
        """Failures over operations, the share Entra's quarantine looks at."""
        return self.failures / self.operations if self.operations else 0.0


def window_start(window: str, moment: datetime) -> tuple[datetime, int]:
    """The first bucket's start of the window ending at `moment`, and the bucket key's length."""
    length, chars, step, _ = WINDOWS[window]
    return _floor(moment - length + step, step), chars


def activity_chart(window: str, counted: list[tuple[str, int, int]], moment: datetime, chart_id: str) -> Activity:
    """The chart of `window` ending at `moment` from LogStore.activity's buckets (missing ones are 0)."""
    _, _, step, label = WINDOWS[window]
    first, chars = window_start(window, moment)
    by_key = {bucket: (operations, failures) for bucket, operations, failures in counted}
    buckets = []
    at = first
    while at <= moment:
        key = at.strftime("%Y-%m-%dT%H:%M")[:chars]
        buckets.append((at, *by_key.get(key, (0, 0))))
        at += step
    operations = sum(b[1] for b in buckets)
    failures = sum(b[2] for b in buckets)
    return Activity(window, label, operations, failures, _svg(buckets, step, label, operations, failures, chart_id))


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return moment.replace(minute=0) if step >= timedelta(hours=1) else moment


def _svg(
    buckets: list[tuple[datetime, int, int]], step: timedelta, label: str, operations: int, failures: int, chart_id: str
) -> Markup:
    top = max([b[1] for b in buckets] + [1])
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    bar_w = plot_w / len(buckets)
    rate = f"{failures / operations:.1%}" if operations else "0%"
    summary = f"{label}: {operations:,} operations, {failures:,} failures ({rate})"
    hatch = f"hatch-{chart_id}"
    parts = [
        f'<svg class="activity" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-title" '
        f'xmlns="http://www.w3.org/2000/svg" id="{chart_id}">',
        f'<title id="{chart_id}-title">{escape(summary)}</title>',
        f'<defs><pattern id="{hatch}" patternUnits="userSpaceOnUse" width="4" height="4">'
        '<rect width="4" height="4" class="failure-fill"/><path d="M-1,1 l2,-2 M0,4 l4,-4 M3,5 l2,-2" '
        'class="failure-hatch"/></pattern></defs>',
        f'<line x1="{LEFT}" y1="{plot_h}" x2="{WIDTH}" y2="{plot_h}" class="axis"/>',
        f'<text x="{LEFT - 4}" y="10" class="tick" text-anchor="end">{top:,}</text>',
        f'<text x="{LEFT - 4}" y="{plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    when = "%H:%M" if step < timedelta(hours=1) else "%a %H:00"
    for index, (at, count, failed) in enumerate(buckets):
        if not count:
            continue
        x = LEFT + index * bar_w
        height = plot_h * count / top
        failed_height = plot_h * failed / top
        tip = f"{at.strftime('%Y-%m-%d %H:%M')} UTC: {count:,} operations, {failed:,} failures"
        width = f"{max(bar_w - 1, 0.5):.2f}"
        bar = f'<rect x="{x:.2f}" y="{plot_h - height:.2f}" width="{width}" height="{height:.2f}" class="operations"/>'
        if failed:
            bar += (
                f'<rect x="{x:.2f}" y="{plot_h - failed_height:.2f}" width="{width}" height="{failed_height:.2f}" '
                f'fill="url(#{hatch})" class="failures"/>'
            )
        parts.append(f"<g><title>{escape(tip)}</title>{bar}</g>")
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 4}" class="tick">{buckets[0][0].strftime(when)}</text>')
    parts.append(
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" class="tick" text-anchor="end">{buckets[-1][0].strftime(when)} UTC</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
