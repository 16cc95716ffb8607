"""Bearer authentication of SCIM requests: the API key selected for the IdP in the URL."""

from __future__ import annotations

from scim.errors import ScimError
from scim.schemas import ResourceType
from storage import Principal, ResourceStore
from web.scim.request import ScimRequest
from web.throttle import AuthThrottle


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
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        principal = (
            self.store.authenticate(request.path_params["idp"], token) if scheme.lower() == "bearer" and token else None
        )
        if principal is None:
            # A missing token, a wrong one and an unknown IdP take this same path: one answer for all.
            self.throttle.failed(request.client_host)
            raise Unauthorized()
        request.principal = principal
        kind = write.name if write is not None else None
        if kind == "User" and not principal.users_write:
            raise ScimError(403, "This API key does not have the Users write privilege; grant it to the key")
        if kind == "Group" and not principal.groups_write:
            raise ScimError(403, "This API key does not have the Groups write privilege; grant it to the key")
        return principal
