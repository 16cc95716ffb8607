"""Bulk requests (RFC 7644 §3.7), as pure functions: the request read into operations, the order
that creates every resource before the operations that refer to it by `bulkId:<id>` (§3.7.2),
circular references found, references replaced by the ids created, and the BulkResponse.

web/scim/bulk.py runs each operation through the single-resource handlers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scim.errors import ScimError, invalid_syntax, invalid_value, shown

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
METHODS = ("POST", "PUT", "PATCH", "DELETE")
PREFIX = "bulkId:"
# A reference inside a path or a PATCH path's filter: up to the end of the segment or the quote.
PATH_REFERENCE = re.compile(r"bulkId:([^\s\"/\]]+)")
MAX_BULK_ID = 256  # characters: a bulkId is the client's label, echoed in the answer and the log


@dataclass
class BulkOperation:
    """One operation of a BulkRequest, as sent (`data` not yet resolved), and what it refers to."""

    index: int  # its place in the request
    method: str
    path: str
    bulk_id: str | None
    version: str | None
    data: object
    refers_to: set[str] = field(default_factory=set)  # bulkIds its path and data name
    problem: ScimError | None = None  # why it cannot run, found while reading the request


def read_request(body: dict, max_operations: int) -> tuple[list[BulkOperation], int | None]:
    """The operations of a BulkRequest and its failOnErrors (None: go on after any number of errors).

    A request that is not a BulkRequest at all is refused whole (400); an operation that cannot run
    (no method, an unknown one, no path) is kept with its problem, to be answered in its place."""
    urns = [urn.lower() for urn in body.get("schemas") or [] if isinstance(urn, str)]
    if BULK_REQUEST.lower() not in urns:
        raise invalid_syntax(f'A Bulk request\'s schemas must be ["{BULK_REQUEST}"]')
    operations = _field(body, "Operations")
    if not isinstance(operations, list):
        raise invalid_syntax("A Bulk request needs Operations, a list of operations")
    if len(operations) > max_operations:
        raise ScimError(
            413,
            f"The Bulk request has {len(operations)} operations; at most {max_operations} are accepted "
            "(maxOperations in /ServiceProviderConfig): split it",
        )
    fail_on_errors = _field(body, "failOnErrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool) or not isinstance(fail_on_errors, int) or fail_on_errors < 1
    ):
        raise invalid_value(f"failOnErrors must be a whole number of at least 1, not {shown(fail_on_errors)}")
    read = [_operation(index, op) for index, op in enumerate(operations)]
    seen: set[str] = set()
    for op in read:
        if op.bulk_id is not None:
            if op.bulk_id in seen:
                raise invalid_value(
                    f"bulkId {shown(op.bulk_id)} is given to more than one operation: each must be unique"
                )
            seen.add(op.bulk_id)
    return read, fail_on_errors


def _field(body: dict, name: str) -> object:
    """A member of the body by its name in any case, as SCIM reads attribute names."""
    lowered = name.lower()
    return next((value for key, value in body.items() if isinstance(key, str) and key.lower() == lowered), None)


def _operation(index: int, raw: object) -> BulkOperation:
    if not isinstance(raw, dict):
        return BulkOperation(index, "", "", None, None, None, problem=invalid_syntax("An operation must be an object"))
    method, path, bulk_id, version = (_field(raw, name) for name in ("method", "path", "bulkId", "version"))
    op = BulkOperation(
        index,
        method.upper() if isinstance(method, str) else "",
        path if isinstance(path, str) else "",
        bulk_id if isinstance(bulk_id, str) else None,
        version if isinstance(version, str) else None,
        _field(raw, "data"),
    )
    if op.method not in METHODS:
        op.problem = invalid_value(f"method must be one of {', '.join(METHODS)}, not {shown(method)}")
    elif not isinstance(path, str) or not path.startswith("/"):
        op.problem = invalid_value(
            f'path must be the resource\'s path, such as "/Users" or "/Groups/<id>", not {shown(path)}'
        )
    elif "?" in path or "#" in path:
        op.problem = invalid_value(f"path must not carry a query or a fragment: {shown(path)}")
    elif bulk_id is not None and (not isinstance(bulk_id, str) or not bulk_id or len(bulk_id) > MAX_BULK_ID):
        op.problem = invalid_value(f"bulkId must be a text of 1 to {MAX_BULK_ID} characters, not {shown(bulk_id)}")
    elif op.method == "POST" and op.bulk_id is None:
        op.problem = invalid_value("A POST operation needs a bulkId (RFC 7644 §3.7)")
    elif version is not None and not isinstance(version, str):
        op.problem = invalid_value(f'version must be an ETag such as W/"3", not {shown(version)}')
    if op.problem is None:
        op.refers_to = set(PATH_REFERENCE.findall(op.path)) | set(_references(op.data))
    return op


def _references(value: object, depth: int = 0) -> list[str]:
    """The bulkIds a value names: "bulkId:<id>" as the value of a "value" member (a member, a
    manager, a PATCH operation's value) or inside a PATCH operation's path."""
    if depth > 64:
        return []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            lowered = key.lower() if isinstance(key, str) else ""
            if lowered == "value" and isinstance(item, str) and item.startswith(PREFIX):
                found.append(item[len(PREFIX) :])
            elif lowered == "path" and isinstance(item, str):
                found += PATH_REFERENCE.findall(item)
            else:
                found += _references(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            found += _references(item, depth + 1)
    return found


def order(operations: list[BulkOperation]) -> list[BulkOperation]:
    """The operations in the order they run: the request's, except that an operation referring to
    a POST later in the request runs after it (RFC 7644 §3.7.2). Operations whose references go
    round in a circle (a group whose member is a group that has it as a member, or itself) get a
    409: RFC 7644 §3.7.1 lets a service provider refuse them rather than break the circle."""
    creates = {op.bulk_id: op for op in operations if op.method == "POST" and op.bulk_id is not None}
    ran: list[BulkOperation] = []
    state: dict[int, str] = {}  # index -> "visiting" or "done"
    path: list[BulkOperation] = []

    def visit(op: BulkOperation) -> None:
        state[op.index] = "visiting"
        path.append(op)
        for bulk_id in sorted(op.refers_to):
            target = creates.get(bulk_id)
            if target is None or op.problem is not None:
                continue  # answered when it runs: an unknown bulkId
            if state.get(target.index) == "visiting":
                circle = path[path.index(target) :]
                names = " -> ".join(shown(member.bulk_id or member.path) for member in [*circle, target])
                for member in circle:
                    if member.problem is None:
                        member.problem = ScimError(
                            409, f"Circular bulkId references ({names}): create the resources first, then PATCH them"
                        )
            elif target.index not in state:
                visit(target)
        path.pop()
        state[op.index] = "done"
        ran.append(op)

    for op in operations:
        if op.index not in state:
            visit(op)
    return ran


def resolve(op: BulkOperation, created: dict[str, str | None]) -> tuple[str, object]:
    """The operation's path and data with each `bulkId:<id>` replaced by the id of the resource
    that POST created. `created` maps the bulkIds run so far to their id, or None when that POST
    failed. Raises the operation's error: an unknown bulkId, or one whose POST failed."""
    for bulk_id in sorted(op.refers_to):
        if bulk_id not in created:
            raise invalid_value(f"bulkId:{bulk_id} names no POST operation of this Bulk request")
        if created[bulk_id] is None:
            raise ScimError(409, f"bulkId:{bulk_id} names a POST operation that failed, so this one cannot run")
    if not op.refers_to:
        return op.path, op.data
    ids: dict[str, str] = {key: value for key, value in created.items() if value is not None}

    def in_path(text: str) -> str:
        return PATH_REFERENCE.sub(lambda match: ids.get(match.group(1), match.group(0)), text)

    def replaced(value: object) -> object:
        if isinstance(value, dict):
            out: dict[object, object] = {}
            for key, item in value.items():
                lowered = key.lower() if isinstance(key, str) else ""
                if lowered == "value" and isinstance(item, str) and item.startswith(PREFIX):
                    out[key] = ids.get(item[len(PREFIX) :], item)
                elif lowered == "path" and isinstance(item, str):
                    out[key] = in_path(item)
                else:
                    out[key] = replaced(item)
            return out
        if isinstance(value, list):
            return [replaced(item) for item in value]
        return value

    return in_path(op.path), replaced(op.data)


def result(
    op: BulkOperation,
    status: int,
    location: str | None = None,
    version: str | None = None,
    error: dict | None = None,
) -> dict:
    """One operation's entry in the BulkResponse (RFC 7644 §3.7.3): status as text, as the RFC's
    examples give it; the error's SCIM body as its response."""
    entry: dict = {"method": op.method or None}
    if op.bulk_id is not None:
        entry["bulkId"] = op.bulk_id
    if version is not None:
        entry["version"] = version
    if location is not None:
        entry["location"] = location
    entry["status"] = str(status)
    if error is not None:
        entry["response"] = error
    if entry["method"] is None:
        del entry["method"]
    return entry


def bulk_response(results: list[dict]) -> dict:
    return {"schemas": [BULK_RESPONSE], "Operations": results}
