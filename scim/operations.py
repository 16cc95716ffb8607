"""Name a SCIM request in words, as Entra's provisioning logs do: "Create User", "Disable User"...

Also redaction of request bodies: passwords and anything token-like never reach a log.
"""

from __future__ import annotations

import re

from scim.filters import fold
from scim.routes import ITEM, SEARCH, ScimRoute

SENSITIVE_KEYS = frozenset({"password", "secret", "token", "authorization", "access_token", "client_secret"})
REDACTED = "[redacted]"
TOO_DEEP = "[nested too deep to log]"
MAX_REDACT_DEPTH = 64


def classify(
    method: str, route: ScimRoute | None, query: dict[str, str], body: object, endpoint: str = ""
) -> tuple[str, str | None]:
    """(operation, resource type) for a request under /v1/scim/{idp}/, from the route its path
    matched (whatever its method: a refused method is named too). A path no route matched (None)
    is named after its endpoint, the first segment after the IdP ID."""
    if route is None:
        return (f"Read {endpoint}" if endpoint else "Unknown request"), None
    rtype = route.resource
    if route.endpoint == "Bulk":
        return "Bulk request", None
    if route.handler == "search_all":
        return "Search Users and Groups", None
    if rtype is None:
        return (f"Read {route.endpoint}" if method == "GET" else f"{method} {route.endpoint}"), None
    one = route.kind == ITEM
    if method == "POST" and not one:
        if route.kind == SEARCH:
            return f"Search {rtype}s", rtype
        return f"Create {rtype}", rtype
    if method == "GET" and not one:
        text = query.get("filter", "")
        if _looks_like_probe(text):
            return "Test connection", rtype
        return (f"Find {rtype}" if text else f"List {rtype}s"), rtype
    if method == "GET":
        return f"Get {rtype}", rtype
    if method == "DELETE":
        return f"Delete {rtype}", rtype
    if method == "PUT":
        return f"Replace {rtype}", rtype
    if method == "PATCH":
        return _patch_operation(rtype, body), rtype
    return f"{method} {rtype}", rtype


def _looks_like_probe(text: str) -> bool:
    """Entra's Test Connection asks for a random GUID as userName or displayName."""
    parts = text.split('"')
    if len(parts) != 3:
        return False
    value = parts[1]
    pieces = value.split("-")
    return [len(p) for p in pieces] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in fold(value).replace("-", "")
    )


def _patch_operation(rtype: str, body: object) -> str:
    operations = body.get("Operations") if isinstance(body, dict) else None
    if not isinstance(operations, list):
        return f"Update {rtype}"
    member_kinds = set()
    other = False
    for op in operations:
        if not isinstance(op, dict):
            continue
        path = op.get("path")
        kind = str(op.get("op", "")).lower()
        if isinstance(path, str) and fold(path).startswith("members"):
            member_kinds.add(kind)
            continue
        value = op.get("value")
        if rtype == "User" and _sets_active(path, value) is not None:
            return "Disable User" if _sets_active(path, value) is False else "Enable User"
        if isinstance(value, dict) and any(fold(k) == "members" for k in value):
            member_kinds.add(kind)
        else:
            other = True
    if member_kinds and not other:
        if member_kinds == {"add"}:
            return "Add members"
        if member_kinds == {"remove"}:
            return "Remove members"
        return "Update members"
    return f"Update {rtype}"


def _sets_active(path: object, value: object) -> bool | None:
    if isinstance(path, str) and fold(path) == "active":
        return _truthy(value)
    if path is None and isinstance(value, dict):
        for key, item in value.items():
            if fold(key) == "active":
                return _truthy(item)
    return None


def _truthy(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and fold(value) in ("true", "false"):
        return fold(value) == "true"
    return None


def target_of(rtype: str | None, body: object, resource_id: str | None) -> str | None:
    """What the operation is about, in the words an admin searches for: userName, displayName or id."""
    if isinstance(body, dict):
        for key in ("userName", "displayName"):
            value = body.get(key)
            if isinstance(value, str):
                return value
    return resource_id


def may_hold_secrets(raw: bytes) -> bool:
    """Cheap pre-check on a raw body: False only when no key of the parsed body can be sensitive,
    so that the body may be logged as it came. The decision itself is redact()'s, on the parsed
    body. A sensitive name can reach the parsed body without its bytes in the raw one only through
    a JSON escape ("pass\\u0077ord") or the one non-ASCII character that str.lower() turns into an
    ASCII letter (U+212A KELVIN SIGN, "k"): bodies holding either always go through redact().
    (Substring searches of a lower-cased copy: a case-insensitive regex took six times longer.)"""
    return any(map(raw.lower().__contains__, _SENSITIVE_BYTES))


_SENSITIVE_BYTES = (b"\\u", "\u212a".encode(), *(key.encode() for key in SENSITIVE_KEYS))


def redact(value: object, depth: int = 0) -> object:
    """A copy of a parsed body with every sensitive value replaced: under a sensitive key (any case,
    also URN-qualified, as in a path-less PATCH value), and the value of a PATCH operation whose
    path names a sensitive attribute ({"path": "password", "value": ...}) or is not a string at
    all (an operation the server refuses, whose value may still be a secret). Names are compared
    as the server reads them: decoded, lower-cased with str.lower. Past MAX_REDACT_DEPTH nothing
    more is kept: a body nested that deep is hostile, and walking it further would exhaust the
    recursion limit."""
    if depth > MAX_REDACT_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        secret_value = any(
            isinstance(k, str)
            and k.lower() == "path"
            and v is not None
            and (not isinstance(v, str) or _names_secret(v))
            for k, v in value.items()
        )
        return {
            k: REDACTED
            if isinstance(k, str) and (_names_secret(k) or (secret_value and k.lower() == "value"))
            else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item, depth + 1) for item in value]
    return value


def _names_secret(name: str) -> bool:
    """password, PASSWORD, urn:...:User:password, password.x, password[value eq "a:b"]: any part of
    the name between its colons, dots and brackets is sensitive."""
    return any(part.strip() in SENSITIVE_KEYS for part in _NAME_PARTS.split(name.lower()))


_NAME_PARTS = re.compile(r"[:.\[\]]")
