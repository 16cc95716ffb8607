"""SCIM events (RFC 9967) as data: which events a change makes, and the claims of the Security
Event Token (RFC 8417) that carries one to a receiver. Pure: signing and delivery are web/events/.

A write that changed a resource makes one event of its kind (create, put, patch, delete) and, when
it turned a user's `active` over, an activate or deactivate event too, all under the `txn` of the
SCIM request (a Bulk request's operations share the Bulk request's). A subscription picks the
kinds it wants; `members` picks the put and patch events of groups whose members changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "urn:ietf:params:scim:event:prov:"
KINDS = ("create", "put", "patch", "delete", "activate", "deactivate")
# What a subscription may ask for: the kinds, and "members" (a group's membership changed).
SELECTABLE = (*KINDS, "members")
FORMS = ("full", "notice")
# create, put and patch come in a full form (the resource, or the PATCH request) and a notice
# form (the names of the attributes that changed); the others have one form.
TWO_FORMS = frozenset({"create", "put", "patch"})


@dataclass(frozen=True)
class ChangeEvent:
    """One event of a change, as the outbox keeps it."""

    kind: str
    attributes: tuple[str, ...]  # the top-level attributes the change set or changed
    data: dict | None  # the full form's data: the resource (create, put) or the PatchOp (patch)


def change_events(
    kind: str,
    rtype: str,
    before: dict | None,
    after: dict | None,
    *,
    members_changed: bool = False,
    data: dict | None = None,
) -> list[ChangeEvent]:
    """The events of a write that changed a resource: `kind` is create, put, patch or delete,
    `before` and `after` its stored documents (None for a create's before and a delete's after)."""
    if kind == "delete":
        return [ChangeEvent("delete", (), None)]
    assert after is not None, "a create, put or patch leaves a document"
    names = sorted(set(after) if before is None else changed_attributes(before, after))
    if members_changed:
        names.append("members")
    events = [ChangeEvent(kind, tuple(names), data)]
    if rtype == "User" and before is not None and is_active(before) != is_active(after):
        events.append(ChangeEvent("activate" if is_active(after) else "deactivate", ("active",), None))
    return events


def changed_attributes(before: dict, after: dict) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def is_active(doc: dict) -> bool:
    # A user without `active` is active (RFC 7643 leaves it to the provider; Entra always sends it).
    return doc.get("active", True) is not False


def wanted(selected: Iterable[str], kind: str, rtype: str, attributes: Iterable[str]) -> bool:
    """Whether a subscription that selected these names receives this event."""
    chosen = set(selected)
    if kind in chosen:
        return True
    return "members" in chosen and rtype == "Group" and kind in ("put", "patch") and "members" in attributes


def event_uri(kind: str, form: str) -> str:
    return f"{PREFIX}{kind}:{form}" if kind in TWO_FORMS else f"{PREFIX}{kind}"


def event_payload(kind: str, form: str, attributes: list[str], data: dict | None, version: str | None) -> dict:
    """The value of the event's URI in the SET's `events` claim."""
    payload: dict = {}
    if kind in TWO_FORMS:
        if form == "full" and data is not None:
            payload["data"] = data
        else:
            payload["attributes"] = attributes
    if version is not None and kind != "delete":
        payload["version"] = version
    return payload


def set_claims(
    *,
    issuer: str,
    audience: str,
    jti: str,
    issued: int,
    txn: str,
    rtype: str,
    resource_id: str,
    external_id: str | None,
    kind: str,
    form: str,
    attributes: list[str],
    data: dict | None,
    version: str | None,
) -> dict:
    """The claims of the SET that carries one event (RFC 8417 §2.2, RFC 9967 §2): `sub_id` is a
    subject identifier of the "scim" format (RFC 9493 registry), the resource's path under the
    tenant URL and its externalId."""
    subject: dict = {"format": "scim", "uri": f"/{rtype}s/{resource_id}"}
    if external_id:
        subject["externalId"] = external_id
    return {
        "iss": issuer,
        "aud": audience,
        "jti": jti,
        "iat": issued,
        "toe": issued,
        "txn": txn,
        "sub_id": subject,
        "events": {event_uri(kind, form): event_payload(kind, form, attributes, data, version)},
    }
