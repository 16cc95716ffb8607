"""The storage seam: what each consumer may ask of a backend, one protocol per consumer, and `Store`,
all of them together, which every backend (storage/sqlite/, ...) implements.

Who uses which: the SCIM API (web/scim_api.py) a `ResourceStore`; the provisioning log (web/observe.py)
a `LogStore`; readiness (web/health.py) an `OperationsStore`; the admin service, the console, /metrics
and app.py (start-up, the CLI, housekeeping) the whole `Store`.

Errors: a SCIM request's failure is a scim.errors.ScimError (its status and scimType are the answer);
a backend that cannot store or read now raises ScimError 503 with `retry_after` when it knows when to
come back, and ScimError 429 when its write queue is full. An administration request that cannot be
done raises storage.errors.AdminError (400, 404 unknown key or IdP, 409 name taken).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from scim.filters import Node
from scim.patch import Member
from storage.records import (
    AdminSession,
    ApiKey,
    ChangeFn,
    CheckFn,
    DeliveryAttempt,
    DeliveryProgress,
    DirectoryPage,
    Encoder,
    EventSource,
    FailureGroup,
    FaultRule,
    Idp,
    IgnoredAttribute,
    LogCounters,
    LogQuery,
    LogRecord,
    MemberEncoder,
    MemberStream,
    OutboxEvent,
    Principal,
    Query,
    Row,
    SchemaConfig,
    SignInFailure,
    Subscription,
    UniqueValue,
    WalkPage,
)


@dataclass(frozen=True)
class StorageStats:
    """What /metrics reports about the backend, read when Prometheus scrapes."""

    write_queue_depth: int  # writes waiting for the database
    write_batches: int  # write transactions committed since open()
    # Bytes on disk by file label ("database", "wal" for SQLite); empty when the backend has no files here.
    sizes: dict[str, int] = field(default_factory=dict)


class ResourceStore(Protocol):
    """Users and groups of one IdP, and who may call (the SCIM API). `rtype` is "User" or "Group".

    Shared guarantees: userName (users) and displayName (groups) are unique per IdP regardless of
    ASCII letter case; a row's version goes up by one only when a write really changed it (its
    document or its members); membership changes are deltas applied in order, never a rewrite of
    the list read earlier, so concurrent member changes lose nothing."""

    def authenticate(self, idp_id: str, secret: str) -> Principal | None:
        """The principal for this IdP and bearer secret, or None (unknown IdP, wrong or revoked key).

        Synchronous and cheap: answered from memory when the sign-in was verified before. A key
        revoked or an IdP deleted, also by another process, stops signing in within
        AUTH_RECHECK_SECONDS (storage.common). Records the key's last use (see AdminStore.flush_last_used)."""
        ...

    def sign_in_failure(self, idp_id: str, secret: str) -> SignInFailure:
        """Why this secret did not sign in to this IdP, for the provisioning log: called only after
        authenticate returned None (the sign-in itself never pays for it). Synchronous and cheap:
        from memory, or primary-key and small-table reads; failures are throttled (AuthThrottle)."""
        ...

    async def create(
        self,
        rtype: str,
        idp_id: str,
        doc: dict,
        members: list[Member] | None = None,
        unique: tuple[UniqueValue, ...] = (),
        events: EventSource | None = None,
    ) -> Row:
        """Store a new resource (`doc` is canonical: no id, meta, members or groups) with a new id,
        version 1, created = modified = now; groups get `members` added. Returns the row with its
        members (groups) or groups (users, none yet).

        Raises ScimError 409 uniqueness (name taken in the IdP, any letter case; or another resource
        of the type in the IdP matches one of `unique`, checked atomically with the write), 400 invalidValue
        (a member id unknown in the IdP, of the wrong type, or the group itself; nothing stored),
        401 (the IdP was deleted while the request ran; nothing stored), 503/429 (cannot write now).
        With `events`, the create's event goes to the outbox in the same transaction (so do
        update's, from Change.events, and delete's: only for a write that really changed something)."""
        ...

    async def get(
        self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True, encode: Encoder | None = None
    ) -> Row | None:
        """The resource, or None when the IdP has none with this id. With `members`, a group's
        members or a user's groups (direct and nested) are loaded; with `encode`, `row.encoded` is
        encode(row), made where the row was read.

        Raises ScimError 400 tooMany when a user's groups are more than scim.max_user_groups, 503."""
        ...

    async def stream_members(self, idp_id: str, group_id: str, encode: MemberEncoder) -> MemberStream | None:
        """The group and all its direct members without holding them all at once (a group of
        100,000 members is 20 MB of JSON), or None when the IdP has no such group (nothing is
        then held). The row (members None) and every member come from one snapshot, so the
        members are the ones of the row's version, whatever is written meanwhile. The stream's
        chunks are encode(members) of consecutive slices of at most MEMBER_CHUNK members
        ({"value", "type", "display"} as get() loads them) in member id order, the order get()
        lists them in; encode runs where the members were read (as get's encode: SQLite's on
        the stream's thread). A group without members yields no chunk. Until its chunks are
        exhausted or it is closed (MemberStream.aclose), a stream of more than one slice holds a
        reader of its own: the caller closes it in every case, also when it stops early (a
        client gone). At most a backend-defined number are open at once; past it, 503.

        Raises ScimError 503 (also from the chunks, when the database fails while they are read)."""
        ...

    async def search(
        self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None
    ) -> tuple[int, list[Row]]:
        """The number of matches and one page of them (query.start_index, query.count, sorted as
        asked, else in creation order). With `encode`, each row gets `encoded`, and the page ends
        before the row that takes it past query.max_bytes (0: no limit); a page whose members are
        costly to load may end early too. A page always holds at least one row when any is left.

        Filters compare strings with ASCII case folding, as scim/filters.py does in Python.
        Raises ScimError 400 invalidFilter (a filter the database cannot evaluate), 400 tooMany, 503."""
        ...

    async def walk(self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None) -> WalkPage:
        """One page of a walk through the matching resources in creation order, by keyset: the
        first query.count rows after query.after (None: from the first), or with query.before the
        query.count rows just before it, in creation order either way; each row with its
        `position`, which a later walk takes as `after` or `before`. A resource's position never
        changes, so a walk page by page meets every resource that exists from its start to its end
        exactly once, whatever is written meanwhile, and a deep page costs what the first does.
        query.where, query.members and query.max_bytes as in search; start_index and sort_by are
        not read. Raises as search does."""
        ...

    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *, members: bool = True) -> Row:
        """Read the current row and call change(row) inside the write transaction; store what it
        returns (a new document and/or member deltas). An exception from `change` (a failed
        If-Match, a bad PATCH) propagates and nothing is changed. The version is bumped, and
        `modified` set, only when the document or the membership really changed. Returns the row as
        written, with members/groups when asked (a user's groups are None when more than
        scim.max_user_groups).

        When the document changes, no other resource of the type in the IdP may match one of the
        change's `unique` values (checked atomically with the write).

        Raises ScimError 404 (no such resource), 409 uniqueness, 400 invalidValue (unknown member),
        401 (IdP deleted meanwhile), 503/429."""
        ...

    async def delete(
        self,
        rtype: str,
        idp_id: str,
        resource_id: str,
        check: CheckFn | None = None,
        events: EventSource | None = None,
    ) -> None:
        """Delete the resource and its memberships. check(row) runs first inside the write
        transaction; an exception from it propagates and nothing is deleted. Every group the
        resource was a member of gets its version bumped and `modified` set.

        Raises ScimError 404 (no such resource), 401 (IdP deleted meanwhile), 503/429."""
        ...


class AdminStore(Protocol):
    """API keys, IdPs and their counts (the admin service, the CLI, the console, /metrics).

    Key and IdP names are unique (API keys regardless of letter case when looked up). A key belongs
    to one IdP. Every change that can end a sign-in (revoke, rebind, delete) takes effect at once in
    this process and within AUTH_RECHECK_SECONDS in others."""

    async def create_api_key(
        self, name: str, description: str, users_write: bool, groups_write: bool
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (returned only now; only its hash is stored).
        Raises AdminError 400 (empty name), 409 (name taken)."""
        ...

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first, with its last use as recorded in memory or stored."""
        ...

    async def find_api_key(self, id_or_name: str) -> ApiKey:
        """The key with this id, or this name in any letter case. Raises AdminError 404."""
        ...

    async def revoke_api_key(self, id_or_name: str) -> ApiKey:
        """Revoke the key (again: no change) and return it; it stops signing in. Raises AdminError 404."""
        ...

    async def create_idp(self, name: str, icon: str, api_key: str | None, schema: SchemaConfig | None = None) -> Idp:
        """A new IdP, bound to the key with this id or name when given, with the schema
        configuration given (default: SchemaConfig()). Raises AdminError 400 (empty name, revoked
        key), 404 (no such key), 409 (name taken, or the key is bound to another IdP)."""
        ...

    async def set_idp_schema(self, idp_id: str, schema: SchemaConfig) -> Idp:
        """Replace the IdP's schema configuration (the caller has checked it); stored data is never
        touched. Takes effect for the next request at once in this process and within
        AUTH_RECHECK_SECONDS in others (authenticate's Principal carries it). Raises AdminError 404."""
        ...

    async def list_idps(self) -> list[Idp]:
        """Every IdP, oldest first."""
        ...

    async def get_idp(self, idp_id: str) -> Idp:
        """The IdP. Raises AdminError 404."""
        ...

    async def set_idp_api_key(self, idp_id: str, api_key: str) -> Idp:
        """Bind the key (id or name) to the IdP, replacing its key; returns the IdP.
        Raises AdminError 400 (revoked key), 404 (no such IdP or key), 409 (key bound to another IdP)."""
        ...

    async def delete_idp(self, idp_id: str) -> None:
        """Delete the IdP with all its users, groups and memberships; its name is kept (deleted_idp_names)
        for the provisioning log records that outlive it. Raises AdminError 404."""
        ...

    async def deleted_idp_names(self) -> dict[str, str]:
        """IdP ID -> name of every IdP deleted."""
        ...

    async def set_idp_second_key(self, idp_id: str, api_key: str | None) -> Idp:
        """Give the IdP a second key (id or name; None removes it): both its keys sign in until one
        is revoked; revoking the IdP's key makes the second its key. Raises AdminError 404, 400 (the
        key is revoked, or is the IdP's key already), 409 (the key is selected for another IdP)."""
        ...

    async def rename_idp(self, idp_id: str, name: str, icon: str) -> Idp:
        """Give the IdP a new name (stripped) and icon; its IdP ID, key, schema and data stay.
        Raises AdminError 404, 409 (another IdP has the name, any letter case), 400 (empty)."""
        ...

    async def clear_idp(self, idp_id: str) -> tuple[int, int]:
        """Delete every user and group the IdP has when the call starts, with their memberships;
        the IdP, its key, schema configuration and provisioning log stay. Deleted in short
        transactions, so other writes interleave (a resource created meanwhile may remain). Returns
        (users, groups) deleted. Raises AdminError 404."""
        ...

    async def flush_last_used(self) -> None:
        """Store the keys' last-use times recorded by authenticate (batched: sign-ins never write)."""
        ...

    async def counts(self, idp_id: str) -> dict[str, int]:
        """{"users": n, "groups": n} of the IdP (0 and 0 for an unknown one)."""
        ...


class ConsoleStore(Protocol):
    """The admin console's own data: settings, sessions, and pages of the directory."""

    async def get_setting(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    async def set_setting(self, key: str, value: str) -> None:
        """Store the value, replacing any."""
        ...

    async def setting_or_create(self, key: str, value: str) -> str:
        """The stored value, storing `value` first when there is none; racing callers get one same value."""
        ...

    async def create_admin_session(self, session: AdminSession, client: str | None) -> None:
        """Store a session (by its id's hash); expired sessions are removed meanwhile."""
        ...

    async def get_admin_session(self, id_hash: str) -> AdminSession | None:
        """The session, or None when unknown or expired."""
        ...

    async def delete_admin_sessions(self, id_hash: str | None = None) -> None:
        """Delete one session (sign-out), or every session (None: the admin password changed)."""
        ...

    async def directory_page(
        self,
        rtype: str,
        idp_id: str,
        where: Node | None,
        *,
        text: str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> DirectoryPage:
        """A page of at most `limit` users (with their groups) or groups (with member counts) in name
        order, after the name `after` or before the name `before` (keyset paging; fewer than a page
        before it gives the first page), matching the filter `where` and the plain search `text`
        (in the name, users' given or family name, or equal to the externalId or id).
        Raises ScimError 400 invalidFilter, 400 tooMany, 503."""
        ...

    async def group_members(self, idp_id: str, group_id: str, limit: int) -> tuple[int, list[dict]]:
        """How many direct members the group has, and the first `limit` ({"value", "type", "display"})."""
        ...


class LogStore(Protocol):
    """The provisioning log: one record per SCIM request, buffered by web/observe.py."""

    async def append_logs(self, records: list[LogRecord]) -> None:
        """Store the records (their id and resource_name are ignored) in one write. Raises ScimError 503/429."""
        ...

    async def prune_logs(self, max_age_days: int, max_rows: int) -> int:
        """Delete records older than max_age_days, and beyond the newest max_rows (0: no limit);
        returns how many were deleted."""
        ...

    async def query_logs(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        """Matching records newest first (time, then id), at most query.limit, and whether older ones match too;
        with query.after_id, the records written after that one, oldest first (by id), and whether more follow."""
        ...

    async def get_log(self, log_id: int) -> LogRecord | None:
        """The record, or None (never written, or pruned)."""
        ...

    async def log_counters(self, idp_ids: list[str], since: str) -> dict[str, LogCounters]:
        """Per IdP: operations and failures since `since`, and the time of its newest record ever."""
        ...

    async def failure_groups(self, since: str, limit: int = 10) -> list[FailureGroup]:
        """Failures since `since` (as FAILURE_SQL counts them) that happened more than once alike
        (same IdP, status, operation and client address), most first, at most `limit` groups."""
        ...

    async def activity(self, idp_id: str, since: str, bucket_chars: int) -> list[tuple[str, int, int]]:
        """The IdP's records since `since`, counted per time bucket: (the first `bucket_chars`
        characters of their time, e.g. 13 for an hour "2026-12-06T22", operations, failures as
        log_counters counts them), oldest bucket first; buckets without records are left out."""
        ...

    async def ignored_attributes(self, idp_id: str, limit: int = 50) -> list[IgnoredAttribute]:
        """What the IdP's logged requests sent that its tenant did not keep (LogRecord.ignored),
        summed per name over the records still in the log: most requests first, then by name; at
        most `limit`."""
        ...


class FaultStore(Protocol):
    """Fault injection rules (web/faults.py): stored so that they outlive a restart and reach every
    instance sharing the database; each process reads the active ones about once a second."""

    async def add_fault_rule(self, rule: FaultRule) -> None:
        """Store the rule (the caller has checked it); rules expired before now are deleted meanwhile."""
        ...

    async def fault_rules(self, now: str) -> list[FaultRule]:
        """The rules that expire after `now`, oldest first."""
        ...

    async def delete_fault_rules(self, idp_id: str, rule_id: str | None = None) -> int:
        """Delete the IdP's rules (or only the one with `rule_id`); returns how many were deleted."""
        ...


class EventStore(Protocol):
    """Event subscriptions and the outbox (web/events/). The outbox is written by ResourceStore's
    writes (EventSource); every subscription of an IdP reads its events in seq order from its
    cursor. A delivery round of a subscription is done by one process at a time (claim_subscription)."""

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        """Store it with its cursor at the newest event now (it receives what is committed after);
        the IdP's sign-ins say at once in this process, within AUTH_RECHECK_SECONDS in others, that
        its writes make events. Returns it as stored. Raises AdminError 404 (no such IdP)."""
        ...

    async def subscriptions(self, idp_id: str | None = None) -> list[Subscription]:
        """The IdP's subscriptions (None: every IdP's), oldest first."""
        ...

    async def subscription(self, subscription_id: str) -> Subscription | None: ...

    async def set_subscription_state(self, subscription_id: str, state: str, cursor: int | None = None) -> bool:
        """Set the state ("active", "paused", "failed"), clearing the retry clock; with `cursor`,
        move the cursor there too (redeliver from a point). False when there is no such subscription."""
        ...

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete it and its attempts. False when there is no such subscription."""
        ...

    async def claim_subscription(self, subscription_id: str, owner: str, until: str, now: str) -> bool:
        """Take the delivery lease of the subscription for `owner` until `until`, when no other
        owner holds one that lasts past `now` (renewing one's own). False when another holds it."""
        ...

    async def outbox_after(self, idp_id: str, after: int, limit: int) -> list[OutboxEvent]:
        """The IdP's events with seq > after, oldest first, at most `limit`."""
        ...

    async def outbox_event(self, seq: int) -> OutboxEvent | None: ...

    async def record_delivery(self, progress: DeliveryProgress) -> None:
        """Store a delivery round's outcome in one write: cursor (never moved back by it),
        counters added, attempts appended, state and last error when given."""
        ...

    async def delivery_attempts(
        self, subscription_id: str, seq: int | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        """The subscription's attempts (at one event, or at any), newest first, at most `limit`."""
        ...

    async def acked_after(self, subscription_id: str, after: int) -> set[int]:
        """The seqs above `after` that a poll receiver acknowledged or rejected (RFC 8936)."""
        ...

    async def outbox_stats(self) -> dict[str, int]:
        """{"events": rows in the outbox, "newest": the newest seq ever (0: none), "pending": events
        after the cursors of subscriptions not yet done with them, summed}."""
        ...

    async def pending_count(self, subscription: Subscription) -> int:
        """The IdP's events after the subscription's cursor (wanted or not)."""
        ...

    async def prune_outbox(self, max_rows: int, older_than: str | None) -> int:
        """Delete the events of IdPs without subscriptions, and the events beyond the bounds (all
        but the newest max_rows, 0: no bound; those before the time `older_than`, None: no bound),
        delivered or not: each subscription counts those it was not done with as `dropped` and
        its cursor moves past them. Attempts at deleted events go too. The newest event always
        stays (on SQLite its seq is a rowid that must never be handed out again). Returns how many
        events were deleted."""
        ...


# Every table that holds data, in an order that satisfies the foreign keys (api_keys before idps):
# what copy-database copies. schema_version and auth_epoch belong to the schema, not the data.
TABLES = (
    "api_keys",
    "idps",
    "users",
    "groups",
    "group_members",
    "provisioning_log",
    "settings",
    "admin_sessions",
    "deleted_idps",
    "fault_rules",
    "event_subscriptions",
    "events",
    "event_attempts",
)


class OperationsStore(Protocol):
    """The backend's life cycle and health (app.py, /readyz, /metrics, the CLI)."""

    batches: int  # write transactions committed since open()

    async def open(self) -> None:
        """Connect; the schema must be migrated (see migrate). Raises the driver's error when it cannot."""
        ...

    async def close(self) -> None:
        """Store the last-use times (a database that cannot store them is logged, not raised) and disconnect."""
        ...

    async def migrate(self) -> list[str]:
        """Apply the pending schema migrations, each in its own transaction; returns their names in
        order (empty when up to date). Works before open(), and creates the database when needed."""
        ...

    async def pending_migrations(self) -> list[str]:
        """The names of the migrations not applied yet (all of them for an empty database). Works before open()."""
        ...

    async def backup(self, destination: str) -> dict[str, int]:
        """A consistent copy of the database (one snapshot, also while the server writes) at
        `destination`, checked before it is put there; returns its {"users": n, "groups": n}.
        Raises AdminError when there is no database, the destination exists, or the copy fails."""
        ...

    def export_rows(self, table: str, batch_size: int) -> AsyncIterator[list[dict]]:
        """The rows of `table` (one of TABLES) in batches of at most `batch_size`, in creation order
        (primary key order), all read from one snapshot. Values are backend-neutral: booleans as
        bool, documents as dict, timestamps as their stored ISO text, and the creation order of
        users and groups as "seq" (SQLite's rowid). Works before open()."""
        ...

    async def import_rows(self, batches: AsyncIterable[tuple[str, list[dict]]]) -> dict[str, int]:
        """Insert (table, rows) batches as export_rows gives them, all in one transaction, after
        migrating; identity sequences are then set past the largest value so new rows continue.
        Returns the rows inserted per table. Raises AdminError, having written nothing, when any
        table of TABLES already has rows. Works before open()."""
        ...

    async def readiness(self, timeout: float) -> dict[str, str]:
        """{"database", "migrations", "writer", "disk"} -> "ok" or what is wrong, in words that name
        no path (the answer is public). Probes of the database that take longer than `timeout`
        seconds each are reported as not answering."""
        ...

    async def stats(self) -> StorageStats:
        """The write queue, the batches committed and the database's size on disk, for /metrics."""
        ...

    async def describe(self) -> list[str]:
        """check-config's lines about the database: where it is and its state (missing, unreadable,
        pending migrations, up to date). Works before open() and changes nothing."""
        ...

    @property
    def write_queue_depth(self) -> int:
        """Writes waiting for the database now."""
        ...


class Store(ResourceStore, AdminStore, ConsoleStore, LogStore, FaultStore, EventStore, OperationsStore, Protocol):
    """Everything a backend offers: what app.py builds with storage.create_store and hands to web/."""
