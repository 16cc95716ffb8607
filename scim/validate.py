"""Incoming resource (POST, PUT, or the result of a PATCH) -> the canonical document we store.

The canonical document spells every attribute as the schema does, keeps enterprise extension
attributes under their schema URN, and holds nothing that is absent: null, "" (Entra's way of
clearing an attribute), empty lists and empty objects are all dropped. Read-only attributes (id,
meta, groups), the write-only password and group members are never part of it. Anything the schema
does not know is ignored rather than rejected, because Entra sends extra URNs and attributes; the
caller hears which (`ignored`), and a strict tenant (ResourceType.strict) refuses them instead.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

import orjson
import phonenumbers

from scim.errors import ScimError, invalid_syntax, invalid_value, shown
from scim.filters import Node, format_datetime, parse_filter
from scim.paths import split_urn
from scim.schemas import DEFAULT_LIMITS, ENTERPRISE_USER, SCHEMAS, STORED_APART, Attribute, Limits, ResourceType

_MANAGER = SCHEMAS[ENTERPRISE_USER].by_lower["manager"]
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_E164_MAX_LENGTH = 16  # "+" and at most 15 digits
_LEGACY_GROWTH = 1024  # bytes a document stored past scim.max_document_bytes may still grow by
_MEMBER_TYPES = {"user": "User", "group": "Group"}
_INTEGER = re.compile(r"[+-]?\d{1,20}")
_NUMBER = re.compile(r"[+-]?\d{1,20}(\.\d{1,20})?([eE][+-]?\d{1,3})?")


# Defined here rather than in scim.patch (which re-exports it) because scim.patch imports this
# module; the reverse import would be circular. A NamedTuple rather than a frozen dataclass: a
# member add builds a hundred of them, and a tuple is three times cheaper to make.
class Member(NamedTuple):
    value: str
    type: str | None = None  # "User" or "Group"; None when the client did not say


def find_key(obj: dict, name: str) -> object:
    """obj[name], matching the key case-insensitively (clients vary: "Operations", "operations")."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


def validate_resource(
    rtype: ResourceType,
    body: dict,
    canonical: dict | None = None,
    limits: Limits = DEFAULT_LIMITS,
    ignored: list[str] | None = None,
) -> dict:
    """The canonical document for a resource body, or ScimError(400) naming what is wrong.

    Each attribute the tenant does not keep is appended to `ignored` (as sent: "nickname",
    "urn:...:costCenter"); on a strict tenant it is 400 invalidValue instead.

    `canonical` is a document this function returned before (a PATCH passes the stored one): a value
    equal to its value there is kept as it is, not cleaned again. A PATCH changes a few attributes
    and this check of the whole result then costs a fraction of a full one. It also lets a document
    stored before a limit was lowered change without first shrinking below it."""
    if not isinstance(body, dict):
        raise invalid_syntax(f"A {rtype.name} must be a JSON object")
    doc: dict = {}
    extensions: dict[str, dict] = {}
    if canonical is not None:
        # Values stored under an extension the tenant no longer declares pass a PATCH untouched
        # (a configuration change never deletes stored data, nor makes a stored user unwritable).
        extensions.update(_stored_undeclared(rtype, body, canonical))
        if extensions:
            body = {key: value for key, value in body.items() if key not in extensions}
    # Walk what was sent, not the whole schema: a create touches a handful of its 30-odd attributes.
    for (urn, lower), (sent, given) in _collect(rtype, body, ignored).items():
        core = urn == rtype.schema
        attr = rtype.core.get(lower) if core else rtype.schemas[urn].by_lower.get(lower)
        if attr is None:
            name = sent.rsplit(":", 1)[-1]
            if not core and canonical is not None and given is not None and canonical.get(urn, {}).get(name) == given:
                extensions.setdefault(urn, {})[name] = given  # an attribute no longer declared, as stored
                continue
            not_kept(rtype, sent, ignored)
            continue
        if attr.mutability == "readOnly" or attr.name in STORED_APART:
            continue
        known = None
        if canonical is not None:
            known = canonical.get(attr.name) if core else canonical.get(urn, {}).get(attr.name)
        if known is not None and known == given:
            value = known
        else:
            value = clean_value(attr, given, attr.name if core else f"{urn}:{attr.name}", _limits_for(known, limits))
            if attr.is_complex and (rtype.strict or ignored is not None):
                for sub in unknown_subs(attr, given):
                    not_kept(rtype, f"{sent}.{sub}", ignored)
        # writeOnly (password) is type-checked above but never stored.
        if value is not None and attr.mutability != "writeOnly":
            (doc if core else extensions.setdefault(urn, {}))[attr.name] = value
    doc.update(extensions)
    _check_required(rtype, doc)
    if rtype.e164_work_phones:
        _check_work_phones(doc)
    _check_size(rtype, doc, canonical, limits)
    return doc


def not_kept(rtype: ResourceType, name: str, ignored: list[str] | None) -> None:
    """An attribute (or PATCH path) the tenant does not keep: noted in `ignored`, or on a strict
    tenant refused."""
    if rtype.strict:
        raise invalid_value(
            f"{shown(name)} is not an attribute of this IdP's {rtype.name} schemas, and this IdP is strict; "
            "declare it as an extension attribute, or leave it out of the request"
        )
    if ignored is not None and name not in ignored:
        ignored.append(name)


def unknown_subs(attr: Attribute, value: object) -> list[str]:
    """The sub-attribute names, as sent, that a value of the complex `attr` holds and `attr` does not have."""
    items = value if isinstance(value, list) else [value]
    unknown: list[str] = []
    for item in items:
        if isinstance(item, dict) and not item.keys() <= attr.sub_names:
            unknown += [key for key in item if key.lower() not in attr.by_lower and key not in unknown]
    return unknown


def _stored_undeclared(rtype: ResourceType, body: dict, canonical: dict) -> dict[str, dict]:
    """The extension containers of `body` that the tenant does not declare and that hold what the
    stored document holds under them."""
    return {
        key: value
        for key, value in body.items()
        if ":" in key and isinstance(value, dict) and rtype.canonical_urn(key) is None and canonical.get(key) == value
    }


def server_unique(rtype: ResourceType, doc: dict) -> list[tuple[Node, str]]:
    """For each declared `uniqueness: server` attribute the document holds: a filter that another
    resource holding the same value matches (compared as the attribute's caseExact says), and the
    409 detail that names it. The store runs them in the write's transaction."""
    checks: list[tuple[Node, str]] = []
    for urn, attr in rtype.unique:
        value = doc.get(urn, {}).get(attr.name)
        if value is None:
            continue
        text = f"{urn}:{attr.name} eq {orjson.dumps(value).decode()}"
        where = parse_filter(text, rtype, max_length=len(text))
        checks.append(
            (
                where,
                f"{urn}:{attr.name} {shown(value)} is already another {rtype.name}'s in this IdP "
                "(uniqueness: server); send a value of its own",
            )
        )
    return checks


def _limits_for(known: object, limits: Limits) -> Limits:
    """A multi-valued attribute stored past the limit (before it was lowered) may shrink, not grow."""
    if isinstance(known, list) and len(known) > limits.max_attribute_values:
        return dataclasses.replace(limits, max_attribute_values=len(known))
    return limits


def failing_attributes(
    rtype: ResourceType, doc: dict, canonical: dict, limits: Limits = DEFAULT_LIMITS
) -> list[tuple[str | None, str]]:
    """The top-level attributes of a document in canonical form (as PATCH works on one) that fail
    validation, each as (extension URN or None, name); a missing required attribute counts.
    `canonical` is the stored document the PATCH started from, as for validate_resource."""
    keys: set[tuple[str | None, str]] = {_top_level(path) for path in rtype.required}
    for key, value in doc.items():
        urn = rtype.canonical_urn(key)
        if urn is None:
            keys.add((None, key))
        elif isinstance(value, dict):
            keys.update((urn, name) for name in value)
    failing: list[tuple[str | None, str]] = []
    for urn, name in sorted(keys, key=lambda key: (key[0] or "", key[1])):  # the same answer every time
        try:
            check_attribute(rtype, doc, urn, name, canonical, limits)
        except ScimError:
            failing.append((urn, name))
    return failing


def check_attribute(
    rtype: ResourceType, doc: dict, urn: str | None, name: str, canonical: dict, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Raise what validate_resource would raise for this one top-level attribute of a document in
    canonical form: its value, whether it is required, and the work phone rule."""
    attr = rtype.core.get(name.lower()) if urn is None else rtype.schemas[urn].by_lower.get(name.lower())
    if attr is None or attr.mutability == "readOnly" or attr.name in STORED_APART:
        return
    holder = doc if urn is None else doc.get(urn)
    given = holder.get(attr.name) if isinstance(holder, dict) else None
    known = canonical.get(attr.name) if urn is None else canonical.get(urn, {}).get(attr.name)
    value = clean_value(attr, given, attr.name if urn is None else f"{urn}:{attr.name}", _limits_for(known, limits))
    alone = {} if value is None else {attr.name: value}
    if attr.required:
        _check_required(rtype, alone if urn is None else {urn: alone}, (urn, attr.name))
    if rtype.e164_work_phones:
        _check_work_phones(alone)


def _collect(rtype: ResourceType, body: dict, ignored: list[str] | None) -> dict[tuple[str, str], tuple[str, object]]:
    """Body values keyed by (schema URN, lower-case name), each with its name as sent. Our schema
    URN keys are containers; a key "<our URN>:<name>" (Entra's path-less form) is that schema's
    attribute. A key under a URN the tenant does not have is noted as ignored, whole."""
    given: dict[tuple[str, str], tuple[str, object]] = {}
    for key, value in body.items():
        if ":" not in key:  # a core attribute (most keys): no URN to look for
            if key.lower() != "schemas":  # the message's schema list, not an attribute
                given[(rtype.schema, key.lower())] = (key, value)
            continue
        urn = rtype.canonical_urn(key)
        if urn is not None:
            if isinstance(value, dict):
                given.update(((urn, name.lower()), (f"{urn}:{name}", item)) for name, item in value.items())
            elif value is not None:
                raise invalid_value(f"{urn} must be an object holding that schema's attributes")
            continue
        prefix, name = split_urn(key)
        if prefix is None:
            if key.lower() != "schemas":  # the message's schema list, not an attribute
                given[(rtype.schema, key.lower())] = (key, value)
            continue
        urn = rtype.canonical_urn(prefix)
        if urn is None:
            not_kept(rtype, key, ignored)
        else:
            given[(urn, name.lower())] = (key, value)
    return given


def clean_value(attr: Attribute, value: object, name: str, limits: Limits = DEFAULT_LIMITS) -> object | None:
    """A value of `attr` in canonical form, None when it amounts to nothing; `name` is for errors."""
    if attr is _MANAGER:
        value = _manager_form(value, name)
    if value is None:
        return None
    if not attr.multi_valued:
        return _clean_one(attr, value, name, limits)
    return clean_values(attr, value, name, limits)


def clean_values(attr: Attribute, value: object, name: str, limits: Limits = DEFAULT_LIMITS) -> list | None:
    """The values of a multi-valued `attr` in canonical form, None when there are none."""
    if value is None:
        return None
    if isinstance(value, dict) and attr.is_complex:
        value = [value]  # a lone object where a list is expected: Entra tolerance
    if not isinstance(value, list):
        example = '[{"value": "..."}]' if attr.is_complex else '["..."]'
        raise invalid_value(f"{name} is multi-valued; send an array such as {example}, not {_json_type(value)}")
    if len(value) > limits.max_attribute_values:
        raise invalid_value(f"{name} has {len(value)} values; at most {limits.max_attribute_values} are allowed")
    items = []
    primaries = 0
    for element in value:
        item = _clean_one(attr, element, name, limits)
        if item is not None:
            items.append(item)
            if isinstance(item, dict) and item.get("primary") is True:
                primaries += 1
    if primaries > 1:
        raise invalid_value(f"{name} has {primaries} values with primary true; at most one may be primary")
    return items or None


def _clean_one(attr: Attribute, value: object, name: str, limits: Limits) -> object | None:
    if not attr.is_complex:
        return _clean_simple(attr, value, name, limits)
    if value is None:
        return None
    if not isinstance(value, dict):
        subs = ", ".join(sub.name for sub in attr.sub_attributes[:3])
        raise invalid_value(f"{name} must be an object with sub-attributes such as {subs}, not {_json_type(value)}")
    exact = value.keys() <= attr.sub_names  # spelled as the schema spells them: no case folding
    given = value if exact else {key.lower(): item for key, item in value.items()}
    out = {}
    for lower, sub in attr.settable_subs:
        key = sub.name if exact else lower
        if key in given:
            item = _clean_simple(sub, given[key], f"{name}.{sub.name}", limits)
            if item is not None:
                out[sub.name] = item
    # An email, phone or manager without its value is nothing: this is how "" clears one.
    if "value" in attr.by_lower and "value" not in out:
        return None
    return out or None


def _clean_simple(attr: Attribute, value: object, name: str, limits: Limits) -> object | None:
    if value is None or value == "":
        return None
    if attr.type == "boolean":
        return coerce_bool(value, name)
    if attr.type in ("integer", "decimal"):
        return _number(attr, value, name)
    # Every other simple type (string, reference, binary, dateTime) is a JSON string.
    if not isinstance(value, str):
        # A write-only value (the password) is never quoted back: error details reach logs.
        quoted = "" if attr.mutability == "writeOnly" else f" {shown(value)}"
        raise invalid_value(f"{name} must be a {attr.type} (a JSON string), not {_json_type(value)}{quoted}")
    # Before anything else looks at the value: a megabyte-long one must not reach an index or a cache.
    if len(value) > limits.max_length(attr):
        raise invalid_value(f"{name} is {len(value)} characters long; at most {limits.max_length(attr)} are allowed")
    if "\x00" in value:
        # No attribute means a NUL, and PostgreSQL's text and jsonb cannot hold one: every backend refuses it alike.
        raise invalid_value(f"{name} contains a NUL character (\\u0000), which no attribute may hold; remove it")
    if attr.type == "dateTime":
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            # Stored in the one form filters compare with (UTC, milliseconds, Z), so that text order is time order.
            return format_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        except (ValueError, OverflowError):
            raise invalid_value(
                f'{name} must be a dateTime such as "2026-01-31T12:00:00Z", not {shown(value)}'
            ) from None
    return value


def _number(attr: Attribute, value: object, name: str) -> int | float:
    """An integer or decimal: a JSON number, or a string holding one (Entra sends "42")."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value) if attr.type == "decimal" or not _INTEGER.fullmatch(value.strip()) else int(value)
    if attr.type == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if attr.type == "integer" and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 2**63:
            return value
        raise invalid_value(f"{name} is an integer of more than 64 bits; at most {2**63 - 1} in size")
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if attr.type == "decimal" and finite and isinstance(value, (int, float)):
        return float(value)
    kind = "an integer such as 42" if attr.type == "integer" else "a decimal number such as 4.5"
    raise invalid_value(f"{name} must be {kind}, not {_json_type(value)} {shown(value)}")


def coerce_bool(value: object, name: str) -> bool:
    """true/false, or the strings "true"/"false" in any case (Entra sends "True" and "False")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_value(f"{name} must be true or false, not {_json_type(value)} {shown(value)}")


def _manager_form(value: object, name: str) -> object:
    """Entra sends the manager as "id", {"value": id} or [{"value": id}]; bring it to the object form."""
    if isinstance(value, str):
        return {"value": value}
    if isinstance(value, list):
        if len(value) > 1:
            raise invalid_value(f"{name} takes one manager, not a list of {len(value)}")
        return value[0] if value else None
    return value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_required(rtype: ResourceType, doc: dict, only: tuple[str | None, str] | None = None) -> None:
    """Every required path is present (`only`: the paths of that one top-level attribute)."""
    for path in rtype.required:
        urn, name, sub = split_required(path)
        if only is not None and (urn, name) != only:
            continue
        holder = doc if urn is None else doc.get(urn)
        value = holder.get(name) if isinstance(holder, dict) else None
        if sub and isinstance(value, dict):
            value = value.get(sub)
        if value is None:
            raise invalid_value(
                f"{path} is required but missing or empty; every {rtype.name} needs {', '.join(rtype.required)}"
            )


@lru_cache(maxsize=1024)
def split_required(path: str) -> tuple[str | None, str, str]:
    """'urn:...:attr.sub' -> ('urn:...', 'attr', 'sub'); 'name.givenName' -> (None, 'name', 'givenName')."""
    urn, rest = split_urn(path)
    name, _, sub = rest.partition(".")
    return urn, name, sub


def _top_level(path: str) -> tuple[str | None, str]:
    urn, name, _ = split_required(path)
    return urn, name


def _check_work_phones(doc: dict) -> None:
    for phone in doc.get("phoneNumbers", ()):
        kind = phone.get("type")
        if isinstance(kind, str) and kind.lower() == "work" and not is_e164(phone["value"]):
            raise invalid_value(
                f'phoneNumbers[type eq "work"].value {shown(phone["value"])} is not an E.164 phone number; '
                "send + and the country code followed by the number, without spaces or punctuation, "
                "e.g. +16175551212"
            )


def _check_size(rtype: ResourceType, doc: dict, canonical: dict | None, limits: Limits) -> None:
    """The stored JSON stays within the limit. A document already past it (stored before the limit
    was lowered) may still take a PATCH that grows it by at most _LEGACY_GROWTH bytes, so that
    Entra's updates and disables of it go through; the other limits bound how far it can go."""
    size = len(orjson.dumps(doc))
    if size <= limits.max_document_bytes:
        return
    if canonical is not None:
        before = len(orjson.dumps(canonical))
        if before > limits.max_document_bytes and size <= before + _LEGACY_GROWTH:
            return
    raise invalid_value(
        f"The {rtype.name} would be {size} bytes of JSON; at most {limits.max_document_bytes} are allowed"
    )


def is_e164(text: str) -> bool:
    """E.164 form (see _possible_number); the length is checked before the cache, which must never
    hold a long string a client sent (a cache keyed by megabyte-long phone numbers grew to gigabytes)."""
    return len(text) <= _E164_MAX_LENGTH and _possible_number(text)


# Parsing costs tens of microseconds, and every validation of a user checks its work phones: cache it.
@lru_cache(maxsize=4096)
def _possible_number(text: str) -> bool:
    """E.164 form: +, a country code and at most 15 digits, of a length possible for that country.

    We deliberately stop at is_possible_number: is_valid_number also checks the number against the
    ranges allocated in this phonenumbers release, so fictional test numbers and ranges allocated
    after the release would be rejected, and Entra would keep retrying a user that can never succeed.
    The regex keeps the stored value strict (no spaces, dashes or national prefixes), which
    phonenumbers.parse alone would tolerate.
    """
    if not _E164.fullmatch(text):
        return False
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number)


def parse_members(value: object) -> list[Member]:
    """Group members as sent: [{"value": id, "type"?: "User"|"Group", "$ref"?, "display"?}, ...]."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]  # one member object without the list: Entra tolerance
    if not isinstance(value, list):
        raise invalid_value(f'members must be an array such as [{{"value": "<id>"}}], not {_json_type(value)}')
    members = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid_value(f'Each member must be an object such as {{"value": "<id>"}}, not {_json_type(item)}')
        member_id = find_key(item, "value")
        if not isinstance(member_id, str) or not member_id:
            raise invalid_value(f'Each member needs "value": the id of the user or group, got {shown(member_id)}')
        kind = find_key(item, "type")
        if kind is None or kind == "":
            members.append(Member(member_id))
            continue
        canonical = _MEMBER_TYPES.get(kind.lower()) if isinstance(kind, str) else None
        if canonical is None:
            raise invalid_value(f'Member {shown(member_id)} has type {shown(kind)}; use "User" or "Group"')
        members.append(Member(member_id, canonical))
    return members
