"""The records the store and its callers exchange: resources, queries, keys, IdPs, sessions, log records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from scim.filters import Node
from scim.patch import MemberOp
from scim.paths import AttrRef
from scim.tenant import Tenant, tenant


@dataclass
class Row:
    """A stored resource: its canonical document (no id/meta/members/groups) and bookkeeping."""

    id: str
    doc: dict
    version: int
    created: str
    modified: str
    members: list[dict] | None = None  # groups, when loaded: [{"value", "type", "display"}]
    groups: list[dict] | None = None  # users, when loaded: [{"value", "display", "type"}]
    encoded: bytes | None = None  # the resource as the client reads it, when the read was asked to encode it
    position: int | None = None  # its place in creation order, on a walk (ResourceStore.walk): a keyset


@dataclass
class Change:
    """What an update does: a new document (None keeps it) and membership deltas, in order.

    A change that keeps the document and only adds or removes listed members holds on any later
    version of the row with the same document, and a backend may apply it there (the deltas do not
    depend on the version); `if_version` says it holds only on that version (an If-Match)."""

    doc: dict | None = None
    member_ops: list[MemberOp] = field(default_factory=list)
    if_version: int | None = None
    unique: tuple[UniqueValue, ...] = ()  # the new document's values no other resource may share
    events: EventSource | None = None  # the events a real change makes, written in its transaction


@dataclass(frozen=True)
class EventSource:
    """What a write needs to put its events in the outbox (in the write's own transaction, so an
    event exists exactly when its change was committed): the SCIM request's `txn`, and for an
    update its kind ("put" or "patch") and a PATCH's request (patch:full's data)."""

    txn: str
    kind: str = "create"
    patch: dict | None = None


@dataclass(frozen=True)
class UniqueValue:
    """A value of a `uniqueness: server` attribute that a write stores: no other resource of the
    same type in the IdP may match `where`, or the write is refused with 409 `detail`."""

    where: Node
    detail: str


ChangeFn = Callable[[Row], Change]
CheckFn = Callable[[Row], None]
# Renders a row as the client reads it, as JSON; run by the store where it read the row.
Encoder = Callable[[Row], bytes]
# Renders a slice of a group's members ({"value", "type", "display"}, in member id order) as the
# answer lists them, as JSON; run by the store where it read them.
MemberEncoder = Callable[[list[dict]], bytes]
# The members a streamed read takes from the database at a time: what one chunk costs in memory.
MEMBER_CHUNK = 2000


@dataclass
class MemberStream:
    """A group and its direct members as stream_members reads them, from one snapshot: `row` (its
    members None) as it was when the members were read, and `chunks`, the members encoded
    MEMBER_CHUNK at a time. It holds a database reader and its snapshot until `chunks` is exhausted
    or aclose() is called: the caller calls aclose() in every case (again is harmless)."""

    row: Row
    chunks: AsyncIterator[bytes]
    release: Callable[[], Awaitable[None]]  # ends the snapshot and gives the reader back; idempotent

    async def aclose(self) -> None:
        # Shielded: a request cancelled while it closes its stream must still give the reader back.
        await asyncio.shield(self.release())


@dataclass(frozen=True)
class Query:
    where: Node | None = None
    sort_by: AttrRef | None = None
    descending: bool = False
    start_index: int = 1  # 1-based, as in SCIM
    count: int = 100
    members: bool = True  # load member rows (groups) / group memberships (users)
    max_bytes: int = 0  # the page ends before the encoded rows pass this (always one row); 0: no limit
    # A walk's keyset (ResourceStore.walk), positions in creation order: the rows after `after`
    # (None: from the first), or, with `before`, the `count` rows just before it.
    after: int | None = None
    before: int | None = None


@dataclass(frozen=True)
class WalkPage:
    """A page of a walk in creation order (ResourceStore.walk): the rows (each with its `position`),
    how many resources match in all, and whether any matching resource comes before the first row
    or after the last one (for an empty page: before or after the position asked for)."""

    total: int
    rows: list[Row]
    more_before: bool
    more_after: bool


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    description: str
    users_write: bool
    groups_write: bool
    created: str
    last_used: str | None
    revoked: str | None

    @property
    def privileges(self) -> list[str]:
        return [name for name, on in (("users", self.users_write), ("groups", self.groups_write)) if on]


@dataclass(frozen=True)
class Idp:
    id: str
    name: str
    icon: str
    api_key_id: str | None
    created: str
    schema: SchemaConfig = field(default_factory=lambda: SchemaConfig())
    # A second key that also signs in while a rotation is under way; it becomes the IdP's key
    # when api_key_id's key is revoked.
    second_api_key_id: str | None = None


@dataclass(frozen=True)
class SchemaConfig:
    """The rules an IdP's SCIM tenant enforces: its schema profile (scim.profiles), whether an
    attribute it does not keep is refused rather than ignored, and its declared extension schemas
    as the JSON text of their canonical declarations (scim.extensions.parse_declarations). The
    store keeps the text as given; scim.tenant.tenant(profile, strict, extensions) makes the
    resource types."""

    profile: str = "meta-networks"
    strict: bool = False
    extensions: str = "[]"

    @property
    def tenant(self) -> Tenant:
        """The resource types this configuration makes (cached by scim.tenant: the same objects for
        every request of the IdP)."""
        return tenant(self.profile, self.strict, self.extensions)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a valid, unrevoked key bound to the IdP in the URL."""

    idp_id: str
    api_key_id: str
    users_write: bool
    groups_write: bool
    schema: SchemaConfig = field(default_factory=lambda: SchemaConfig())
    events: bool = False  # the IdP has event subscriptions: its writes put their events in the outbox


@dataclass(frozen=True)
class SignInFailure:
    """What the store knows about a bearer secret that did not sign in to an IdP: for the
    provisioning log, which tells the admin why (the client is never told)."""

    idp_name: str | None  # the IdP in the URL; None: no IdP has this ID
    idp_key_name: str | None  # the key selected for that IdP, if any
    key_name: str | None  # the API key whose secret was sent; None: no key has this secret
    key_revoked: str | None  # when that key was revoked
    key_idp_id: str | None  # the IdP that key is selected for, if any
    key_idp_name: str | None
    deleted_idp_name: str | None = None  # when no IdP has the ID: the name of the deleted IdP that had it


@dataclass(frozen=True)
class AdminSession:
    """A signed-in admin console session (the id itself is never stored, only its hash)."""

    id_hash: str
    csrf_token: str
    created: str
    expires: str


@dataclass
class DirectoryPage:
    """One page of users or groups in name order (userName / displayName), keyset-paged.

    `first` and `last` are the names at the page's edges: the cursors for the pages before and after.
    """

    total: int
    rows: list[Row]
    has_previous: bool
    has_next: bool
    member_counts: dict[str, int] = field(default_factory=dict)  # groups: id -> number of direct members

    @property
    def first(self) -> str | None:
        return _name_of(self.rows[0]) if self.rows else None

    @property
    def last(self) -> str | None:
        return _name_of(self.rows[-1]) if self.rows else None


def _name_of(row: Row) -> str:
    return row.doc.get("userName") or row.doc.get("displayName") or ""


@dataclass(frozen=True)
class IgnoredAttribute:
    """An attribute (or PATCH path) an IdP's requests carried that its tenant does not keep,
    summed over the provisioning log's records of the IdP."""

    name: str  # as sent, e.g. "urn:ietf:params:scim:schemas:extension:Acme:2.0:User:costCenter"
    requests: int  # records naming it
    first: str  # the oldest such record's time
    last: str  # the newest


# Which records are Test Connection's probes, in SQL both backends speak: Entra asks for a user (and
# a group) named by a random GUID, which scim.operations names "Test connection", and checks that a
# wrong secret gets 401. Answered 2xx, or 401 on an IdP that exists (or existed: deleted_idps), such
# a request is a probe, not a failure. A 401 on an IdP ID that never existed (a mistyped tenant
# URL), and any other error (404: wrong path, 429, 5xx), stays a failure. (A Test Connection whose
# secret is really wrong cannot be told from the deliberate wrong-secret probe: its record still
# says why, see web/scim/auth.py.)
PROBE_SQL = (
    "(operation = 'Test connection' AND (status < 400 OR (status = 401 AND "
    "idp_id IN (SELECT id FROM idps UNION ALL SELECT id FROM deleted_idps))))"
)
# A failure as the console counts it: status >= 400 and not a probe.
FAILURE_SQL = f"(status >= 400 AND NOT {PROBE_SQL})"
# Repeated failures alike (LogStore.failure_groups), with each backend's parameters for since and limit.
FAILURE_GROUPS_SQL = (
    "SELECT idp_id, status, operation, client, count(*), min(time), max(time) FROM provisioning_log "
    f"WHERE time >= {{since}} AND {FAILURE_SQL} GROUP BY idp_id, status, operation, client HAVING count(*) > 1 "
    "ORDER BY count(*) DESC, max(time) DESC LIMIT {limit}"
)


@dataclass(frozen=True)
class LogQuery:
    """A provisioning log query; every field narrows it. Records come newest first."""

    idp_id: str | None = None
    failures: bool | None = None  # True: failures only (FAILURE_SQL: probes are not); False: status < 400
    operation: str | None = None
    text: str | None = None  # in target, detail or path; or the resource's id or its current name
    since: str | None = None  # inclusive, a stored timestamp (UTC, ...Z)
    until: str | None = None  # exclusive
    bulk_request: str | None = None  # the records of one Bulk request's operations
    resource_id: str | None = None  # the records of requests addressed to one resource (its timeline)
    before_id: int | None = None  # keyset cursor: records older than this one
    # The records written after this one (a larger id), oldest first: what a live view has not shown yet.
    after_id: int | None = None
    limit: int = 50
    bodies: bool = True  # False: the records come without request_body, response_body and changes


class LogRecord(NamedTuple):
    """A provisioning log record. The columns written come first, in provisioning_log's order: a
    tuple, because one is made for every SCIM request and goes to the database as it is. Read
    back, a record also has its id and the resource's name now."""

    time: str
    idp_id: str | None
    api_key_id: str | None
    method: str
    path: str
    operation: str
    resource_type: str | None
    resource_id: str | None
    target: str | None
    status: int
    scim_type: str | None
    detail: str | None
    duration_ms: float
    client: str | None
    request_body: str | None
    response_body: str | None
    # The attributes and PATCH paths the request sent that the tenant does not keep, as a JSON
    # array of their names as sent (None when there were none).
    ignored: str | None = None
    # The kind of fault injected instead of (or, "delay", before) the real answer (web/faults.py), else None.
    injected: str | None = None
    # The Bulk request this was an operation of: an id its operations' records share, else None.
    bulk_request: str | None = None
    # What a write changed, as JSON: {"attribute": [before, after], ...} for the top-level attributes
    # whose stored value changed, and "members": {"added": n, "removed": n} for a group's members.
    changes: str | None = None
    id: int | None = None  # given by the database
    resource_name: str | None = None  # the resource's userName / displayName now, when it still exists
    probe: bool = False  # read back: one of Test Connection's probes (PROBE_SQL), never counted a failure

    @property
    def failed(self) -> bool:
        return self.status >= 400 and not self.probe

    @property
    def label(self) -> str | None:
        """What the record is about in words: a PATCH or DELETE is recorded with an id; show the name."""
        if self.resource_name and self.target in (None, self.resource_id):
            return self.resource_name
        return self.target

    @property
    def change_list(self) -> list[tuple[str, object, object]]:
        """What the write changed: (attribute, before, after); members as (\"members\", removed, added)."""
        if not self.changes:
            return []
        changed = orjson.loads(self.changes)
        if not isinstance(changed, dict):
            return []
        rows = [
            (name, pair[0], pair[1]) for name, pair in changed.items() if name != "members" and isinstance(pair, list)
        ]
        members = changed.get("members")
        if isinstance(members, dict):
            rows.append(("members", f"{members.get('removed', 0)} removed", f"{members.get('added', 0)} added"))
        return rows

    @property
    def ignored_names(self) -> list[str]:
        """The attributes and PATCH paths the request sent that its tenant did not keep."""
        return orjson.loads(self.ignored) if self.ignored else []


# The columns written, in provisioning_log's order; id, resource_name and probe are read back.
LOG_COLUMNS = LogRecord._fields[:-3]
# A provisioning log record as both backends select it: the stored columns, then the id, the
# resource's current name (two lookups by the unique id index) and whether it is a probe. A list
# (LogQuery.bodies false) reads NULL for the bodies and the changes: no list shows them, and on a
# busy log they are most of the bytes a page or a live view would read and decode.
LOG_READ_BACK = (
    "id",
    "coalesce((SELECT user_name FROM users WHERE id = resource_id), "
    "(SELECT display_name FROM groups WHERE id = resource_id))",
    PROBE_SQL,
)
LOG_BODY_COLUMNS = ("request_body", "response_body", "changes")


# The select list of a LogRecord, by LogQuery.bodies: with its bodies and changes, or NULL in their place.
LOG_RECORD_COLUMNS = {
    bodies: ", ".join(
        [*(name if bodies or name not in LOG_BODY_COLUMNS else "NULL" for name in LOG_COLUMNS), *LOG_READ_BACK]
    )
    for bodies in (True, False)
}


@dataclass(frozen=True)
class FaultRule:
    """A fault injection rule of one IdP (web/faults.py): until `expires`, answer the `fraction` of
    its SCIM requests that match method, resource and operation (None: any) with the fault `kind`
    ("429", "500", "503", "delay" or "close"). Times are stored ISO text, as now() writes them."""

    id: str
    idp_id: str
    kind: str
    fraction: float
    method: str | None
    resource: str | None  # "Users" or "Groups"
    operation: str | None  # one of web.faults.OPERATIONS
    retry_after: int | None  # seconds, the Retry-After of a 429 or 503
    delay_ms: int | None  # the delay of a "delay" rule
    created: str
    expires: str


@dataclass(frozen=True)
class FailureGroup:
    """Failures alike (one IdP, status, operation and client address), counted: the Overview's
    "429 × 40 from 10.0.0.5 in 2 minutes"."""

    idp_id: str | None
    status: int
    operation: str
    client: str | None
    count: int
    first: str
    last: str


@dataclass(frozen=True)
class LogCounters:
    operations: int  # in the window asked for
    failures: int  # in the window asked for
    last_activity: str | None  # the newest record ever


@dataclass(frozen=True)
class OutboxEvent:
    """One event in the outbox (scim/events.py says which a change makes): `seq` is its place in
    commit order, which every subscription of the IdP follows."""

    seq: int
    idp_id: str
    txn: str
    time: str
    rtype: str
    resource_id: str
    external_id: str | None
    kind: str
    version: int | None
    attributes: list[str]
    data: dict | None


@dataclass(frozen=True)
class Subscription:
    """An IdP's event subscription. `delivery` "push" posts each SET to `url` (RFC 8935); "poll"
    keeps them for the receiver to fetch (RFC 8936). `secret` is sealed (web/events/keys.py): the
    HMAC key of HS256 and the poll bearer token. `cursor` is the seq of the last event it is done
    with (delivered, acknowledged, rejected or not wanted); `state` "active", "paused" or "failed"
    (retries ran out: its events wait for an admin to redeliver)."""

    id: str
    idp_id: str
    delivery: str
    url: str
    events: list[str]
    form: str
    audience: str
    alg: str
    secret: str
    state: str
    cursor: int
    created: str
    delivered: int = 0
    rejected: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    last_delivered_at: str | None = None
    retry_since: str | None = None  # when the attempts at the event after `cursor` began to fail
    dropped: int = 0  # events the outbox's bounds removed before this subscription was done with them


@dataclass(frozen=True)
class DeliveryAttempt:
    """One try at handing one event to a subscription's receiver. outcome: "delivered", "retry"
    (no answer, or one to try again), "rejected" (a 400 per RFC 8935, or a poll's setErrs),
    "acked" (a poll acknowledged it), "failed" (the last retry)."""

    subscription_id: str
    seq: int
    time: str
    outcome: str
    status: int | None = None
    error: str | None = None
    duration_ms: float | None = None


@dataclass(frozen=True)
class DeliveryProgress:
    """What a delivery round stores in one write: the new cursor and counters, the attempts, and
    the subscription's state and last error."""

    subscription_id: str
    cursor: int
    delivered: int = 0
    rejected: int = 0
    attempts: tuple[DeliveryAttempt, ...] = ()
    state: str | None = None  # None: unchanged
    last_error: str | None = None
    retry_since: str | None = None
    last_delivered_at: str | None = None
