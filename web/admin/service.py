"""The admin operations: one implementation behind the CLI (app.py), the console (/admin) and the
admin API (/v1/admin). No HTTP here: callers turn AdminError into an exit status, a page or a JSON error.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from scim.errors import ScimError, shown
from scim.extensions import parse_declarations
from scim.filters import Node, format_datetime, parse_filter
from scim.profiles import PROFILES, Profile, profile_named
from scim.resources import to_resource
from scim.schemas import GROUP_TYPE, USER_TYPE, ResourceType
from scim.tenant import Tenant
from scim.validate import validate_resource
from settings import Settings
from storage import (
    AdminError,
    ApiKey,
    DirectoryPage,
    FailureGroup,
    FaultRule,
    Idp,
    IgnoredAttribute,
    LogCounters,
    LogQuery,
    LogRecord,
    SchemaConfig,
    Store,
)
from storage.common import now
from web.admin import security
from web.admin.charts import WINDOWS, Activity, activity_chart, window_start
from web.admin.schema_changes import describe_changes
from web.events import Events
from web.faults import DEFAULT_PRESET_MINUTES, KINDS, PRESETS, Faults, new_rule

# The built-in IdP icons: inline SVG (24x24 viewBox) drawn with currentColor, nothing downloaded.
ICONS: dict[str, tuple[str, str]] = {
    "key": ("Key", '<circle cx="8" cy="15" r="4"/><path d="M10.8 12.2 20 3M16 7l3 3M14 9l2 2"/>'),
    "cloud": ("Cloud", '<path d="M7 18h10a4 4 0 0 0 .6-7.96A6 6 0 0 0 6.1 9.1 4.5 4.5 0 0 0 7 18z"/>'),
    "shield": ("Shield", '<path d="M12 3 5 6v5c0 4.5 3 8.3 7 10 4-1.7 7-5.5 7-10V6z"/><path d="m9 12 2 2 4-4"/>'),
    "building": (
        "Building",
        '<path d="M4 21V4h10v17M14 9h6v12M2 21h20M7 8h1M10 8h1M7 12h1M10 12h1M7 16h1M10 16h1M17 13h.5M17 17h.5"/>',
    ),
    "globe": (
        "Globe",
        '<circle cx="12" cy="12" r="9"/><path d="M3 12h18M12 3c2.5 2.7 3.7 5.7 3.7 9s-1.2 6.3-3.7 9'
        'c-2.5-2.7-3.7-5.7-3.7-9S9.5 5.7 12 3z"/>',
    ),
    "windows": ("Four squares", '<path d="M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z"/>'),
    "users": (
        "People",
        '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20c.6-3.6 3.2-5.5 6.5-5.5s5.9 1.9 6.5 5.5"/>'
        '<path d="M16 4.8a3.5 3.5 0 0 1 0 6.4M18.5 14.8c1.6.9 2.7 2.6 3 5.2"/>',
    ),
    "lock": ("Lock", '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>'),
}

# Operation names as scim.operations.classify gives them, offered by the log filter.
OPERATIONS = (
    "Create User",
    "Update User",
    "Replace User",
    "Disable User",
    "Enable User",
    "Delete User",
    "Get User",
    "Find User",
    "List Users",
    "Search Users",
    "Create Group",
    "Update Group",
    "Replace Group",
    "Add members",
    "Remove members",
    "Update members",
    "Delete Group",
    "Get Group",
    "Find Group",
    "List Groups",
    "Search Groups",
    "Test connection",
    "Read ServiceProviderConfig",
    "Read Schemas",
    "Read ResourceTypes",
    "Bulk request",
    "Search Users and Groups",
)

PASSWORD_SETTING = "admin_password"
MAX_NAME = 100
MAX_DESCRIPTION = 500
MAX_PAGE = 200
MEMBERS_SHOWN = 500
MAX_LOG_SEARCH = 200
# How many stored users the IdP page checks against the IdP's rules (a page, not a batch job: a
# larger directory is said to be checked in part), and how many failing ones it names.
MAX_CHECKED_USERS = 20_000
FAILING_EXAMPLES = 10
MAX_ROW_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger number is no row's id, and SQLite refuses to compare it
# A search that starts like `attr op ...`, `(` or `not (` is a SCIM filter; anything else is plain text.
_FILTER_START = re.compile(
    r"^\s*(\(|not\s*\(|[a-z][\w.:$-]*(\[[^\]]*\])?(\.[a-z]\w*)?\s+(eq|ne|co|sw|ew|gt|ge|lt|le|pr)\b)", re.I
)


@dataclass
class FailingUsers:
    """Stored users that the IdP's rules would refuse on their next write, as the IdP page says."""

    failing: int
    checked: int
    complete: bool  # every stored user was checked (else the first MAX_CHECKED_USERS by name)
    examples: list[tuple[str, str, str]]  # (id, userName, what fails) of the first FAILING_EXAMPLES


@dataclass
class SchemaUpdate:
    """An IdP after its schema configuration changed, what changed, and the stored users it affects."""

    idp: Idp
    changes: list[str]
    failing: FailingUsers


@dataclass
class ExtensionValues:
    """The values a resource carries under one extension schema, as the console lists them."""

    urn: str
    title: str  # the schema's name ("Acme"), the URN when the schema is no longer declared
    values: dict


@dataclass
class UnansweredValue:
    """A stored value that SCIM answers leave out: its attribute is no longer declared, or it is
    declared returned: never. The stored document keeps it; the console shows it."""

    urn: str
    name: str
    value: object
    reason: str  # "no longer declared" or "returned: never"


@dataclass
class ResourceView:
    """A user or group as the console shows it: the SCIM resource, its extension values by schema,
    and what is stored but not answered."""

    resource: dict
    extensions: list[ExtensionValues]
    unanswered: list[UnansweredValue]


@dataclass
class GroupDetail(ResourceView):
    member_total: int  # the resource carries at most MEMBERS_SHOWN members


class AdminService:
    def __init__(
        self, store: Store, settings: Settings, faults: Faults | None = None, events: Events | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        # Event subscriptions (web/events/): the console, the admin API and the CLI manage them here.
        self.events = events or Events(store, settings)
        # The server's fault rules in memory, refreshed at once after a change here (other
        # processes, and the CLI's changes, are picked up within faults.REFRESH_SECONDS).
        self.faults = faults

    # --- API keys --------------------------------------------------------------------------------

    async def api_keys(self) -> list[ApiKey]:
        return await self.store.list_api_keys()

    async def create_api_key(
        self, name: str, description: str, users_write: bool, groups_write: bool
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret exists only in this return value."""
        _check_length("name", name.strip(), MAX_NAME)
        _check_length("description", description, MAX_DESCRIPTION)
        return await self.store.create_api_key(name, description.strip(), users_write, groups_write)

    async def revoke_api_key(self, id_or_name: str) -> ApiKey:
        return await self.store.revoke_api_key(id_or_name)

    async def api_key(self, id_or_name: str) -> ApiKey:
        return await self.store.find_api_key(id_or_name)

    @staticmethod
    def key_json(key: ApiKey) -> dict:
        return {
            "id": key.id,
            "name": key.name,
            "description": key.description,
            "privileges": key.privileges,
            "created": key.created,
            "last_used": key.last_used,
            "revoked": key.revoked,
        }

    # --- IdPs -----------------------------------------------------------------------------------

    async def idps(self) -> list[Idp]:
        return await self.store.list_idps()

    async def idp_names(self) -> dict[str, str]:
        """IdP ID -> name, for naming the IdP of log records: those of a deleted IdP outlive it."""
        names = {idp_id: f"{name} (deleted)" for idp_id, name in (await self.store.deleted_idp_names()).items()}
        names.update((idp.id, idp.name) for idp in await self.store.list_idps())
        return names

    async def idp(self, idp_id: str) -> Idp:
        return await self.store.get_idp(idp_id)

    async def create_idp(
        self,
        name: str,
        icon: str,
        api_key: str | None,
        *,
        profile: str | None = None,
        strict: bool = False,
        extensions: object = None,
    ) -> Idp:
        """A new IdP; its schema profile (default meta-networks), strict switch and extension
        declarations (a JSON array, see scim.extensions) are checked first: AdminError 400 says what to fix."""
        _check_length("name", name.strip(), MAX_NAME)
        if icon not in ICONS:
            raise AdminError(f"Unknown icon {shown(icon)}; choose one of {', '.join(ICONS)}")
        schema = schema_config(SchemaConfig(), profile=profile, strict=strict, extensions=extensions)
        return await self.store.create_idp(name, icon, api_key or None, schema)

    async def update_idp_schema(
        self, idp_id: str, *, profile: str | None = None, strict: bool | None = None, extensions: object = None
    ) -> SchemaUpdate:
        """Change what is given of the IdP's schema configuration (None: keep it). Stored data is
        never touched; the answer says what changed and which stored users the new rules refuse."""
        idp = await self.store.get_idp(idp_id)
        schema = schema_config(idp.schema, profile=profile, strict=strict, extensions=extensions)
        changes = describe_changes(idp.schema, schema)
        if changes:
            idp = await self.store.set_idp_schema(idp.id, schema)
        return SchemaUpdate(idp, changes, await self.failing_users(idp))

    async def add_extension_attribute(self, idp_id: str, urn: str, resource_type: str, attribute: dict) -> SchemaUpdate:
        """Declare one more attribute: in the declared schema `urn` (any letter case), or in a new
        schema of that URN extending `resource_type`. The whole declaration list is checked again."""
        idp = await self.store.get_idp(idp_id)
        declarations: list[dict] = orjson.loads(idp.schema.extensions)
        urn = urn.strip()
        declared = next((item for item in declarations if item["id"].lower() == urn.lower()), None)
        if declared is None:
            declarations.append({"id": urn, "resourceType": resource_type, "attributes": [attribute]})
        elif declared["resourceType"] != resource_type:
            raise AdminError(
                f"{declared['id']} extends {declared['resourceType']}, not {shown(resource_type)}: "
                f"choose {declared['resourceType']}, or declare a schema of another URN for {shown(resource_type)}"
            )
        else:
            declared["attributes"].append(attribute)
        return await self.update_idp_schema(idp.id, extensions=declarations)

    async def remove_extension(self, idp_id: str, urn: str, attribute: str | None = None) -> SchemaUpdate:
        """Remove one declared attribute (its schema too when it was the last), or a whole schema.
        Stored values stay; SCIM answers leave them out from now on."""
        idp = await self.store.get_idp(idp_id)
        declarations: list[dict] = orjson.loads(idp.schema.extensions)
        declared = next((item for item in declarations if item["id"] == urn), None)
        if declared is None:
            raise AdminError(f"This IdP declares no extension schema {shown(urn)}")
        if attribute is not None:
            kept = [attr for attr in declared["attributes"] if attr["name"] != attribute]
            if len(kept) == len(declared["attributes"]):
                raise AdminError(f"{urn} declares no attribute {shown(attribute)}")
            declared["attributes"] = kept
        if attribute is None or not declared["attributes"]:
            declarations.remove(declared)
        return await self.update_idp_schema(idp.id, extensions=declarations)

    async def failing_users(self, idp: Idp) -> FailingUsers:
        """The stored users (the first MAX_CHECKED_USERS by userName) that the IdP's rules refuse."""
        rtype = idp.schema.tenant.user
        failing, checked = 0, 0
        examples: list[tuple[str, str, str]] = []
        after: str | None = None
        while checked < MAX_CHECKED_USERS:
            page = await self.store.directory_page(
                USER_TYPE.name, idp.id, None, after=after, limit=min(MAX_PAGE, MAX_CHECKED_USERS - checked)
            )
            for row in page.rows:
                try:
                    validate_resource(rtype, dict(row.doc), limits=self.settings.scim.limits)
                except ScimError as exc:
                    failing += 1
                    if len(examples) < FAILING_EXAMPLES:
                        examples.append((row.id, str(row.doc.get("userName", "")), exc.detail))
            checked += len(page.rows)
            if not page.has_next:
                return FailingUsers(failing, checked, True, examples)
            after = page.last
        return FailingUsers(failing, checked, False, examples)

    async def ignored_attributes(self, idp_id: str) -> list[IgnoredAttribute]:
        """What the IdP's requests sent that its tenant does not keep, most often sent first."""
        return await self.store.ignored_attributes(idp_id)

    async def idp_schema_report(self, idp: Idp) -> dict:
        """The IdP's schema configuration, the Entra mapping it implies, the stored users its rules
        refuse and what its requests sent that it does not keep (the admin API's and CLI's view)."""
        return {
            "schema": schema_json(idp.schema),
            "failing_users": failing_json(await self.failing_users(idp)),
            "ignored": [
                {"name": item.name, "requests": item.requests, "first": item.first, "last": item.last}
                for item in await self.ignored_attributes(idp.id)
            ],
        }

    async def configure_scim(self, idp_id: str, api_key: str) -> Idp:
        """Select the API key whose secret Entra sends for this IdP (the connector's "Configure SCIM")."""
        if not api_key:
            raise AdminError("Select an API key for SCIM")
        return await self.store.set_idp_api_key(idp_id, api_key)

    async def set_second_key(self, idp_id: str, api_key: str | None) -> Idp:
        """Start a rotation (a second key that signs in beside the IdP's key) or end it (None).
        Revoking the IdP's key ends it too: the second key becomes the IdP's key."""
        if api_key is not None and not api_key.strip():
            raise AdminError("Select the API key to add as the second key")
        return await self.store.set_idp_second_key(idp_id, api_key.strip() if api_key else None)

    async def shared_keys(self) -> dict[str, list[Idp]]:
        """API keys selected for more than one IdP, with those IdPs: a database from before a key was
        bound to one IdP may hold such keys. They keep signing in to each; the console and the
        server's start-up log name them, so each IdP can be given a key of its own."""
        by_key: dict[str, list[Idp]] = {}
        for idp in await self.store.list_idps():
            if idp.api_key_id:
                by_key.setdefault(idp.api_key_id, []).append(idp)
        return {key_id: idps for key_id, idps in by_key.items() if len(idps) > 1}

    async def selectable_keys(self, idp_id: str | None = None) -> list[ApiKey]:
        """The keys an IdP may select: not revoked and not selected for another IdP (or its own already)."""
        idps = await self.store.list_idps()
        own = {key for idp in idps if idp.id == idp_id for key in (idp.api_key_id, idp.second_api_key_id)}
        taken = {key for idp in idps if idp.id != idp_id for key in (idp.api_key_id, idp.second_api_key_id)} - own
        return [key for key in await self.store.list_api_keys() if not key.revoked and key.id not in taken]

    async def delete_idp(self, idp_id: str) -> Idp:
        idp = await self.store.get_idp(idp_id)
        await self.store.delete_idp(idp.id)
        return idp

    async def rename_idp(self, idp_id: str, name: str, icon: str | None = None) -> Idp:
        """A new name (and icon, None keeps it) for the IdP: its tenant URL, key and data stay."""
        _check_length("name", name.strip(), MAX_NAME)
        idp = await self.store.get_idp(idp_id)
        icon = icon or idp.icon
        if icon not in ICONS:
            raise AdminError(f"Unknown icon {shown(icon)}; choose one of {', '.join(ICONS)}")
        return await self.store.rename_idp(idp.id, name, icon)

    async def clear_idp(self, idp_id: str) -> tuple[Idp, int, int]:
        """Delete the IdP's users and groups, keeping the IdP (its ID, key, profile and logs):
        (the IdP, users deleted, groups deleted)."""
        idp = await self.store.get_idp(idp_id)
        users, groups = await self.store.clear_idp(idp.id)
        return idp, users, groups

    def idp_json(self, idp: Idp) -> dict:
        return {
            "id": idp.id,
            "name": idp.name,
            "icon": idp.icon,
            "api_key_id": idp.api_key_id,
            "second_api_key_id": idp.second_api_key_id,
            "created": idp.created,
            "tenant_url": self.settings.tenant_url(idp.id),
            "schema": schema_json(idp.schema),
        }

    # --- fault injection ------------------------------------------------------------------------

    async def add_fault(
        self,
        idp_id: str,
        *,
        preset: str | None = None,
        kind: str | None = None,
        fraction: object = None,
        minutes: object = DEFAULT_PRESET_MINUTES,
        method: str | None = None,
        resource: str | None = None,
        operation: str | None = None,
        retry_after: object = None,
        delay_ms: object = None,
    ) -> FaultRule:
        """A fault rule for the IdP's SCIM requests, from a preset (web.faults.PRESETS) or spelled
        out; expires after `minutes` (at most 24 hours). AdminError 400 says what to fix."""
        idp = await self.store.get_idp(idp_id)
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise AdminError(f"minutes must be a number (1 to 1440), not {shown(minutes)}")
        if preset is not None:
            if preset not in PRESETS:
                raise AdminError(f"Unknown preset {shown(preset)}; choose one of {', '.join(PRESETS)}")
            _, kind, fraction, retry_after = PRESETS[preset]
        if kind is None:
            raise AdminError(f"Choose a preset ({', '.join(PRESETS)}) or a kind ({', '.join(KINDS)})")
        if fraction is None:
            raise AdminError("fraction is the share of matching requests that get the fault, above 0 and at most 1")
        rule = new_rule(
            idp.id,
            kind,
            fraction,
            minutes * 60,
            method=method or None,
            resource=resource or None,
            operation=operation or None,
            retry_after=retry_after,
            delay_ms=delay_ms,
        )
        await self.store.add_fault_rule(rule)
        await self._faults_changed()
        return rule

    async def fault_rules(self, idp_id: str | None = None) -> list[FaultRule]:
        """The active rules (of one IdP, or of all), oldest first."""
        rules = await self.store.fault_rules(now())
        return [rule for rule in rules if idp_id is None or rule.idp_id == idp_id]

    async def clear_faults(self, idp_id: str, rule_id: str | None = None) -> int:
        """Turn the IdP's rules off (or one of them); how many were on. AdminError 404 for an unknown rule."""
        idp = await self.store.get_idp(idp_id)
        deleted = await self.store.delete_fault_rules(idp.id, rule_id)
        if rule_id is not None and not deleted:
            raise AdminError(f"IdP {shown(idp.name)} has no fault rule {shown(rule_id)}", 404)
        await self._faults_changed()
        return deleted

    async def fault_banner(self) -> list[tuple[str, str, int]]:
        """(IdP name, IdP ID, rules on) of every IdP with fault rules on, for the console's banner:
        from the server's rules in memory (read about once a second), so a page costs no read."""
        if self.faults is not None:
            counts = {idp_id: len(rules) for idp_id, rules in self.faults.active.items() if rules}
        else:
            counts = {}
            for rule in await self.fault_rules():
                counts[rule.idp_id] = counts.get(rule.idp_id, 0) + 1
        if not counts:
            return []
        names = {idp.id: idp.name for idp in await self.store.list_idps()}
        return [(names.get(idp_id, idp_id), idp_id, count) for idp_id, count in counts.items()]

    async def _faults_changed(self) -> None:
        if self.faults is not None:
            await self.faults.refresh()

    # --- directory ------------------------------------------------------------------------------

    async def tenant(self, idp_id: str) -> Tenant:
        """The IdP's resource types, as its SCIM requests get them (raises AdminError 404)."""
        return (await self.store.get_idp(idp_id)).schema.tenant

    def parse_search(self, rtype: ResourceType, text: str | None) -> tuple[Node | None, str | None]:
        """The admin's search box: (a SCIM filter, None) or (None, plain text to look for in the names)."""
        text = (text or "").strip()
        if not text:
            return None, None
        if _FILTER_START.match(text):
            limits = self.settings.scim
            return parse_filter(
                text, rtype, max_length=limits.max_filter_length, max_depth=limits.max_filter_depth
            ), None
        _check_length("search text", text, MAX_NAME)
        return None, text

    async def directory(
        self,
        rtype: ResourceType,
        idp_id: str,
        text: str | None = None,
        *,
        after: str | None = None,
        before: str | None = None,
        count: int = 50,
    ) -> DirectoryPage:
        """A page of users or groups of one IdP in name order; raises ScimError for a bad filter.
        The filter is read with the IdP's own resource type (`rtype` says which), so it may name
        the IdP's declared extension attributes."""
        rtype = (await self.tenant(idp_id)).type_named(rtype.name)
        where, plain = self.parse_search(rtype, text)
        return await self.store.directory_page(
            rtype.name,
            idp_id,
            where,
            text=plain,
            after=after or None,
            before=before or None,
            limit=min(max(count, 1), MAX_PAGE),
        )

    def resource(
        self,
        rtype: ResourceType,
        idp_id: str,
        row_id: str,
        doc: dict,
        version: int,
        created: str,
        modified: str,
        members: list[dict] | None = None,
        groups: list[dict] | None = None,
    ) -> dict:
        """The resource exactly as a SCIM client of this IdP reads it."""
        return to_resource(
            rtype,
            row_id,
            doc,
            version=version,
            created=created,
            modified=modified,
            base_url=self.settings.tenant_url(idp_id),
            members=members,
            groups=groups,
        )

    async def user(self, idp_id: str, user_id: str) -> dict:
        """The user as a SCIM client of this IdP reads it."""
        return (await self.user_view(idp_id, user_id)).resource

    async def user_view(self, idp_id: str, user_id: str) -> ResourceView:
        rtype = (await self.tenant(idp_id)).user
        row = await self.store.get(USER_TYPE.name, idp_id, user_id, members=True)
        if row is None:
            raise AdminError(f"No user with id {shown(user_id)} in this IdP", 404)
        resource = self.resource(
            rtype, idp_id, row.id, row.doc, row.version, row.created, row.modified, groups=row.groups
        )
        return ResourceView(resource, extension_values(rtype, resource), unanswered_values(rtype, row.doc))

    async def group(self, idp_id: str, group_id: str) -> GroupDetail:
        """A group with its first MEMBERS_SHOWN members: a 100,000-member group is never loaded whole."""
        rtype = (await self.tenant(idp_id)).group
        row = await self.store.get(GROUP_TYPE.name, idp_id, group_id, members=False)
        if row is None:
            raise AdminError(f"No group with id {shown(group_id)} in this IdP", 404)
        total, members = await self.store.group_members(idp_id, group_id, MEMBERS_SHOWN)
        resource = self.resource(
            rtype, idp_id, row.id, row.doc, row.version, row.created, row.modified, members=members
        )
        return GroupDetail(resource, extension_values(rtype, resource), unanswered_values(rtype, row.doc), total)

    # --- provisioning logs ------------------------------------------------------------------------

    async def logs(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        return await self.store.query_logs(query)

    async def activity(self, idp_id: str, windows: tuple[str, ...] = tuple(WINDOWS)) -> list[Activity]:
        """The IdP's activity charts, one per window (web/admin/charts.py), each ending now."""
        moment = datetime.now(UTC)
        charts = []
        for window in windows:
            first, chars = window_start(window, moment)
            counted = await self.store.activity(idp_id, format_datetime(first), chars)
            charts.append(activity_chart(window, counted, moment, f"chart-{idp_id}-{window}"))
        return charts

    async def repeated_failures(self, minutes: int = 60) -> list[FailureGroup]:
        """Failures alike in the last `minutes`, grouped (LogStore.failure_groups), most first."""
        return await self.store.failure_groups(format_datetime(datetime.now(UTC) - timedelta(minutes=minutes)))

    async def timeline(self, idp_id: str, resource_id: str) -> tuple[list[LogRecord], bool]:
        """The requests addressed to one resource (its create, reads, writes, delete), oldest first:
        the last TIMELINE_RECORDS of them, and whether older ones exist too."""
        records, more = await self.store.query_logs(
            LogQuery(idp_id=idp_id, resource_id=resource_id, limit=TIMELINE_RECORDS, bodies=False)
        )
        return records[::-1], more

    async def export_logs(self, query: LogQuery, fmt: str) -> AsyncIterator[bytes]:
        """The records `query` matches (its limit aside), newest first, as CSV or NDJSON, read from
        the store EXPORT_BATCH at a time: an export of a million records never holds more than one
        batch. The fields are log_json's (no bodies)."""
        if fmt == "csv":
            yield _csv_line(EXPORT_FIELDS)
        batch = dataclasses.replace(query, limit=EXPORT_BATCH)
        while True:
            records, more = await self.store.query_logs(batch)
            lines = [self.log_json(record) for record in records]
            if fmt == "csv":
                yield b"".join(_csv_line([_csv_value(line[field]) for field in EXPORT_FIELDS]) for line in lines)
            else:
                yield b"".join(orjson.dumps(line) + b"\n" for line in lines)
            if not more or not records:
                return
            batch = dataclasses.replace(batch, before_id=records[-1].id)

    async def log(self, log_id: int) -> LogRecord:
        record = await self.store.get_log(log_id) if 0 <= log_id <= MAX_ROW_ID else None
        if record is None:
            raise AdminError(f"No provisioning log record {log_id} (it may have been pruned)", 404)
        return record

    async def counters(self, hours: int = 24) -> dict[str, LogCounters]:
        """Per IdP: operations and failures in the last `hours`, and its last activity."""
        since = format_datetime(datetime.now(UTC) - timedelta(hours=hours))
        return await self.store.log_counters([idp.id for idp in await self.store.list_idps()], since)

    @staticmethod
    def log_json(record: LogRecord, *, bodies: bool = False) -> dict:
        data = {
            "id": record.id,
            "time": record.time,
            "idp_id": record.idp_id,
            "api_key_id": record.api_key_id,
            "method": record.method,
            "path": record.path,
            "operation": record.operation,
            "resource_type": record.resource_type,
            "resource_id": record.resource_id,
            "target": record.target,
            "resource_name": record.resource_name,
            "status": record.status,
            "outcome": "probe" if record.probe else "failure" if record.failed else "success",
            "scim_type": record.scim_type,
            "detail": record.detail,
            "ignored": record.ignored_names,
            "injected": record.injected,
            "bulk_request": record.bulk_request,
            "duration_ms": record.duration_ms,
            "client": record.client,
        }
        if bodies:
            data["request_body"] = record.request_body
            data["response_body"] = record.response_body
        return data

    # --- admin password ---------------------------------------------------------------------------

    async def ensure_admin_password(self) -> str | None:
        """On first start: generate the admin password, keep only its hash and return it (else None)."""
        if self.settings.admin.password or await self.store.get_setting(PASSWORD_SETTING):
            return None
        password = security.new_password()
        stored = await self.store.setting_or_create(
            PASSWORD_SETTING, await asyncio.to_thread(security.hash_password, password)
        )
        # Another process may have stored its own first; then that one's password is the one in force.
        return password if security.verify_password(password, stored) else None

    async def set_admin_password(self, password: str) -> None:
        """Replace the stored admin password and sign every console session out."""
        if len(password) < security.MIN_PASSWORD_LENGTH:
            raise AdminError(f"The admin password needs at least {security.MIN_PASSWORD_LENGTH} characters")
        await self.store.set_setting(PASSWORD_SETTING, await asyncio.to_thread(security.hash_password, password))
        await self.store.delete_admin_sessions()

    async def check_admin_password(self, password: str) -> bool:
        configured = self.settings.admin.password
        if configured:
            return security.matches_configured(password, configured)
        stored = await self.store.get_setting(PASSWORD_SETTING)
        if stored is None:
            return False
        return await asyncio.to_thread(security.verify_password, password, stored)

    @property
    def password_source(self) -> str:
        return "config" if self.settings.admin.password else "database"


def extension_values(rtype: ResourceType, resource: dict) -> list[ExtensionValues]:
    """The extension containers of an answered resource, in the order the resource type lists them."""
    return [
        ExtensionValues(urn, rtype.schemas[urn].name, resource[urn])
        for urn in rtype.extensions
        if isinstance(resource.get(urn), dict)
    ]


def unanswered_values(rtype: ResourceType, doc: dict) -> list[UnansweredValue]:
    """The stored extension values that rtype.answered_doc leaves out of SCIM answers, and why."""
    out: list[UnansweredValue] = []
    for urn, container in doc.items():
        if ":" not in urn or not isinstance(container, dict):
            continue
        answered = rtype.answered.get(urn, frozenset())
        schema = rtype.schemas.get(urn) if urn in rtype.extensions else None
        for name, value in container.items():
            if name in answered:
                continue
            declared = schema is not None and any(attr.name == name for attr in schema.attributes)
            out.append(UnansweredValue(urn, name, value, "returned: never" if declared else "no longer declared"))
    return out


def schema_config(
    current: SchemaConfig, *, profile: str | None = None, strict: bool | None = None, extensions: object = None
) -> SchemaConfig:
    """`current` with what is given replaced, each part checked: AdminError 400 says what to fix.
    `extensions` is the declarations as parsed JSON (a list) or JSON text."""
    if profile is not None:
        try:
            profile_named(profile)
        except ValueError:
            raise AdminError(f"Unknown schema profile {shown(profile)}; choose one of {', '.join(PROFILES)}") from None
    declared = current.extensions
    if extensions is not None:
        if isinstance(extensions, str | bytes):
            try:
                extensions = orjson.loads(extensions)
            except orjson.JSONDecodeError as exc:
                raise AdminError(f"The extension schemas are not valid JSON: {exc}") from None
        try:
            declared = orjson.dumps(parse_declarations(extensions)).decode()
        except ScimError as exc:
            raise AdminError(exc.detail) from None
    return SchemaConfig(
        current.profile if profile is None else profile,
        current.strict if strict is None else strict,
        declared,
    )


def schema_json(schema: SchemaConfig) -> dict:
    """An IdP's schema configuration as the admin API shows it, with the Entra mapping its profile implies."""
    rules: Profile = profile_named(schema.profile)
    return {
        "profile": rules.name,
        "profile_summary": rules.summary,
        "strict": schema.strict,
        "extensions": orjson.loads(schema.extensions),
        "mappings": [
            {"resource_type": resource_type, "source": m.source, "target": m.target, "rule": m.rule}
            for resource_type, mappings in (("User", rules.user_mappings), ("Group", rules.group_mappings))
            for m in mappings
        ],
    }


def failing_json(failing: FailingUsers) -> dict:
    return {
        "failing": failing.failing,
        "checked": failing.checked,
        "complete": failing.complete,
        "examples": [{"id": i, "userName": name, "detail": detail} for i, name, detail in failing.examples],
    }


def _check_length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise AdminError(f"The {what} is {len(value)} characters long; the limit is {limit}")


def parse_time(text: str | None, what: str) -> str | None:
    """A time from a form or query string (ISO 8601; no zone means UTC) -> the stored form, or None."""
    if not text or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return format_datetime(moment)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves the time outside years 1 to 9999
        raise AdminError(
            f"{what} must be a date and time between years 1 and 9999 such as 2025-01-31T14:00, not {shown(text)}"
        ) from None


# An export's columns (log_json's fields) and the records read from the store at a time.
EXPORT_FIELDS = (
    "id",
    "time",
    "idp_id",
    "api_key_id",
    "method",
    "path",
    "operation",
    "resource_type",
    "resource_id",
    "target",
    "resource_name",
    "status",
    "outcome",
    "scim_type",
    "detail",
    "ignored",
    "injected",
    "bulk_request",
    "duration_ms",
    "client",
)
EXPORT_BATCH = 1000
TIMELINE_RECORDS = 100  # the requests a user's or group's page lists
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


def export_format(fmt: str | None) -> str:
    """The export format asked for (csv when none); AdminError for another."""
    fmt = (fmt or "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise AdminError(f"format must be csv or ndjson, not {shown(fmt)}")
    return fmt


def _csv_value(value: object) -> str:
    """A cell as text. A text a client chose that a spreadsheet would read as a formula (=, +, -,
    @, a tab or a carriage return first) gets a leading apostrophe (OWASP's CSV injection advice)."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(cells: Iterable[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().encode()


def log_query_of(params: Mapping[str, str], *, before: str | None = None, count: str | int | None = None) -> LogQuery:
    """log_query from the log's filter parameters as the console's forms and the admin API name them
    (`q` the text), and the page asked for (`before`, `count`)."""
    return log_query(
        idp=params.get("idp"),
        outcome=params.get("outcome"),
        operation=params.get("operation"),
        text=params.get("q"),
        since=params.get("since"),
        until=params.get("until"),
        bulk=params.get("bulk"),
        resource=params.get("resource"),
        before=before,
        count=count,
    )


def log_query(
    *,
    idp: str | None = None,
    outcome: str | None = None,
    operation: str | None = None,
    text: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: str | None = None,
    count: str | int | None = None,
    bulk: str | None = None,
    resource: str | None = None,
) -> LogQuery:
    """A LogQuery from the console's form fields or the API's query parameters (all text): a list's,
    without the records' bodies and changes (only a record's own page shows them)."""
    if outcome not in (None, "", "success", "failure"):
        raise AdminError(f"outcome must be success or failure, not {shown(outcome)}")
    if operation and operation not in OPERATIONS:
        raise AdminError(f"operation must be one of {', '.join(OPERATIONS)}; not {shown(operation)}")
    failures = None if not outcome else outcome == "failure"
    before_id = _whole(before, "before") if before not in (None, "") else None
    limit = _whole(count, "count") if count not in (None, "") else 50
    text = (text or "").strip()
    _check_length("search text", text, MAX_LOG_SEARCH)
    _check_length("Bulk request id", bulk or "", MAX_LOG_SEARCH)
    _check_length("resource id", resource or "", MAX_LOG_SEARCH)
    return LogQuery(
        idp_id=idp or None,
        failures=failures,
        operation=operation or None,
        text=text or None,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        bulk_request=bulk or None,
        resource_id=resource or None,
        before_id=before_id,
        limit=min(max(limit, 1), MAX_PAGE),
        bodies=False,
    )


def _whole(value: str | int | None, what: str) -> int:
    """A whole number from a form or query string, within what SQLite stores (ids, counts)."""
    try:
        if value is None:
            raise ValueError
        number = int(value)
    except ValueError:
        raise AdminError(f"{what} must be a whole number, not {shown(str(value))}") from None
    if not 0 <= number <= MAX_ROW_ID:
        raise AdminError(f"{what} must be a whole number from 0 to {MAX_ROW_ID}, not {shown(str(value))}")
    return number
