"""A stored document plus bookkeeping -> the SCIM resource a client sees (schemas, id, meta, refs)."""

from __future__ import annotations

from scim.schemas import ResourceType


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etags(header: str) -> set[str] | None:
    """The entity tags of an If-Match / If-None-Match header; None stands for "*"."""
    header = header.strip()
    if header == "*":
        return None
    return {tag.strip() for tag in header.split(",") if tag.strip()}


def etag_matches(tags: set[str] | None, version: int) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): W/"3" and "3" both match version 3."""
    if tags is None:
        return True
    opaque = f'"{version}"'
    return any(tag.removeprefix("W/") == opaque for tag in tags)


def member_references(members: list[dict], base_url: str) -> list[dict]:
    """A group's members as its resource lists them: each with its $ref, and its display when it has one."""
    return [
        {
            "value": m["value"],
            "type": m["type"],
            "display": m["display"],
            "$ref": f"{base_url}/{m['type']}s/{m['value']}",
        }
        if m.get("display") is not None
        else {"value": m["value"], "type": m["type"], "$ref": f"{base_url}/{m['type']}s/{m['value']}"}
        for m in members
    ]


def to_resource(
    rtype: ResourceType,
    resource_id: str,
    doc: dict,
    *,
    version: int,
    created: str,
    modified: str,
    base_url: str,
    members: list[dict] | None = None,
    groups: list[dict] | None = None,
) -> dict:
    """Assemble the full resource; members/groups are included when they were loaded."""
    location = f"{base_url}{rtype.endpoint}/{resource_id}"
    doc = rtype.answered_doc(doc)
    schemas = [rtype.schema, *(urn for urn in rtype.extensions if urn in doc)]
    resource: dict = {"schemas": schemas, "id": resource_id, **doc}
    if members is not None:
        resource["members"] = member_references(members, base_url)
    if groups:
        resource["groups"] = [
            {"value": g["value"], "$ref": f"{base_url}/Groups/{g['value']}", "display": g["display"], "type": g["type"]}
            for g in groups
        ]
    resource["meta"] = {
        "resourceType": rtype.name,
        "created": created,
        "lastModified": modified,
        "location": location,
        "version": etag(version),
    }
    return resource
