"""What every backend's users and groups obey alike, free of SQL: the errors of a taken name and of
a deleted IdP, the hot attributes kept in columns, and the checks of a member list."""

from __future__ import annotations

from scim.errors import ScimError, invalid_value, shown
from scim.patch import Member
from storage.sql import USERS, TableMap


class IdpDeleted(ScimError):
    """401 for a request authenticated just before its IdP was deleted: the write stored nothing,
    and the next request gets the ordinary 401 of an unknown IdP."""

    def __init__(self) -> None:
        super().__init__(401, "This IdP was deleted while the request ran; nothing was stored")


class ReadTooLong(ScimError):
    """400 tooMany (RFC 7644 §3.4.2.2: more than the server is willing to calculate or process) for
    a read stopped at database.read_timeout_ms: a scan of a big directory (a `co` filter on an
    unindexed attribute), or a walk of deeply nested groups, holds a database connection no other
    request gets meanwhile."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            400,
            f"The request took longer than this server spends on one read ({seconds * 1000:.0f} ms, "
            "database.read_timeout_ms) and was stopped: narrow the filter, filter on an indexed attribute "
            "(id, userName, externalId, displayName) rather than a scan such as `co` or `sw` on other "
            "attributes, ask for excludedAttributes=groups (or members), or have the operator raise the setting",
            "tooMany",
        )


def uniqueness(tmap: TableMap, doc: dict) -> ScimError:
    if tmap is USERS:
        return ScimError(
            409,
            f"userName {shown(doc.get('userName'))} is already taken in this IdP (user names are "
            "unique regardless of letter case); look the user up with a userName filter",
            "uniqueness",
        )
    return ScimError(
        409,
        f"displayName {shown(doc.get('displayName'))} is already taken in this IdP (group names are "
        "unique regardless of letter case)",
        "uniqueness",
    )


def hot_columns(tmap: TableMap, doc: dict) -> dict[str, object]:
    """The attributes kept in their own (indexed) columns, by column name, in table order; `active`
    as a bool (the SQLite backend stores it as 0/1)."""
    if tmap is USERS:
        return {"user_name": doc["userName"], "external_id": doc.get("externalId"), "active": doc.get("active")}
    return {"display_name": doc["displayName"], "external_id": doc.get("externalId")}


def changed_columns(tmap: TableMap, old: dict, new: dict) -> dict[str, object]:
    """The hot columns (userName/displayName, externalId, active) whose value differs, by name."""
    before = hot_columns(tmap, old)
    return {name: value for name, value in hot_columns(tmap, new).items() if value != before[name]}


def typed_members(group_id: str, members: tuple[Member, ...], found: dict[str, str]) -> list[tuple[str, str]]:
    """The members as (id, "User"|"Group"), given the kind of each id `found` in the IdP; 400
    invalidValue naming the unknown ids, for the group itself, or for a member of the other kind."""
    ids = list(dict.fromkeys(m.value for m in members))
    missing = [i for i in ids if i not in found]
    if missing:
        listed = ", ".join(map(shown, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise invalid_value(f"members: no user or group with id {listed} in this IdP; nothing was changed")
    if group_id in found:
        raise invalid_value("members: a group cannot be a member of itself")
    declared = {m.value: m.type for m in members if m.type}
    for member_id, kind in found.items():
        if declared.get(member_id) and declared[member_id] != kind:
            raise invalid_value(f"members: {shown(member_id)} is a {kind}, not a {declared[member_id]}")
    return [(i, found[i]) for i in ids]


def too_many_groups(user_id: str, cap: int) -> ScimError:
    """400 tooMany for a read of a user in more groups (counting nested ones) than scim.max_user_groups."""
    return ScimError(
        400,
        f"User {user_id} is in more than {cap} groups counting nested ones, more than this server lists "
        "(scim.max_user_groups); read it with excludedAttributes=groups",
        "tooMany",
    )
