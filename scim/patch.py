"""PATCH (RFC 7644 §3.5.2 and Entra's two dialects) -> a new document and membership deltas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Member:
    value: str
    type: str | None = None  # "User" or "Group"; None when the client did not say


@dataclass(frozen=True)
class MemberOp:
    """One membership delta: add/remove these members, replace the set, or clear the group."""

    op: Literal["add", "remove", "replace", "clear"]
    members: tuple[Member, ...] = ()
