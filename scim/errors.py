"""SCIM errors (RFC 7644 §3.12) as one exception type and its JSON body."""

from __future__ import annotations

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

# scimType values defined by RFC 7644 §3.12, Table 9, and RFC 9865.
SCIM_TYPES = frozenset(
    {
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
        # RFC 9865 §2.4: cursor paging.
        "invalidCursor",
        "expiredCursor",
    }
)


class ScimError(Exception):
    """A failure a SCIM client should see: HTTP status, optional scimType, a detail to act on."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        if scim_type is not None and scim_type not in SCIM_TYPES:
            raise ValueError(f"unknown scimType {scim_type!r}")
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.retry_after = retry_after  # seconds, sent as Retry-After with 429 and 503

    def to_dict(self) -> dict:
        body: dict = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body

    def __repr__(self) -> str:
        return f"ScimError({self.status}, {self.detail!r}, {self.scim_type!r})"


SHOWN_CHARS = 60


def shown(value: object) -> str:
    """A client's value as an error detail may quote it: every quotation of a client value (a path,
    an id, a name, a filter) goes through here. Short (SHOWN_CHARS characters, then "…"), and never
    a walk through a nested structure (repr of a deeply nested one exhausts the recursion limit, of
    a huge one floods the logs and the provisioning log's disk)."""
    if isinstance(value, str):
        return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…")
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int) and value.bit_length() > 3 * SHOWN_CHARS:
        return "a number too long to quote"  # over ~54 digits (and repr fails past 4,300)
    if isinstance(value, (int, float)):
        return repr(value)
    return "[…]" if isinstance(value, list) else "{…}"


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def not_found(detail: str) -> ScimError:
    return ScimError(404, detail)
