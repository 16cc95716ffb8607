"""PATCH (RFC 7644 §3.5.2 and Entra's two dialects) -> a new document and membership deltas.

Operations are applied to a copy of the canonical document and the result is validated as a whole,
so nothing is applied unless every operation is valid; an error names the operation that caused it.
Group members are not part of the document: operations on them become MemberOp deltas, which the
storage layer applies as row inserts and deletes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Literal

import orjson

from scim.errors import SHOWN_CHARS, ScimError, invalid_path, invalid_syntax, invalid_value, shown
from scim.filters import And, Compare, Node, Or, element_matcher, parse_path_filter
from scim.paths import resolve, split_urn
from scim.schemas import (
    DEFAULT_LIMITS,
    ENTERPRISE_USER,
    PATCH_OP,
    SCHEMAS,
    STORED_APART,
    Attribute,
    Limits,
    ResourceType,
)
from scim.validate import (
    Member,
    check_attribute,
    clean_value,
    clean_values,
    failing_attributes,
    find_key,
    not_kept,
    parse_members,
    unknown_subs,
    validate_resource,
)

__all__ = ["MAX_OPERATIONS", "Member", "MemberOp", "apply_patch"]

MAX_OPERATIONS = 1000

_MANAGER = SCHEMAS[ENTERPRISE_USER].by_lower["manager"]
_NAME = r"[A-Za-z$][\w$-]*"
_PLAIN_PATH = re.compile(rf"(?P<attr>{_NAME})(?:\.(?P<sub>{_NAME}))?")
# Greedy up to the last "]" so that a "]" inside a quoted filter value does not end the filter.
_FILTERED_PATH = re.compile(rf"(?P<attr>{_NAME})\[(?P<filter>.+)\](?:\.(?P<sub>{_NAME}))?", re.DOTALL)


@dataclass(frozen=True)
class MemberOp:
    """One membership delta: add/remove these members, replace the set, or clear the group."""

    op: Literal["add", "remove", "replace", "clear"]
    members: tuple[Member, ...] = ()


@dataclass(frozen=True)
class _Target:
    """A resolved PATCH path: attr, attr.sub, attr[filter] or attr[filter].sub."""

    urn: str | None  # extension URN; None for core and common attributes
    attr: Attribute
    sub: Attribute | None = None
    filter: Node | None = None


def apply_patch(
    rtype: ResourceType,
    doc: dict,
    body: dict,
    limits: Limits = DEFAULT_LIMITS,
    resource_id: str | None = None,
    ignored: list[str] | None = None,
) -> tuple[dict, list[MemberOp]]:
    """Apply a PatchOp request to a canonical document; returns the new document and member deltas.

    `doc` is never modified. Raises ScimError(400) naming the first invalid operation. Every step
    is linear in the values it touches (hashed, never compared pairwise) and no multi-valued
    attribute grows past limits.max_attribute_values, so the work is bounded by the operation count
    times that limit: this runs on the single writer thread, where every other write waits for it.
    `resource_id` is the resource's own id, which an operation may echo unchanged. Each path (or
    path-less key) naming what the tenant does not keep is appended to `ignored`; a strict tenant
    refuses it instead (see scim.validate.not_kept).
    """
    operations = _operations(body)
    patcher = _Patcher(rtype, limits, resource_id, ignored)
    work = _copy(doc)
    member_ops: list[MemberOp] = []
    touched: list[set[tuple[str | None, str | None]]] = []  # by each operation, for _find_culprit
    for index, operation in enumerate(operations, 1):
        patcher.touched = set()
        try:
            member_ops.extend(patcher.apply(work, operation))
        except ScimError as exc:
            raise _blamed(exc, index, operation) from None
        touched.append(patcher.touched)
    try:
        return validate_resource(rtype, work, canonical=doc, limits=limits, ignored=ignored), member_ops
    except ScimError as exc:
        raise _find_culprit(patcher, doc, work, operations, touched, exc) from None


def _find_culprit(
    patcher: _Patcher,
    doc: dict,
    work: dict,
    operations: list[dict],
    touched: list[set[tuple[str | None, str | None]]],
    error: ScimError,
) -> ScimError:
    """The error under the operation that caused it, found without validating the whole document
    after each operation (that was quadratic: a 1000-operation PATCH on a large user took seconds).

    The attributes that fail in the result are found once. Only the operations that touched them
    are replayed (an operation changes nothing but the attributes it touches), keeping each failing
    attribute's value, serialized at C speed, after each; a bisection over those values then finds
    an operation after which the attribute turned invalid, validating it a dozen times at most. An
    error that no one attribute causes (the document's size) names no operation.
    """
    failing = failing_attributes(patcher.rtype, work, doc, patcher.limits)
    states: dict[tuple[str | None, str], list[tuple[int, bytes]]] = {key: [] for key in failing}
    replay = _copy(doc)
    for index, (operation, keys) in enumerate(zip(operations, touched, strict=True), 1):
        hits = [(urn, name) for urn, name in failing if (urn, name) in keys or (urn, None) in keys]
        if not hits:
            continue
        patcher.apply(replay, operation)  # it succeeded on the same values the first time
        for urn, name in hits:
            holder = replay if urn is None else replay.get(urn)
            value = holder.get(name) if isinstance(holder, dict) else None
            states[(urn, name)].append((index, orjson.dumps(value)))
    culprits = [
        culprit
        for (urn, name), history in states.items()
        if history and (culprit := _first_invalid(patcher, doc, urn, name, history)) is not None
    ]
    if not culprits:
        return error
    index, exc = min(culprits, key=lambda culprit: culprit[0])
    return _blamed(exc, index, operations[index - 1])


def _first_invalid(
    patcher: _Patcher, doc: dict, urn: str | None, name: str, history: list[tuple[int, bytes]]
) -> tuple[int, ScimError] | None:
    """The operation (index) after which this attribute turned invalid, and its error, by bisection
    between the stored value (valid) and the last one in `history` (None if that one is valid)."""

    def error_at(position: int) -> ScimError | None:
        value = orjson.loads(history[position][1])
        alone = {name: value} if urn is None else {urn: {name: value}}
        try:
            check_attribute(patcher.rtype, alone, urn, name, doc, patcher.limits)
        except ScimError as exc:
            return exc
        return None

    low, high = 0, len(history) - 1
    found = error_at(high)
    if found is None:
        return None
    while low < high:
        middle = (low + high) // 2
        exc = error_at(middle)
        if exc is not None:
            high, found = middle, exc
        else:
            low = middle + 1
    return history[high][0], found


def _copy(doc: dict) -> dict:
    """A deep copy of a JSON document: through orjson, ten times faster than copy.deepcopy."""
    return orjson.loads(orjson.dumps(doc))


def _blamed(exc: ScimError, index: int, operation: dict) -> ScimError:
    """The error with its detail prefixed by the operation it comes from: "Operation 3 (replace title): ..."."""
    return ScimError(exc.status, f"Operation {index} ({_label(operation)}): {exc.detail}", exc.scim_type)


def _operations(body: object) -> list[dict]:
    if not isinstance(body, dict):
        raise invalid_syntax("A PATCH body must be a JSON object with schemas and Operations")
    schemas = find_key(body, "schemas")
    if not isinstance(schemas, list) or PATCH_OP.lower() not in (s.lower() for s in schemas if isinstance(s, str)):
        raise invalid_syntax(f'A PATCH body must have "schemas": ["{PATCH_OP}"]')
    operations = find_key(body, "Operations")
    if not isinstance(operations, list) or not operations:
        raise invalid_syntax('A PATCH body needs "Operations": a non-empty array of {"op", "path", "value"} objects')
    if len(operations) > MAX_OPERATIONS:
        raise invalid_value(
            f"A PATCH may carry at most {MAX_OPERATIONS} operations; this one has {len(operations)}. "
            "Split it into several requests."
        )
    for index, operation in enumerate(operations, 1):
        if not isinstance(operation, dict):
            raise invalid_syntax(f"Operation {index} must be an object with op, path and value")
    return operations


def _label(operation: dict) -> str:
    """The operation as the client wrote it ("replace title"); a long op or path quoted by shown()."""
    op, path = find_key(operation, "op"), find_key(operation, "path")
    text = op.lower() if isinstance(op, str) and len(op) <= SHOWN_CHARS else shown(op)
    if not isinstance(path, str) or not path:
        return text
    return f"{text} {path if len(path) <= SHOWN_CHARS else shown(path)}"


class _Patcher:
    """Applies operations to a working document; `touched` collects the top-level attributes they
    change, as (extension URN or None, name), with (URN, None) for a whole extension."""

    def __init__(self, rtype: ResourceType, limits: Limits, resource_id: str | None, ignored: list[str] | None) -> None:
        self.rtype = rtype
        self.limits = limits
        self.resource_id = resource_id
        self.ignored = ignored
        self.touched: set[tuple[str | None, str | None]] = set()

    def apply(self, work: dict, operation: dict) -> list[MemberOp]:
        op, path, value = (find_key(operation, key) for key in ("op", "path", "value"))
        op = op.lower() if isinstance(op, str) else op
        if op not in ("add", "replace", "remove"):
            raise invalid_syntax(f'op must be "add", "replace" or "remove", not {shown(op)}')
        if path is not None and not isinstance(path, str):
            raise invalid_path(f"path must be a string, not {shown(path)}")
        path = (path or "").strip() or None
        urn = self.rtype.canonical_urn(path) if path else None
        if urn is not None:
            if op == "remove":
                self.touched.add((urn, None))
                work.pop(urn, None)
                return []
            # A bare schema URN path: its value holds attributes of that schema.
            path, value = None, {urn: value}
        if path is None:
            if op == "remove":
                raise ScimError(400, "remove needs a path naming the attribute to remove", "noTarget")
            if not isinstance(value, dict):
                raise invalid_value("add and replace without a path need an object of attributes as their value")
            return self._apply_pathless(work, op, value)
        return self._apply_path(work, op, path, value)

    def _apply_pathless(self, work: dict, op: str, value: dict) -> list[MemberOp]:
        """Each key is a path in itself: "nickName", "name.givenName", "urn:...:User:employeeNumber"."""
        member_ops = []
        for key, item in value.items():
            urn = self.rtype.canonical_urn(key)
            if urn is None:
                member_ops.extend(self._apply_path(work, op, key, item))
            elif isinstance(item, dict):
                for name, sub_item in item.items():
                    member_ops.extend(self._apply_path(work, op, f"{urn}:{name}", sub_item))
            elif item is None or item == "":
                self.touched.add((urn, None))
                work.pop(urn, None)
            else:
                raise invalid_value(f"{urn} must be an object holding that schema's attributes")
        return member_ops

    def _apply_path(self, work: dict, op: str, path: str, value: object) -> list[MemberOp]:
        if op != "remove" and self.resource_id is not None and value == self.resource_id and path.lower() == "id":
            return []  # the resource's own id, echoed: it changes nothing (PUT accepts it too)
        target = _target(self.rtype, path)
        if target is None:
            not_kept(self.rtype, path, self.ignored)
            return []
        if target.attr.name in STORED_APART:
            return [_member_op(op, target, value)]
        self.touched.add((target.urn, target.attr.name))
        if op == "remove":
            self._remove(work, target, value)
        elif value is None or value == "":
            # Entra clears an attribute by setting it to "" (null means the same, RFC 7643 §2.5).
            self._remove(work, target, None)
        else:
            self._set(work, op, target, value)
        return []

    def _clean(self, attr: Attribute, value: object, name: str) -> object | None:
        return clean_value(attr, value, name, self.limits)

    def _clean_values(self, attr: Attribute, value: object, name: str) -> list:
        return clean_values(attr, value, name, self.limits) or []

    def _check_growth(self, elements: list, before: int, name: str) -> None:
        """A multi-valued attribute may not grow past the limit (one already past it may shrink)."""
        limit = self.limits.max_attribute_values
        if len(elements) > limit and len(elements) > before:
            raise invalid_value(f"{name} would have {len(elements)} values; at most {limit} are allowed")

    def _set(self, work: dict, op: str, target: _Target, value: object) -> None:
        holder, attr, name = _holder(work, target.urn), target.attr, _name(target)
        if target.sub is None and target.filter is None:
            if attr.multi_valued:
                items = self._clean_values(attr, value, name)
                if attr.is_complex:
                    for sub in unknown_subs(attr, value):
                        not_kept(self.rtype, f"{name}.{sub}", self.ignored)
                if op == "replace":
                    holder[attr.name] = items
                    return
                elements = holder.setdefault(attr.name, [])
                before = len(elements)
                present = {_key(element) for element in elements}
                for item in items:
                    key = _key(item)
                    if key not in present:  # adding a value that is already there changes nothing
                        present.add(key)
                        elements.append(item)
                self._check_growth(elements, before, name)
                if any(isinstance(item, dict) and item.get("primary") is True for item in items):
                    wanted = {_key(item) for item in items}
                    _demote_primaries(elements, [element for element in elements if _key(element) in wanted])
            elif attr.is_complex and isinstance(value, dict) and attr is not _MANAGER:
                self._merge(holder.setdefault(attr.name, {}), attr, value, name)
            else:
                # The manager is replaced whole: a new id with the old $ref would point elsewhere.
                _put(holder, attr.name, self._clean(attr, value, name))
            return
        if not attr.multi_valued:
            assert target.sub is not None  # _resolve_target allows a filter on multi-valued attributes only
            _put(holder.setdefault(attr.name, {}), target.sub.name, self._clean(target.sub, value, name))
            return
        elements = holder.setdefault(attr.name, [])
        chosen = _chosen(elements, target)
        if not chosen:
            # Entra's upsert: replace phoneNumbers[type eq "work"].value creates the work phone.
            chosen = [_seed(target)]
            elements.extend(chosen)
            self._check_growth(elements, len(elements) - 1, name)
        for element in chosen:
            if target.sub is not None:
                _put(element, target.sub.name, self._clean(target.sub, value, name))
            elif isinstance(value, dict):
                self._merge(element, attr, value, name)
            else:
                raise invalid_value(
                    f"{name}[...] without a sub-attribute takes an object of sub-attributes as its value"
                )
        _demote_primaries(elements, chosen)

    def _merge(self, element: dict, attr: Attribute, value: dict, name: str) -> None:
        """Set the given sub-attributes of a complex value; the others stay (RFC 7644 §3.5.2.3)."""
        for key, item in value.items():
            sub = attr.sub(key)
            if sub is None:
                not_kept(self.rtype, f"{name}.{key}", self.ignored)
            elif sub.mutability != "readOnly":
                _put(element, sub.name, self._clean(sub, item, f"{name}.{sub.name}"))

    def _remove(self, work: dict, target: _Target, value: object) -> None:
        holder = work if target.urn is None else work.get(target.urn)
        if not isinstance(holder, dict):
            return  # no such extension: nothing to remove
        current = holder.get(target.attr.name)
        if current is None:
            return  # removing what is not there succeeds (idempotent)
        attr = target.attr
        if target.sub is None and target.filter is None:
            if attr.multi_valued and value is not None and value != "":
                # remove with a value array removes the listed values only, as Entra means it for members.
                gone = self._clean_values(attr, value, _name(target))
                holder[attr.name] = _without(current, gone)
            else:
                del holder[attr.name]
            return
        if not attr.multi_valued:
            assert target.sub is not None  # _resolve_target allows a filter on multi-valued attributes only
            current.pop(target.sub.name, None)
            return
        chosen = _chosen(current, target)
        if target.sub is None:
            gone_ids = {id(element) for element in chosen}
            holder[attr.name] = [element for element in current if id(element) not in gone_ids]
        else:
            for element in chosen:
                element.pop(target.sub.name, None)


# Paths up to this long are cached: Entra's are a few dozen characters. Longer ones are resolved
# each time, so the cache holds at most 1024 short keys whatever a client sends.
_CACHED_PATH_LENGTH = 256
# A path is an attribute name, a sub-attribute and at most a short filter: longer is not a path.
MAX_PATH_LENGTH = 1024


def _target(rtype: ResourceType, path: str) -> _Target | None:
    """Resolve a path; None when it names something we do not keep, so the op is ignored.

    A read-only attribute (id, meta, groups, manager.displayName) is an error (400 mutability,
    RFC 7644 §3.5.2): the stored values are the server's to set, and a client that tries should
    hear that nothing changed rather than get a 200 that did nothing."""
    if len(path) > MAX_PATH_LENGTH:
        raise invalid_path(f"A path is at most {MAX_PATH_LENGTH} characters; this one has {len(path)}")
    target = _cached_target(rtype, path) if len(path) <= _CACHED_PATH_LENGTH else _resolve_target(rtype, path)
    if isinstance(target, ScimError):
        raise ScimError(target.status, target.detail, target.scim_type)
    return target


@lru_cache(maxsize=1024)
def _cached_target(rtype: ResourceType, path: str) -> _Target | ScimError | None:
    """Cached: a client sends the same few paths over and over (Entra's name.givenName, active,
    phoneNumbers[type eq "work"].value...), and resolving one is a regex, a schema walk and, for a
    filtered path, a filter parse. What is cached is immutable; a read-only attribute's error is
    cached as a value (a fresh exception is raised from it), other errors are never cached."""
    return _resolve_target(rtype, path)


def _resolve_target(rtype: ResourceType, path: str) -> _Target | ScimError | None:
    urn, rest = split_urn(path)
    if urn is not None and rtype.canonical_urn(urn) is None:
        return None
    match = _FILTERED_PATH.fullmatch(rest) if "[" in rest or "]" in rest else _PLAIN_PATH.fullmatch(rest)
    if match is None:
        raise invalid_path(
            f"{shown(path)} is not a valid path; use attr, attr.subAttr, attr[filter] or attr[filter].subAttr"
        )
    try:
        ref = resolve(rtype, urn, match["attr"], None)
    except ScimError:
        return None  # an attribute we do not keep: ignoring it never blocks e.g. a disable
    sub = ref.attr.sub(match["sub"]) if match["sub"] else None
    if match["sub"] and sub is None:
        return None
    if ref.attr.mutability == "readOnly" or (sub is not None and sub.mutability == "readOnly"):
        return _read_only(rtype, ref.attr, sub)
    value_filter = None
    if match.re is _FILTERED_PATH:
        attr_text = f"{urn}:{match['attr']}" if urn else match["attr"]
        try:
            value_filter = parse_path_filter(attr_text, match["filter"], rtype).filter
        except ScimError as exc:
            raise invalid_path(f"{shown(path)}: {exc.detail}") from None
    return _Target(ref.urn, ref.attr, sub, value_filter)


def _read_only(rtype: ResourceType, attr: Attribute, sub: Attribute | None) -> ScimError:
    name = f"{attr.name}.{sub.name}" if sub is not None else attr.name
    hint = ""
    if attr.name == "groups":
        hint = "; a user's groups change through the members of each group (PATCH /Groups/<id>)"
    elif attr.name == "meta":
        hint = "; the server keeps it"
    return ScimError(400, f"{name} is read-only: a PATCH cannot add, replace or remove it{hint}", "mutability")


def _chosen(elements: list, target: _Target) -> list:
    """The elements the path's filter selects (all of them without a filter)."""
    if target.filter is None:
        return list(elements)
    selects = element_matcher(target.filter)
    return [element for element in elements if isinstance(element, dict) and selects(element)]


def _key(element: object) -> object:
    """A hashable stand-in for a value, equal exactly when the values are: a complex value's
    sub-attributes are strings and booleans, so its items make a frozenset."""
    return frozenset(element.items()) if isinstance(element, dict) else element


def _without(current: list, gone: list) -> list:
    """current less every element that holds all the sub-attributes of some value in gone
    ({"value": "a@x"} removes {"value": "a@x", "type": "work"}), in time linear in both: an element
    has a handful of sub-attributes, so its subsets of the sizes in gone are few, and each is a hash
    lookup instead of a comparison with every value in gone."""
    if not gone:
        return current
    if not all(isinstance(part, dict) for part in gone):
        values = {_key(part) for part in gone}
        return [element for element in current if _key(element) not in values]
    parts = {frozenset(part.items()) for part in gone}
    sizes = sorted({len(part) for part in parts})
    direct = len(parts) <= 8  # a few values: comparing with each is cheaper than hashing subsets

    def listed(element: dict) -> bool:
        if direct:
            items = element.items()
            return any(items >= part for part in parts)
        pairs = tuple(element.items())
        return any(
            frozenset(combination) in parts
            for size in sizes
            if size <= len(pairs)
            for combination in combinations(pairs, size)
        )

    return [element for element in current if not listed(element)]


def _name(target: _Target) -> str:
    base = f"{target.urn}:{target.attr.name}" if target.urn else target.attr.name
    return f"{base}.{target.sub.name}" if target.sub else base


def _member_op(op: str, target: _Target, value: object) -> MemberOp:
    if target.sub is not None:
        # A member's value, type and $ref are immutable (and display read-only): RFC 7644 §3.5.2.
        raise ScimError(
            400,
            f"members.{target.sub.name} is {target.sub.mutability}: members are added and removed whole; "
            'use the path members or members[value eq "<id>"]',
            "mutability",
        )
    if target.filter is not None:
        if op != "remove":
            raise invalid_path(f"{op} cannot take a filter on members; use {op} with the path members")
        return MemberOp("remove", tuple(Member(member_id) for member_id in _filtered_ids(target.filter)))
    if op == "remove":
        # With a value array (Entra's legacy dialect) only the listed members go, never all of them.
        return MemberOp("clear") if value is None else MemberOp("remove", tuple(parse_members(value)))
    return MemberOp("add" if op == "add" else "replace", tuple(parse_members(value)))


def _filtered_ids(node: Node) -> list[str]:
    """The ids in members[value eq "a" or value eq "b"]; other filters would need the member rows."""
    if isinstance(node, Or):
        return _filtered_ids(node.left) + _filtered_ids(node.right)
    if isinstance(node, Compare) and node.op == "eq" and node.ref.leaf.name == "value" and isinstance(node.value, str):
        return [node.value]
    raise invalid_path('Members can be selected only by id: members[value eq "<id>"], optionally joined with or')


def _holder(work: dict, urn: str | None) -> dict:
    return work if urn is None else work.setdefault(urn, {})


def _put(obj: dict, key: str, value: object) -> None:
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value


def _seed(target: _Target) -> dict:
    """A new element that satisfies the path's filter: possible when it is eq terms joined by and."""
    seed: dict = {}
    pending = [target.filter] if target.filter is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, And):
            pending.extend((node.right, node.left))
        elif isinstance(node, Compare) and node.op == "eq" and node.value is not None:
            seed[node.ref.leaf.name] = node.value
        else:
            raise ScimError(
                400,
                f"No {target.attr.name} value matches the filter, and it does not say how to "
                'create one; use eq terms such as [type eq "work"]',
                "noTarget",
            )
    return seed


def _demote_primaries(elements: list, chosen: list) -> None:
    """A value newly set primary takes the flag from the others (RFC 7644 §3.5.2)."""
    if any(element.get("primary") is True for element in chosen):
        keep = {id(element) for element in chosen}
        for element in elements:
            if element.get("primary") is True and id(element) not in keep:
                element["primary"] = False
