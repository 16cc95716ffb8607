"""attributes / excludedAttributes (RFC 7644 §3.4.2.5) and the schema's "returned" rules."""

from __future__ import annotations

from dataclasses import dataclass

from scim.errors import ScimError, invalid_value
from scim.paths import resolve_text
from scim.schemas import ResourceType

# Projection keys: (container, attribute) where container is None for the top level or an extension
# URN; the value is the set of sub-attribute names asked for, or None for the whole attribute.
Selection = dict[tuple[str | None, str], set[str] | None]


@dataclass(frozen=True)
class Projection:
    attributes: Selection | None = None  # only these (plus returned=always)
    excluded: Selection | None = None  # everything but these
    whole_extensions: frozenset[str] = frozenset()  # extension URNs asked for (or excluded) as a whole

    def wants(self, name: str, urn: str | None = None) -> bool:
        """Whether the top-level attribute may appear: used to skip loading members/groups at all."""
        key = (urn, name)
        if self.attributes is not None:
            return key in self.attributes or (urn is not None and urn in self.whole_extensions)
        if self.excluded is not None:
            return not (self.excluded.get(key, set()) is None or (urn is not None and urn in self.whole_extensions))
        return True


def parse_projection(rtype: ResourceType, attributes: str | list | None, excluded: str | list | None) -> Projection:
    """Parse the comma-separated lists; unknown names are ignored (RFC 7644 leaves it open)."""
    attrs = _split(attributes)
    excl = _split(excluded)
    if attrs:
        selection, whole = _selection(rtype, attrs)
        return Projection(attributes=selection, whole_extensions=whole)
    if excl:
        selection, whole = _selection(rtype, excl)
        return Projection(excluded=selection, whole_extensions=whole)
    return Projection()


def _split(value: str | list | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise invalid_value("attributes and excludedAttributes must be lists of attribute names")
        items = value
    elif isinstance(value, str):
        items = value.split(",")
    else:
        raise invalid_value("attributes and excludedAttributes must be comma-separated attribute names")
    return [item.strip() for item in items if item.strip()]


def _selection(rtype: ResourceType, names: list[str]) -> tuple[Selection, frozenset[str]]:
    selection: Selection = {}
    whole: set[str] = set()
    for name in names:
        urn = rtype.canonical_urn(name)
        if urn is not None:
            if urn == rtype.schema:
                continue
            whole.add(urn)
            continue
        try:
            ref = resolve_text(rtype, name)
        except ScimError:  # an unknown name selects nothing; it is not an error
            continue
        key = (ref.urn, ref.attr.name)
        if ref.sub is None:
            selection[key] = None
        elif (subs := selection.setdefault(key, set())) is not None:  # None: the whole attribute is already in
            subs.add(ref.sub.name)
    return selection, frozenset(whole)


def project(rtype: ResourceType, resource: dict, projection: Projection) -> dict:
    """Apply a projection to a full resource; returned=always attributes always stay."""
    if projection.attributes is None and projection.excluded is None:
        return resource
    out: dict = {}
    for key, value in resource.items():
        if key == "schemas":
            out[key] = value
            continue
        if key in rtype.extensions:
            kept = _project_container(rtype, key, value, projection)
            if kept:
                out[key] = kept
            continue
        kept_value = _project_attribute(rtype, None, key, value, projection)
        if kept_value is not None:
            out[key] = kept_value
    if "schemas" in out:
        # An extension the projection left out is no longer in the resource: its URN goes too
        # (RFC 7643 §3: schemas names the schemas of the attributes the resource holds).
        out["schemas"] = [urn for urn in out["schemas"] if urn not in rtype.extensions or urn in out]
    return out


def _project_container(rtype: ResourceType, urn: str, ext: dict, projection: Projection) -> dict:
    if urn in projection.whole_extensions:
        return ext if projection.attributes is not None else {}
    out = {}
    for key, value in ext.items():
        kept = _project_attribute(rtype, urn, key, value, projection)
        if kept is not None:
            out[key] = kept
    return out


def _project_attribute(
    rtype: ResourceType, urn: str | None, key: str, value: object, projection: Projection
) -> object | None:
    attr = rtype.attribute(urn, key)
    if attr is not None and attr.returned == "always":
        return value
    if projection.attributes is not None:
        if (urn, key) not in projection.attributes:
            return None
        subs = projection.attributes[(urn, key)]
        return value if subs is None else _pick(value, subs, keep=True)
    subs = projection.excluded.get((urn, key), set()) if projection.excluded is not None else set()
    if subs is None:
        return None
    return _pick(value, subs, keep=False) if subs else value


def _pick(value: object, subs: set[str], *, keep: bool) -> object | None:
    def one(item: object) -> object:
        if not isinstance(item, dict):
            return item
        return {k: v for k, v in item.items() if (k in subs) == keep}

    if isinstance(value, list):
        items = [one(item) for item in value]
        items = [item for item in items if item]
        return items or None
    picked = one(value)
    return picked or None
