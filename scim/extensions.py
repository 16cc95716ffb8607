"""Extension schemas an admin declares for one IdP (Entra's "custom extension attributes").

A declaration is written as RFC 7643 §7 writes a schema (what /Schemas returns), plus the resource
type it extends: an admin can paste one from another server's /Schemas, and what we advertise is
what was declared. `parse_declarations` checks a list of them and returns it in canonical form (what
is stored); `extension_schema` turns one canonical declaration into the Schema that validation,
PATCH, filters, projection and /Schemas use.

    {"id": "urn:ietf:params:scim:schemas:extension:Acme:2.0:User", "resourceType": "User",
     "name": "Acme", "description": "Acme's HR attributes",
     "attributes": [{"name": "costCenter", "type": "string"},
                    {"name": "badge", "type": "integer", "uniqueness": "server"}]}
"""

from __future__ import annotations

import re

from scim.errors import invalid_value, shown
from scim.schemas import ENTERPRISE_USER, GROUP, USER, Attribute, Schema

TYPES = ("string", "boolean", "integer", "decimal", "dateTime", "reference", "complex")
MUTABILITY = ("readWrite", "immutable", "writeOnly", "readOnly")
RETURNED = ("default", "always", "request", "never")
UNIQUENESS = ("none", "server")
RESOURCE_TYPES = ("User", "Group")
# RFC 7643 §2.1: ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA.
ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# RFC 8141: urn:<NID>:<NSS>; the NSS here without whitespace, '?', '#', '/' or a trailing ':'.
SCHEMA_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9()+,\-.:=@;$_!*'%]*[A-Za-z0-9()+,\-.=@;$_!*'%]")
MAX_SCHEMAS = 20
MAX_ATTRIBUTES = 100  # per schema, sub-attributes included
MAX_URN_LENGTH = 256
MAX_TEXT = 1024  # a name, description, canonical value or reference type
RESERVED = {urn.lower() for urn in (USER, GROUP, ENTERPRISE_USER)}
KEYS = {
    "name",
    "type",
    "multiValued",
    "required",
    "caseExact",
    "mutability",
    "returned",
    "uniqueness",
    "canonicalValues",
    "referenceTypes",
    "description",
    "subAttributes",
}


def parse_declarations(value: object) -> list[dict]:
    """Check a list of declarations; the canonical form of each (every key spelled out, in the
    order /Schemas lists them), or 400 invalidValue saying what to fix."""
    if not isinstance(value, list):
        raise invalid_value("Extension schemas are a JSON array of schema declarations")
    if len(value) > MAX_SCHEMAS:
        raise invalid_value(f"An IdP may declare at most {MAX_SCHEMAS} extension schemas; this has {len(value)}")
    out: list[dict] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        declaration = parse_declaration(item, f"schema {index + 1}")
        if declaration["id"].lower() in seen:
            raise invalid_value(f"{declaration['id']} is declared twice; declare each schema once")
        seen.add(declaration["id"].lower())
        out.append(declaration)
    return out


def parse_declaration(value: object, where: str = "the schema") -> dict:
    if not isinstance(value, dict):
        raise invalid_value(f"{where} must be a JSON object with id, resourceType and attributes")
    _no_unknown_keys(value, {"id", "resourceType", "name", "description", "attributes", "schemas", "meta"}, where)
    urn = value.get("id")
    if not isinstance(urn, str) or not urn:
        raise invalid_value(
            f'{where} needs an "id": its URN, e.g. urn:ietf:params:scim:schemas:extension:Acme:2.0:User'
        )
    if len(urn) > MAX_URN_LENGTH or not SCHEMA_URN.fullmatch(urn):
        raise invalid_value(
            f"{where}: {shown(urn)} is not a schema URN; write urn:<namespace>:<name>, e.g. "
            "urn:ietf:params:scim:schemas:extension:Acme:2.0:User (letters, digits and -.:_ only, "
            f"at most {MAX_URN_LENGTH} characters)"
        )
    if urn.lower() in RESERVED:
        raise invalid_value(f"{where}: {urn} is one of the server's own schemas; declare an extension of your own")
    where = urn
    resource_type = value.get("resourceType", "User")
    if resource_type not in RESOURCE_TYPES:
        raise invalid_value(f'{where}: resourceType must be "User" or "Group", not {shown(resource_type)}')
    name = _text(value, "name", where, default=_name_in(urn))
    attributes = value.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise invalid_value(f'{where}: "attributes" must be a non-empty array of attribute definitions')
    parsed = _attributes(attributes, where, top=True)
    if sum(1 + len(attr["subAttributes"]) for attr in parsed) > MAX_ATTRIBUTES:
        raise invalid_value(f"{where}: at most {MAX_ATTRIBUTES} attributes (sub-attributes included) per schema")
    return {
        "id": urn,
        "resourceType": resource_type,
        "name": name,
        "description": _text(value, "description", where, default=""),
        "attributes": parsed,
    }


def _name_in(urn: str) -> str:
    """A name for the schema from its URN: "Acme" for urn:...:extension:Acme:2.0:User."""
    for segment in reversed(urn.split(":")[2:]):
        if segment not in RESOURCE_TYPES and not re.fullmatch(r"[\d.]+", segment):
            return segment
    return urn


def _attributes(items: list, where: str, *, top: bool) -> list[dict]:
    out: list[dict] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        attr = _attribute(item, f"{where}: attribute {index + 1}", top=top)
        if attr["name"].lower() in names:
            raise invalid_value(f"{where}: {attr['name']} is declared twice (names are case-insensitive)")
        names.add(attr["name"].lower())
        out.append(attr)
    return out


def _attribute(value: object, where: str, *, top: bool) -> dict:
    if not isinstance(value, dict):
        raise invalid_value(f"{where} must be a JSON object with at least a name")
    _no_unknown_keys(value, KEYS, where)
    name = value.get("name")
    if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
        raise invalid_value(
            f"{where}: name {shown(name)} is not an attribute name; start with a letter, then letters, "
            "digits, - or _ (at most 64 characters)"
        )
    where = f"{where} ({name})"
    kind = _choice(value, "type", TYPES, "string", where)
    subs = value.get("subAttributes")
    if kind == "complex":
        if not top:
            raise invalid_value(f"{where}: a sub-attribute cannot be complex (RFC 7643 §2.3.8)")
        if not isinstance(subs, list) or not subs:
            raise invalid_value(f'{where}: a complex attribute needs "subAttributes", a non-empty array')
        sub_attributes = _attributes(subs, where, top=False)
    elif subs not in (None, []):
        raise invalid_value(f"{where}: only a complex attribute has subAttributes; this one is a {kind}")
    else:
        sub_attributes = []
    canonical = _strings(value, "canonicalValues", where)
    if canonical and kind != "string":
        raise invalid_value(f"{where}: canonicalValues apply to strings only; this attribute is a {kind}")
    references = _strings(value, "referenceTypes", where)
    if kind == "reference" and not references:
        references = ["external"]
    elif kind != "reference" and references:
        raise invalid_value(f"{where}: referenceTypes apply to references only; this attribute is a {kind}")
    uniqueness = _choice(value, "uniqueness", UNIQUENESS, "none", where)
    multi_valued = _flag(value, "multiValued", where)
    if uniqueness == "server" and (multi_valued or kind in ("complex", "boolean")):
        raise invalid_value(f"{where}: uniqueness server applies to a single-valued string, number or dateTime")
    return {
        "name": name,
        "type": kind,
        "multiValued": multi_valued,
        "description": _text(value, "description", where, default=""),
        "required": _flag(value, "required", where),
        "caseExact": _flag(value, "caseExact", where),
        "mutability": _choice(value, "mutability", MUTABILITY, "readWrite", where),
        "returned": _choice(value, "returned", RETURNED, "default", where),
        "uniqueness": uniqueness,
        "canonicalValues": canonical,
        "referenceTypes": references,
        "subAttributes": sub_attributes,
    }


def _no_unknown_keys(value: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise invalid_value(f"{where}: unknown key {shown(unknown[0])}; the keys are {', '.join(sorted(known))}")


def _flag(value: dict, key: str, where: str) -> bool:
    flag = value.get(key, False)
    if not isinstance(flag, bool):
        raise invalid_value(f"{where}: {key} must be true or false, not {shown(flag)}")
    return flag


def _choice(value: dict, key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    choice = value.get(key, default)
    if choice not in choices:
        raise invalid_value(f"{where}: {key} must be one of {', '.join(choices)}, not {shown(choice)}")
    return choice


def _text(value: dict, key: str, where: str, *, default: str) -> str:
    text = value.get(key, default)
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise invalid_value(f"{where}: {key} must be a string of at most {MAX_TEXT} characters")
    return text


def _strings(value: dict, key: str, where: str) -> list[str]:
    items = value.get(key, [])
    if not isinstance(items, list) or len(items) > 100:
        raise invalid_value(f"{where}: {key} must be an array of at most 100 strings")
    if not all(isinstance(item, str) and 0 < len(item) <= MAX_TEXT for item in items):
        raise invalid_value(f"{where}: every one of {key} must be a non-empty string")
    return list(items)


def extension_schema(declaration: dict) -> Schema:
    """The Schema of a canonical declaration (one parse_declarations returned)."""
    return Schema(
        declaration["id"],
        declaration["name"],
        declaration["description"],
        tuple(_to_attribute(attr) for attr in declaration["attributes"]),
    )


def _to_attribute(attr: dict) -> Attribute:
    return Attribute(
        attr["name"],
        attr["type"],
        multi_valued=attr["multiValued"],
        description=attr["description"],
        required=attr["required"],
        case_exact=attr["caseExact"],
        mutability=attr["mutability"],
        returned=attr["returned"],
        uniqueness=attr["uniqueness"],
        sub_attributes=tuple(_to_attribute(sub) for sub in attr["subAttributes"]),
        canonical_values=tuple(attr["canonicalValues"]),
        reference_types=tuple(attr["referenceTypes"]),
    )
