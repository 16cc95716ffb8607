"""Errors every backend raises the same way (SCIM errors are scim.errors.ScimError)."""

from __future__ import annotations


class AdminError(Exception):
    """An administration request that cannot be done (unknown key, duplicate name...).

    `status` is the HTTP status the admin API answers with: 400, 404 (no such key or IdP) or 409 (name taken).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
