"""A provisioning log record as the log table's row: one renderer for the log page, the IdP page's
latest requests and the live views' server-sent events.

Python rather than a Jinja macro because the live views render every record as it is written (a
thousand a second under a busy sync): the macro took about 10 µs a row, this takes a fraction of it.
"""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from storage import LogRecord
from web.admin.hints import failure_hint

PROBE_BADGE = ' <span class="badge info" title="Test Connection\'s probe: not counted as a failure">probe</span>'


def when(stamp: str | None) -> str:
    """A stored UTC timestamp, shortened for a table: 2025-01-31 14:05:12."""
    if not stamp:
        return "—"
    if len(stamp) == 24 and stamp[10] == "T" and stamp[-1] == "Z":  # as storage.common.now() writes it
        return f"{stamp[:10]} {stamp[11:19]}"
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def status_badge(status: int) -> Markup:
    return Markup(f'<span class="badge {"bad" if status >= 400 else "good"}">{status}</span>')


def log_row(record: LogRecord, names: dict[str, str], keys: dict[str, str], base: str) -> Markup:
    """The record's <tr>: its time (a link to the record), IdP, key, operation, target, status,
    scimType, detail with the failure's hint, and duration; names and keys give IdP and key names by id."""
    operation = escape(record.operation)
    if record.probe:
        operation += Markup(PROBE_BADGE)
    if record.injected:
        operation += Markup(
            f' <span class="badge warn injected" title="answered by a fault injection rule">'
            f"injected {escape(record.injected)}</span>"
        )
    detail = Markup(f'<div class="clamp">{escape(record.detail)}</div>') if record.detail else Markup()
    hint = failure_hint(record)
    if hint:
        detail += Markup(
            f'<a class="hint-link small" href="{escape(base)}/docs/{escape(hint.doc)}#{escape(hint.anchor)}" '
            f'title="{escape(hint.text)}">What to do</a>'
        )
    link = f"{escape(base)}/logs/{record.id}"
    idp = names.get(record.idp_id or "") or record.idp_id or "—"
    key = keys.get(record.api_key_id or "") or "—"
    return Markup(
        f'<tr class="{"failed" if record.failed else ""}">'
        f'<td class="nowrap" data-label="Time"><a href="{link}">{escape(when(record.time))}</a></td>'
        f'<td class="clip narrow" data-label="IdP">{escape(idp)}</td>'
        f'<td class="clip narrow secondary" data-label="API key">{escape(key)}</td>'
        f'<td class="nowrap" data-label="Operation">{operation}</td>'
        f'<td class="clip" data-label="Target" title="{escape(record.target or "")}">{escape(record.label or "—")}</td>'
        f'<td data-label="Status">{status_badge(record.status)}</td>'
        f'<td class="secondary" data-label="scimType">{escape(record.scim_type or "")}</td>'
        f'<td data-label="Detail">{detail}</td>'
        f'<td class="num secondary" data-label="ms">{record.duration_ms:.1f}</td>'
        "</tr>"
    )
