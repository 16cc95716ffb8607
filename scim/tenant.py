"""An IdP's resource types: its schema profile, its declared extension schemas and its strict
switch, made into the ResourceTypes every scim/ function takes (see scim.profiles, scim.extensions).

One set per distinct configuration, cached: every request of a tenant gets the same objects, so the
caches keyed by resource type (PATCH paths, filter shapes) serve it, and a changed configuration is
a new key (the old set ages out of the cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import orjson

from scim.extensions import extension_schema
from scim.profiles import DEFAULT_PROFILE, profile_named
from scim.schemas import (
    ENTERPRISE_USER,
    GROUP,
    GROUP_TYPE,
    SCHEMAS,
    USER,
    USER_ATTRIBUTES,
    USER_TYPE,
    ResourceType,
    Schema,
    with_required,
)


@dataclass(frozen=True, eq=False)
class Tenant:
    """The resource types of one configuration, and every schema they use (for /Schemas)."""

    user: ResourceType
    group: ResourceType

    @property
    def types(self) -> dict[str, ResourceType]:
        return {"User": self.user, "Group": self.group}

    def type_named(self, name: str) -> ResourceType:
        return self.user if name == "User" else self.group

    @property
    def schemas(self) -> list[Schema]:
        """Every schema, each once: User, the enterprise extension, Group, then the declared ones."""
        seen: dict[str, Schema] = {}
        for rtype in (self.user, self.group):
            for urn, schema in rtype.schemas.items():
                seen.setdefault(urn, schema)
        order = {USER: 0, ENTERPRISE_USER: 1, GROUP: 2}
        return sorted(seen.values(), key=lambda schema: order.get(schema.id, 3))


DEFAULT = Tenant(USER_TYPE, GROUP_TYPE)


@lru_cache(maxsize=256)
def tenant(profile: str = DEFAULT_PROFILE, strict: bool = False, extensions: str = "[]") -> Tenant:
    """The resource types of a configuration; `extensions` is the stored JSON of canonical
    declarations (scim.extensions.parse_declarations). ValueError for an unknown profile."""
    rules = profile_named(profile)
    if rules.name == DEFAULT_PROFILE and not strict and extensions == "[]":
        return DEFAULT
    declared: dict[str, list[Schema]] = {"User": [], "Group": []}
    for item in orjson.loads(extensions):
        declared[item["resourceType"]].append(extension_schema(item))
    attributes = with_required(USER_ATTRIBUTES, rules.required)
    if not rules.e164_work_phones:
        attributes = tuple(
            dataclasses.replace(attr, description="Phone numbers, in any form") if attr.name == "phoneNumbers" else attr
            for attr in attributes
        )
    user = ResourceType(
        "User",
        "/Users",
        USER,
        (ENTERPRISE_USER, *(schema.id for schema in declared["User"])),
        "User Account",
        schemas={
            USER: Schema(USER, "User", "User Account", attributes),
            ENTERPRISE_USER: SCHEMAS[ENTERPRISE_USER],
            **{schema.id: schema for schema in declared["User"]},
        },
        profile=rules.name,
        e164_work_phones=rules.e164_work_phones,
        strict=strict,
    )
    group = ResourceType(
        "Group",
        "/Groups",
        GROUP,
        tuple(schema.id for schema in declared["Group"]),
        "Group",
        schemas={GROUP: SCHEMAS[GROUP], **{schema.id: schema for schema in declared["Group"]}},
        profile=rules.name,
        e164_work_phones=rules.e164_work_phones,
        strict=strict,
    )
    return Tenant(user, group)
