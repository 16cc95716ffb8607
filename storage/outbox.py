"""The outbox rows of a write, alike on every backend: scim/events.py says which events a change
makes; each backend inserts these rows in the write's own transaction."""

from __future__ import annotations

import orjson

from scim.events import change_events
from storage.records import EventSource, Row

# (idp_id, txn, time, rtype, resource_id, external_id, kind, version, attributes, data): the
# columns of an events row after its seq, in this order.
OUTBOX_COLUMNS = "idp_id, txn, time, rtype, resource_id, external_id, kind, version, attributes, data"
OutboxRow = tuple[str, str, str, str, str, str | None, str, int | None, str, str | None]


def snapshot(row: Row, stamp: str) -> dict:
    """The resource as a create or put left it, for the full form: its stored document (and a
    group's members, when the write loaded them), rendered as a SCIM resource only when a SET is
    made (web/events/delivery.py). The rendered resource is three times the document's size, and
    the outbox's bytes are most of what a create with events costs (make bench)."""
    data: dict = {"doc": row.doc}
    if row.created != stamp:
        data["created"] = row.created
    if row.members is not None:
        data["members"] = row.members
    return data


def outbox_rows(
    source: EventSource,
    idp_id: str,
    rtype: str,
    before: dict | None,
    row: Row,
    stamp: str,
    *,
    deleted: bool = False,
    members_changed: bool = False,
) -> list[OutboxRow]:
    """The rows of the events a committed change of `row` makes (`before`: its document before
    the change, None for a create; `deleted`: `row` is the resource as it was deleted)."""
    if deleted:
        kind, after, data = "delete", None, None
    elif before is None:
        kind, after, data = "create", row.doc, snapshot(row, stamp)
    else:
        kind, after = source.kind, row.doc
        data = source.patch if kind == "patch" else snapshot(row, stamp)
    external_id = row.doc.get("externalId")
    version = None if deleted else row.version
    return [
        (
            idp_id,
            source.txn,
            stamp,
            rtype,
            row.id,
            external_id if isinstance(external_id, str) else None,
            event.kind,
            version,
            orjson.dumps(event.attributes).decode(),
            None if event.data is None else orjson.dumps(event.data).decode(),
        )
        for event in change_events(kind, rtype, before, after, members_changed=members_changed, data=data)
    ]
