"""The storage interface the HTTP layer calls. A backend is one module implementing `Store`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from scim.filters import Node
from scim.patch import MemberOp
from scim.paths import AttrRef


@dataclass
class Row:
    """A stored resource: its canonical document (no id/meta/members/groups) and bookkeeping."""

    id: str
    doc: dict
    version: int
    created: str
    modified: str
    members: list[dict] | None = None  # groups, when loaded: [{"value", "type", "display"}]
    groups: list[dict] | None = None  # users, when loaded: [{"value", "display", "type"}]


@dataclass
class Change:
    """What an update does: a new document (None keeps it) and membership deltas, in order."""

    doc: dict | None = None
    member_ops: list[MemberOp] = field(default_factory=list)


ChangeFn = Callable[[Row], Change]
CheckFn = Callable[[Row], None]


@dataclass(frozen=True)
class Query:
    where: Node | None = None
    sort_by: AttrRef | None = None
    descending: bool = False
    start_index: int = 1  # 1-based, as in SCIM
    count: int = 100
    members: bool = True  # load member rows (groups) / group memberships (users)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    description: str
    users_write: bool
    groups_write: bool
    created: str
    last_used: str | None
    revoked: str | None

    @property
    def privileges(self) -> list[str]:
        return [name for name, on in (("users", self.users_write), ("groups", self.groups_write)) if on]


@dataclass(frozen=True)
class Idp:
    id: str
    name: str
    icon: str
    api_key_id: str | None
    created: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: a valid, unrevoked key bound to the IdP in the URL."""

    idp_id: str
    api_key_id: str
    users_write: bool
    groups_write: bool


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # administration
    async def create_api_key(self, name: str, description: str, users_write: bool,
                             groups_write: bool) -> tuple[ApiKey, str]: ...
    async def list_api_keys(self) -> list[ApiKey]: ...
    async def revoke_api_key(self, id_or_name: str) -> ApiKey: ...
    async def create_idp(self, name: str, icon: str, api_key: str | None) -> Idp: ...
    async def list_idps(self) -> list[Idp]: ...
    async def set_idp_api_key(self, idp_id: str, api_key: str) -> Idp: ...
    async def delete_idp(self, idp_id: str) -> None: ...
    def authenticate(self, idp_id: str, secret: str) -> Principal | None: ...

    # SCIM resources; rtype is "User" or "Group"
    async def create(self, rtype: str, idp_id: str, doc: dict, members: list[dict] | None = None) -> Row: ...
    async def get(self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True) -> Row | None: ...
    async def search(self, rtype: str, idp_id: str, query: Query) -> tuple[int, list[Row]]: ...
    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *,
                     members: bool = True) -> Row: ...
    async def delete(self, rtype: str, idp_id: str, resource_id: str, check: CheckFn | None = None) -> None: ...
