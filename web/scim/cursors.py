"""Cursor paging (RFC 9865): the cursors of a walk through /Users or /Groups, signed and timed.

A cursor names a keyset position of ResourceStore.walk (a resource's place in creation order) and
a direction, bound to the query it belongs to (the IdP, the resource type, the filter): it is
opaque to the client, tamper-evident (itsdangerous' HMAC, keyed by a secret every instance reads
from the settings table), and good for `scim.cursor_timeout` seconds. A cursor that was changed, or
that belongs to another IdP or query, is 400 `invalidCursor`; one past its time 400 `expiredCursor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from scim.errors import ScimError

CURSOR_KEY_SETTING = "scim.cursor_key"
AFTER, BEFORE = "a", "b"


@dataclass(frozen=True)
class Position:
    """Where a cursor points: after or before `position`, in the walk of `scope`."""

    direction: str  # AFTER or BEFORE
    position: int


def scope_of(idp_id: str, resource_type: str, filter_text: str | None) -> str:
    """What a cursor is bound to: the walk of this IdP's resources of this type that match this filter."""
    text = "\x00".join((idp_id, resource_type, filter_text or ""))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Cursors:
    """Makes and reads cursors; the key is read (or made) in the store on first use."""

    def __init__(self, timeout: int, load_key: Callable[[], Awaitable[str]]) -> None:
        self.timeout = timeout
        self.load_key = load_key
        self._serializer: URLSafeTimedSerializer | None = None

    async def serializer(self) -> URLSafeTimedSerializer:
        if self._serializer is None:
            self._serializer = URLSafeTimedSerializer(await self.load_key(), salt="scimlet-scim-cursor")
        return self._serializer

    async def make(self, direction: str, position: int, scope: str) -> str:
        return str((await self.serializer()).dumps([direction, position, scope]))

    async def read(self, text: str, scope: str) -> Position | None:
        """The position a cursor names (None: the empty cursor, the first page); 400 when it
        cannot be used here."""
        if text == "":
            return None
        serializer = await self.serializer()
        try:
            payload = serializer.loads(text, max_age=self.timeout)
        except SignatureExpired:
            raise ScimError(
                400,
                f"The cursor has expired (cursors last {self.timeout} s, scim.cursor_timeout): "
                'start the walk again with cursor=""',
                "expiredCursor",
            ) from None
        except BadData:
            raise invalid_cursor("The cursor is not one this server gave") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or payload[0] not in (AFTER, BEFORE)
            or isinstance(payload[1], bool)
            or not isinstance(payload[1], int)
        ):
            raise invalid_cursor("The cursor is not one this server gave")
        if payload[2] != scope:
            raise invalid_cursor(
                "The cursor belongs to another walk (another IdP, resource type or filter): send the filter it was "
                'given with, or start again with cursor=""'
            )
        return Position(payload[0], payload[1])


def invalid_cursor(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidCursor")
