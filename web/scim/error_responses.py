"""Errors as SCIM answers: ScimError bodies with the headers their status calls for, routing errors
and bugs (the whole app's, not only the SCIM endpoints') mapped to SCIM errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException

from scim.errors import ScimError, shown
from web.scim.responses import ScimResponse

WWW_AUTHENTICATE = 'Bearer realm="scimlet"'
log = logging.getLogger("scimlet")


def error_response(error: ScimError, headers: Mapping[str, str] | None = None) -> ScimResponse:
    """The SCIM error body, with the headers its status calls for (RFC 6750 §3, RFC 9110 §10.2.3)."""
    headers = dict(headers or {})
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if error.status in (429, 503):
        headers.setdefault("Retry-After", str(error.retry_after))
    return ScimResponse(error.to_dict(), status_code=error.status, headers=headers)


def detached(error: ScimError) -> ScimError:
    """The error without its traceback and the exceptions chained to it, for keeping past the except
    block: their frames hold the request and its body, so a request that kept its error whole would
    sit in a reference cycle until the cyclic collector ran, which app.py makes rare."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def routing_error(method: str, path: str, exc: HTTPException) -> ScimError:
    """A routing error (unknown path, wrong method) as a SCIM error."""
    if exc.status_code == 404:
        detail = f"No such endpoint: {shown(path)}; SCIM resources are under /v1/scim/<IdP ID>/Users and /Groups"
    elif exc.status_code == 405:
        detail = f"{method} is not allowed on {shown(path)}"
    else:
        detail = str(exc.detail)
    return ScimError(exc.status_code, detail)


def internal_error(method: str, path: str, exc: BaseException) -> ScimError:
    """What the client sees of a bug; the traceback goes to the log."""
    log.error("unhandled error on %s %s", method, shown(path), exc_info=exc)
    return ScimError(500, "Internal server error; this is a bug in scimlet, please report it")


def http_error_response(method: str, path: str, exc: HTTPException) -> ScimResponse:
    return error_response(routing_error(method, path, exc), dict(exc.headers or {}))


def server_error_response(method: str, path: str, exc: BaseException) -> ScimResponse:
    return error_response(internal_error(method, path, exc))
