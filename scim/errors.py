"""SCIM errors (RFC 7644 §3.12) as one exception type and its JSON body."""

from __future__ import annotations

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

# scimType values defined by RFC 7644 §3.12, Table 9.
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


def shown(value: object) -> str:
    """A client's value as an error detail may quote it: short, and never a walk through a nested
    structure (repr of a deeply nested one exhausts the recursion limit, of a huge one floods logs)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "…")
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
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
