"""The SCIM request as the handlers read it."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Receive, Scope

from scim.errors import ScimError
from scim.routes import SCIM_PREFIX, ScimRoute
from storage import Principal


class ScimRequest:
    """One SCIM request as the handlers read it.

    A lighter stand-in for Starlette's Request on the server's hottest path: headers and query are
    plain dicts built once, and what the provisioning log needs (the principal, the body as read,
    the resource created, the error answered) is kept here for it instead of being parsed again.
    """

    __slots__ = (
        "scope",
        "receive",
        "method",
        "segments",
        "route",
        "path_params",
        "headers",
        "query_params",
        "principal",
        "raw_body",
        "body",
        "resource_id",
        "error",
        "log_detail",
        "target_name",
        "ignored",
        "injected",
        "bulk_request",
        "changed",
        "member_delta",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        # The path after /v1/scim/, split once for routing, the metrics label and the record.
        self.segments: list[str] = scope["path"][len(SCIM_PREFIX) :].rstrip("/").split("/")
        self.route: ScimRoute | None = None  # the route the path matched, whatever the method
        self.path_params: dict[str, str] = {}
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get.
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self.headers = headers
        query = scope.get("query_string", b"")
        self.query_params: dict[str, str] = (
            dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
        )
        self.principal: Principal | None = None
        self.raw_body = b""
        self.body: object = None  # the parsed body, when it was valid JSON
        self.resource_id: str | None = None  # the id of a resource this request created
        self.error: ScimError | None = None
        # What the log says instead of the error's detail when the admin may know more than the
        # client (why a sign-in failed); None: the error's own detail.
        self.log_detail: str | None = None
        # The name of the resource a DELETE removed: the record's target, so a search by name finds it.
        self.target_name: str | None = None
        # What the body sent that the tenant does not keep (scim.validate.not_kept), for the log.
        self.ignored: list[str] = []
        # The kind of fault a fault rule injected into this request's answer (web/faults.py), for the log.
        self.injected: str | None = None
        # The Bulk request this one is an operation of (or, on the Bulk request itself, that it
        # ran operations): the id its records share in the provisioning log.
        self.bulk_request: str | None = None
        # A write's stored document before and after it (None: there was none, or there is none now),
        # and a group's members added and removed: what the record's before/after view shows.
        self.changed: tuple[dict | None, dict | None] | None = None
        self.member_delta: tuple[int, int] | None = None

    @property
    def body_unread(self) -> bool:
        """Whether the client sent, or is still sending, a body that was not read to its end."""
        headers = self.headers
        return not self.raw_body and (headers.get("content-length", "0") != "0" or "transfer-encoding" in headers)

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""
