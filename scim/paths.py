"""Attribute paths: case-insensitive names, URN prefixes and sub-attributes, resolved to the schema.

A resolved path (AttrRef) knows how to read its values from a canonical resource, where extension
attributes live under their schema URN key (RFC 7643 §3.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scim.errors import ScimError, invalid_path, shown
from scim.schemas import Attribute, ResourceType

ErrorFactory = Callable[[str], ScimError]


@dataclass(frozen=True)
class AttrRef:
    """A resolved attribute: `urn` is the extension URN (None for core and common attributes).

    `element` marks a path relative to one element of a multi-valued attribute, as used inside
    value filters such as emails[type eq "work"].
    """

    urn: str | None
    attr: Attribute
    sub: Attribute | None = None
    element: bool = False

    def __repr__(self) -> str:
        return f"AttrRef({self.name}{', element' if self.element else ''})"

    @property
    def leaf(self) -> Attribute:
        return self.sub or self.attr

    @property
    def name(self) -> str:
        base = f"{self.urn}:{self.attr.name}" if self.urn else self.attr.name
        return f"{base}.{self.sub.name}" if self.sub else base

    def container(self, resource: dict) -> dict | None:
        """The dict holding the top-level attribute: the resource, or its extension object."""
        if self.urn is None:
            return resource
        ext = resource.get(self.urn)
        return ext if isinstance(ext, dict) else None

    def values_of_attr(self, resource: dict) -> list:
        """The elements of the top-level attribute as a list (empty when absent)."""
        holder = self.container(resource)
        value = holder.get(self.attr.name) if holder is not None else None
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    def leaf_values(self, resource: dict) -> list:
        """Every value this path denotes in a resource (or, for element paths, in one element)."""
        if self.element:
            return [resource.get(self.leaf.name)]
        values = self.values_of_attr(resource)
        if self.sub is None:
            return values
        return [item.get(self.sub.name) for item in values if isinstance(item, dict)]


def split_urn(text: str) -> tuple[str | None, str]:
    """'urn:...:User:name.givenName' -> ('urn:...:User', 'name.givenName'); plain names -> (None, text)."""
    head = text.split("[", 1)[0]
    if ":" not in head:
        return None, text
    cut = head.rindex(":")
    return text[:cut], text[cut + 1 :]


def resolve(
    rtype: ResourceType, urn: str | None, name: str, sub: str | None, *, error: ErrorFactory = invalid_path
) -> AttrRef:
    """Resolve (urn, name, sub) case-insensitively, or raise error(detail)."""
    canonical_urn = None
    if urn is not None:
        canonical_urn = rtype.canonical_urn(urn)
        if canonical_urn is None:
            raise error(f"Unknown schema {shown(urn)} for {rtype.name}; known: {', '.join(rtype.urns.values())}")
    attr = rtype.attribute(canonical_urn, name)
    if attr is None and canonical_urn is None:
        # Unqualified extension names (Entra's "manager eq ...") resolve in the extensions.
        for ext_urn in rtype.extensions:
            attr = rtype.attribute(ext_urn, name)
            if attr is not None:
                canonical_urn = ext_urn
                break
    if attr is None:
        raise error(f"Unknown attribute {shown(name)} for {rtype.name}")
    ext = canonical_urn if canonical_urn in rtype.extensions else None
    if sub is None:
        return AttrRef(ext, attr)
    sub_attr = attr.sub(sub)
    if sub_attr is None:
        raise error(f"Unknown sub-attribute {shown(sub)} of {attr.name}")
    return AttrRef(ext, attr, sub_attr)


def resolve_sub(parent: AttrRef, name: str, *, error: ErrorFactory = invalid_path) -> AttrRef:
    """A sub-attribute of a multi-valued complex attribute, relative to one of its elements."""
    sub_attr = parent.attr.sub(name)
    if sub_attr is None:
        raise error(f"Unknown sub-attribute {shown(name)} of {parent.attr.name}")
    return AttrRef(parent.urn, parent.attr, sub_attr, element=True)


def resolve_text(rtype: ResourceType, text: str, *, error: ErrorFactory = invalid_path) -> AttrRef:
    """Resolve a dotted path such as 'name.givenName' or 'urn:...:enterprise:2.0:User:manager.value'."""
    urn, rest = split_urn(text)
    name, _, sub = rest.partition(".")
    if not name or "." in sub:
        raise error(f"{shown(text)} is not an attribute path; use attr, attr.subAttr or urn:...:attr")
    return resolve(rtype, urn, name, sub or None, error=error)
