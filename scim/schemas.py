"""RFC 7643 schemas, resource types and the ServiceProviderConfig, as hand-written definitions.

The same definitions drive validation, filters, PATCH, projection and the discovery endpoints
(/Schemas, /ResourceTypes), so what we advertise is what we enforce.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SERVICE_PROVIDER_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
# Group members live in their own table and are changed by deltas (see scim.patch.MemberOp); the
# limits of resource documents do not apply to them (scim.max_members_per_patch does).
STORED_APART = frozenset({"members"})
# The top-level attributes kept in indexed columns (storage's hot columns): a tighter length limit.
NAME_ATTRIBUTES = frozenset({"userName", "displayName", "externalId"})


@dataclass(frozen=True)
class Limits:
    """Size limits on what a resource may hold (the scim.max_* settings), enforced by validation and
    advertised in the attribute descriptions of /Schemas, so a client can read them."""

    max_name_length: int = 512  # userName, displayName, externalId: characters
    max_string_length: int = 8192  # every other string value: characters
    max_attribute_values: int = 100  # values of one multi-valued attribute
    max_document_bytes: int = 65536  # the stored resource as JSON, without id, meta and members

    def max_length(self, attr: Attribute) -> int:
        return self.max_name_length if attr.name in NAME_ATTRIBUTES else self.max_string_length


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Attribute:
    """One attribute definition (RFC 7643 §7), with lower-cased lookup of sub-attributes."""

    name: str
    type: str = "string"
    multi_valued: bool = False
    description: str = ""
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    by_lower: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)
    # (lower-case name, sub-attribute) of the sub-attributes a client may set, in schema order:
    # what validation walks for every complex value it cleans.
    settable_subs: tuple[tuple[str, Attribute], ...] = field(default=(), init=False, compare=False, repr=False)
    # The sub-attribute names as the schema spells them: a value whose keys are all among them (what
    # clients send) is read without folding each key's case.
    sub_names: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_lower.update({sub.name.lower(): sub for sub in self.sub_attributes})
        object.__setattr__(
            self,
            "settable_subs",
            tuple((sub.name.lower(), sub) for sub in self.sub_attributes if sub.mutability != "readOnly"),
        )
        object.__setattr__(self, "sub_names", frozenset(sub.name for sub in self.sub_attributes))

    def sub(self, name: str) -> Attribute | None:
        return self.by_lower.get(name.lower())

    @property
    def is_complex(self) -> bool:
        return self.type == "complex"

    def to_dict(self, limits: Limits | None = None) -> dict:
        """The RFC 7643 §7 form; with `limits`, the description ends with the limits that apply."""
        if self.name in STORED_APART:
            limits = None
        out: dict = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self._described(limits),
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.sub_attributes:
            out["subAttributes"] = [sub.to_dict(limits) for sub in self.sub_attributes]
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        return out

    def _described(self, limits: Limits | None) -> str:
        text = self.description or self.name
        if limits is None or self.mutability == "readOnly":
            return text
        notes = []
        if self.multi_valued:
            notes.append(f"at most {limits.max_attribute_values} values")
        if self.type not in ("boolean", "complex"):
            notes.append(f"at most {limits.max_length(self)} characters")
        return f"{text}; {', '.join(notes)}" if notes else text


A = Attribute


def _multi(
    name: str,
    description: str,
    *,
    value_type: str = "string",
    types: tuple[str, ...] = (),
    extra: tuple[Attribute, ...] = (),
    ref_types: tuple[str, ...] = (),
) -> Attribute:
    """The usual shape of a multi-valued complex attribute: value, display, type, primary."""
    value = A("value", value_type, description=f"The value of {name}", reference_types=ref_types)
    return A(
        name,
        "complex",
        multi_valued=True,
        description=description,
        sub_attributes=(
            value,
            A("display", description="A human-readable name, primarily used for display purposes"),
            A("type", description="A label indicating the attribute's function", canonical_values=types),
            A("primary", "boolean", description="Indicates the primary value; at most one is true"),
            *extra,
        ),
    )


META = A(
    "meta",
    "complex",
    mutability="readOnly",
    description="Resource metadata",
    sub_attributes=(
        A("resourceType", case_exact=True, mutability="readOnly"),
        A("created", "dateTime", mutability="readOnly"),
        A("lastModified", "dateTime", mutability="readOnly"),
        A("location", "reference", case_exact=True, mutability="readOnly", reference_types=("uri",)),
        A("version", case_exact=True, mutability="readOnly"),
    ),
)

# Attributes every resource has (RFC 7643 §3.1); they belong to no schema in /Schemas.
COMMON_ATTRIBUTES: tuple[Attribute, ...] = (
    A(
        "id",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
        description="Unique identifier assigned by the service provider",
    ),
    A("externalId", case_exact=True, description="Identifier assigned by the provisioning client"),
    META,
)

USER_ATTRIBUTES: tuple[Attribute, ...] = (
    A(
        "userName",
        required=True,
        uniqueness="server",
        returned="always",
        description="Unique identifier for the user, used to sign in; unique regardless of case",
    ),
    A(
        "name",
        "complex",
        required=True,
        description="The components of the user's real name",
        sub_attributes=(
            A("formatted", description="The full name, formatted for display"),
            A("familyName", required=True, description="The family name (last name)"),
            A("givenName", required=True, description="The given name (first name)"),
            A("middleName", description="The middle name(s)"),
            A("honorificPrefix", description="Honorific prefix, e.g. Ms."),
            A("honorificSuffix", description="Honorific suffix, e.g. III"),
        ),
    ),
    A("displayName", description="The name of the user, suitable for display"),
    A("nickName", description="The casual way to address the user"),
    A("profileUrl", "reference", reference_types=("external",), description="URL of the user's profile"),
    A("title", description="The user's title, such as Vice President"),
    A("userType", description="The relationship between the organization and the user"),
    A("preferredLanguage", description="Preferred written or spoken language, e.g. en-US"),
    A("locale", description="Default location for localisation, e.g. en-US"),
    A("timezone", description="Time zone in IANA format, e.g. America/Los_Angeles"),
    A("active", "boolean", description="The user's administrative status"),
    A(
        "password",
        mutability="writeOnly",
        returned="never",
        description="Cleartext password; accepted on write, never stored or returned",
    ),
    _multi("emails", "Email addresses for the user", types=("work", "home", "other")),
    _multi(
        "phoneNumbers",
        "Phone numbers; a work number must be in E.164 form, e.g. +16175551212",
        types=("work", "home", "mobile", "fax", "pager", "other"),
    ),
    _multi("ims", "Instant messaging addresses", types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
    _multi(
        "photos",
        "URLs of photos of the user",
        value_type="reference",
        types=("photo", "thumbnail"),
        ref_types=("external",),
    ),
    A(
        "addresses",
        "complex",
        multi_valued=True,
        description="Physical mailing addresses",
        sub_attributes=(
            A("formatted", description="The full mailing address"),
            A("streetAddress", description="The full street address"),
            A("locality", description="The city or locality"),
            A("region", description="The state or region"),
            A("postalCode", description="The zip code or postal code"),
            A("country", description="The country name, ISO 3166-1 alpha-2"),
            A("type", canonical_values=("work", "home", "other"), description="The kind of address"),
            A("primary", "boolean", description="Indicates the primary address"),
        ),
    ),
    A(
        "groups",
        "complex",
        multi_valued=True,
        mutability="readOnly",
        description="Groups the user belongs to, directly or through nested groups",
        sub_attributes=(
            A("value", mutability="readOnly", description="The id of the group"),
            A(
                "$ref",
                "reference",
                mutability="readOnly",
                reference_types=("Group",),
                description="The URI of the group",
            ),
            A("display", mutability="readOnly", description="The group's displayName"),
            A(
                "type",
                mutability="readOnly",
                canonical_values=("direct", "indirect"),
                description="direct, or indirect through a nested group",
            ),
        ),
    ),
    _multi("entitlements", "Entitlements of the user"),
    _multi("roles", "Roles of the user"),
    _multi("x509Certificates", "X.509 certificates of the user", value_type="binary"),
)

ENTERPRISE_ATTRIBUTES: tuple[Attribute, ...] = (
    A("employeeNumber", description="Identifier assigned by the organization"),
    A("costCenter", description="Name of a cost center"),
    A("organization", description="Name of an organization"),
    A("division", description="Name of a division"),
    A("department", description="Name of a department"),
    A(
        "manager",
        "complex",
        description="The user's manager",
        sub_attributes=(
            A("value", description="The id of the manager's User resource"),
            A("$ref", "reference", reference_types=("User",), description="The URI of the manager"),
            A("displayName", mutability="readOnly", description="The manager's displayName"),
        ),
    ),
)

GROUP_ATTRIBUTES: tuple[Attribute, ...] = (
    A(
        "displayName",
        required=True,
        uniqueness="server",
        returned="always",
        description="A human-readable name for the group; unique regardless of case",
    ),
    A(
        "members",
        "complex",
        multi_valued=True,
        description="Members of the group (users or groups)",
        sub_attributes=(
            A("value", mutability="immutable", description="The id of the member"),
            A(
                "$ref",
                "reference",
                mutability="immutable",
                reference_types=("User", "Group"),
                description="The URI of the member",
            ),
            A("display", mutability="readOnly", description="The member's userName or displayName"),
            A("type", mutability="immutable", canonical_values=("User", "Group"), description="User or Group"),
        ),
    ),
)


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    by_lower: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_lower.update({attr.name.lower(): attr for attr in self.attributes})

    def to_dict(self, base_url: str, limits: Limits | None = None) -> dict:
        return {
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [attr.to_dict(limits) for attr in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


SCHEMAS: dict[str, Schema] = {
    USER: Schema(USER, "User", "User Account", USER_ATTRIBUTES),
    ENTERPRISE_USER: Schema(ENTERPRISE_USER, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRIBUTES),
    GROUP: Schema(GROUP, "Group", "Group", GROUP_ATTRIBUTES),
}


def with_required(attributes: tuple[Attribute, ...], paths: tuple[str, ...]) -> tuple[Attribute, ...]:
    """The attributes with `required` set exactly on `paths` ("userName", "name.givenName"): a
    complex attribute is required when one of its sub-attributes is."""
    wanted = set(paths)
    out = []
    for attr in attributes:
        subs = tuple(
            dataclasses.replace(sub, required=f"{attr.name}.{sub.name}" in wanted) for sub in attr.sub_attributes
        )
        required = attr.name in wanted or any(sub.required for sub in subs)
        out.append(dataclasses.replace(attr, required=required, sub_attributes=subs))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class ResourceType:
    """A resource type as one tenant (IdP) has it: its core schema and extension schemas, with
    case-insensitive lookup of attributes and URNs, and the tenant's rules. Compared by identity:
    each tenant's rules make one (scim.tenant caches them), and caches keyed by it stay apart."""

    name: str
    endpoint: str
    schema: str
    extensions: tuple[str, ...]
    description: str
    schemas: dict[str, Schema] = field(default_factory=dict, repr=False)  # by URN: core, then extensions
    profile: str = "meta-networks"
    e164_work_phones: bool = True  # phoneNumbers[type eq "work"].value must be E.164
    strict: bool = False  # an attribute it does not keep is refused (400), not ignored
    core: dict[str, Attribute] = field(default_factory=dict, init=False, repr=False)
    urns: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    # Required attributes as paths ("userName", "name.givenName", "urn:...:costCenter").
    required: tuple[str, ...] = field(default=(), init=False, repr=False)
    # Per extension URN: the attributes a SCIM answer may carry (declared, returned is not never).
    answered: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    # The declared extension attributes with uniqueness server, as (URN, attribute).
    unique: tuple[tuple[str, Attribute], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.schemas:
            self.schemas.update({urn: SCHEMAS[urn] for urn in (self.schema, *self.extensions)})
        for attr in (*COMMON_ATTRIBUTES, *self.schemas[self.schema].attributes):
            self.core[attr.name.lower()] = attr
        for urn in (self.schema, *self.extensions):
            self.urns[urn.lower()] = urn
        paths = []
        for urn in (self.schema, *self.extensions):
            prefix = "" if urn == self.schema else f"{urn}:"
            for attr in self.schemas[urn].attributes:
                if attr.required:
                    subs = [f"{prefix}{attr.name}.{sub.name}" for sub in attr.sub_attributes if sub.required]
                    paths.extend(subs or [f"{prefix}{attr.name}"])
        object.__setattr__(self, "required", tuple(paths))
        for urn in self.extensions:
            self.answered[urn] = frozenset(
                attr.name for attr in self.schemas[urn].attributes if attr.returned != "never"
            )
        unique = [
            (urn, attr)
            for urn in self.extensions
            for attr in self.schemas[urn].attributes
            if attr.uniqueness == "server" and urn not in SCHEMAS
        ]
        object.__setattr__(self, "unique", tuple(unique))

    def answered_doc(self, doc: dict) -> dict:
        """The stored document as a SCIM answer carries it. Values stored under an extension this
        tenant no longer declares, under an attribute it no longer declares, or of a returned:
        never attribute stay stored (the console shows them) but are not answered."""
        out = None
        for key, value in doc.items():
            if ":" not in key:  # a core attribute: its name holds no colon, an extension URN does
                continue
            names = self.answered.get(key)
            if names is not None and value.keys() <= names:
                continue
            if out is None:
                out = dict(doc)
            kept = {name: item for name, item in value.items() if name in names} if names else {}
            if kept:
                out[key] = kept
            else:
                del out[key]
        return doc if out is None else out

    def extension_required(self, urn: str) -> bool:
        """Whether the extension has a required attribute: then every resource carries it."""
        return any(attr.required for attr in self.schemas[urn].attributes)

    def canonical_urn(self, urn: str) -> str | None:
        """The schema URN as we spell it, for any letter case; None when it is not ours."""
        return self.urns.get(urn.lower())

    def attribute(self, urn: str | None, name: str) -> Attribute | None:
        """Look up a top-level attribute, in the core schema when urn is None or the core URN."""
        if urn is None or urn == self.schema:
            return self.core.get(name.lower())
        if urn in self.extensions:
            return self.schemas[urn].by_lower.get(name.lower())
        return None

    def to_dict(self, base_url: str, limits: Limits | None = None) -> dict:
        description = self.description
        if limits is not None:
            description += f"; at most {limits.max_document_bytes} bytes of JSON each, without id, meta and members"
        return {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": description,
            "schema": self.schema,
            "schemaExtensions": [{"schema": urn, "required": self.extension_required(urn)} for urn in self.extensions],
            "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/{self.name}"},
        }


USER_TYPE = ResourceType("User", "/Users", USER, (ENTERPRISE_USER,), "User Account")
GROUP_TYPE = ResourceType("Group", "/Groups", GROUP, (), "Group")
RESOURCE_TYPES: dict[str, ResourceType] = {"User": USER_TYPE, "Group": GROUP_TYPE}


def service_provider_config(
    base_url: str,
    max_results: int,
    max_operations: int,
    max_payload_size: int,
    default_page_size: int = 100,
    cursor_timeout: int = 3600,
) -> dict:
    """What we support, honestly: PATCH, Bulk, filter, sort, ETags, index and cursor paging
    (RFC 9865 §4); no password change. max_operations and max_payload_size are the Bulk request's limits."""
    return {
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": max_operations, "maxPayloadSize": max_payload_size},
        "filter": {"supported": True, "maxResults": max_results},
        "pagination": {
            "cursor": True,
            "index": True,
            "defaultPaginationMethod": "index",
            "defaultPageSize": default_page_size,
            "maxPageSize": max_results,
            "cursorTimeout": cursor_timeout,
        },
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "The API key's secret, sent as Authorization: Bearer <secret>",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base_url}/ServiceProviderConfig"},
    }
