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


# A user's create or put event keeps no copy of the user: while the user's row is at the event's
# version, reading the event reads the row (each backend's outbox read joins users). A write that
# changes or deletes the user first gives such events the row as it still is, with this statement.
# The document was most of the bytes a create wrote to the outbox, which were most of its cost.
KEEP_LIVE_DATA = "UPDATE events SET data = $1 WHERE resource_id = $2 AND data IS NULL AND kind IN ('create', 'put')"


def snapshot_json(doc: dict, created: str) -> str:
    """A user's state as a create or put event keeps it once the user changes (KEEP_LIVE_DATA)."""
    return orjson.dumps({"doc": doc, "created": created}).decode()


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
    kind = "delete" if deleted else "create" if before is None else source.kind
    after = None if deleted else row.doc
    if kind == "patch":
        data = source.patch
    elif kind == "delete" or rtype == "User":
        data = None  # a user's create or put reads the user's row (KEEP_LIVE_DATA)
    else:
        data = snapshot(row, stamp)
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
