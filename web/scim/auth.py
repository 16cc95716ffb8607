"""Bearer authentication of SCIM requests: the API key selected for the IdP in the URL."""

from __future__ import annotations

from scim.errors import ScimError, shown
from scim.schemas import ResourceType
from storage import Principal, ResourceStore, SignInFailure
from web.scim.request import ScimRequest
from web.throttle import AuthThrottle

FIX_TENANT_URL = "copy the tenant URL from the IdP's page in the console"


class Unauthorized(ScimError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "The bearer token is missing, unknown, revoked or not the key of this IdP; "
            "use the secret of the API key selected for this IdP",
        )


class BearerAuth:
    """Checks the request's bearer token against the store's cached keys; failures feed the throttle."""

    def __init__(self, store: ResourceStore, throttle: AuthThrottle) -> None:
        self.store = store
        self.throttle = throttle

    def authenticate(self, request: ScimRequest, write: ResourceType | None = None) -> Principal:
        """The request's principal (also kept on the request); 401 without a valid key, 403 when a
        write to `write` needs a privilege the key lacks."""
        header = request.headers.get("authorization")
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        idp_id = request.path_params["idp"]
        bearer = scheme.lower() == "bearer" and bool(token)
        principal = self.store.authenticate(idp_id, token) if bearer else None
        if principal is None:
            # Every reason takes this same answer; only the provisioning log is told which it was.
            self.throttle.failed(request.client_host)
            if header is None:
                request.log_detail = (
                    "401: the request has no Authorization header; the client must send "
                    "'Authorization: Bearer <secret>' with the secret of the API key selected for this IdP"
                )
            elif not bearer:
                request.log_detail = not_bearer(scheme, token)
            else:
                request.log_detail = rejected(idp_id, self.store.sign_in_failure(idp_id, token))
            raise Unauthorized()
        request.principal = principal
        kind = write.name if write is not None else None
        if kind == "User" and not principal.users_write:
            raise ScimError(403, "This API key does not have the Users write privilege; grant it to the key")
        if kind == "Group" and not principal.groups_write:
            raise ScimError(403, "This API key does not have the Groups write privilege; grant it to the key")
        return principal


def not_bearer(scheme: str, token: str) -> str:
    """The log's reason for an Authorization header that holds no Bearer token."""
    fix = "send 'Authorization: Bearer <secret>' with the secret of the API key selected for this IdP"
    if scheme.lower() == "bearer" and not token:
        return f"401: the Authorization header says Bearer but holds no token; {fix}"
    if not scheme:
        return f"401: the Authorization header is empty; {fix}"
    # Only the scheme is named: the rest of the header (Basic credentials, say) is a secret.
    return f"401: the Authorization header is not a Bearer token (its scheme is {shown(scheme)}); {fix}"


def rejected(idp_id: str, failure: SignInFailure) -> str:
    """The log's reason for a Bearer secret that did not sign in, and what to fix."""
    key = f"API key {failure.key_name!r}"
    if failure.idp_name is None:
        if failure.deleted_idp_name is not None:
            reason = (
                f"401: the IdP ID {shown(idp_id)} in the tenant URL is that of IdP {failure.deleted_idp_name!r}, "
                "which was deleted"
            )
        else:
            reason = f"401: no IdP has the ID {shown(idp_id)} in the tenant URL (mistyped or from a deleted IdP?)"
        if failure.key_idp_id is not None:
            return (
                f"{reason}; the secret is that of {key}, selected for IdP {failure.key_idp_name!r}, whose "
                f"tenant URL ends in /v1/scim/{failure.key_idp_id}: fix the IdP ID in the tenant URL"
            )
        if failure.deleted_idp_name is not None:
            return f"{reason}; point the client at the tenant URL of an IdP that exists (or create one)"
        return f"{reason}; {FIX_TENANT_URL}"
    this = f"this tenant URL is IdP {failure.idp_name!r}"
    own = (
        f"use the secret of its key {failure.idp_key_name!r}"
        if failure.idp_key_name is not None
        else "it has no API key selected: create one and select it on the IdP's page"
    )
    if failure.key_name is None:
        return (
            f"401: the secret is not that of any API key (mistyped, cut short, or of a key since deleted); "
            f"{this}: {own}, or create a new key for it"
        )
    if failure.key_revoked is not None:
        return (
            f"401: the secret is that of {key}, revoked {failure.key_revoked}; create a new key, select it for "
            f"IdP {failure.idp_name!r} and put its secret in the client"
        )
    if failure.key_idp_id is None:
        return f"401: the secret is valid but belongs to {key}, which is selected for no IdP — {this}; {own}"
    if failure.key_idp_id == idp_id:
        # Revoked or reselected between the sign-in and this look: the next request is named rightly.
        return f"401: the key of IdP {failure.idp_name!r} changed while this request signed in; send it again"
    return (
        f"401: the secret is valid but belongs to {key}, selected for IdP {failure.key_idp_name!r} — {this}; "
        "use this IdP's key, or fix the IdP ID in the tenant URL"
    )
