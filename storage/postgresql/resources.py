"""Users, groups and their members on PostgreSQL: the SCIM hot paths (create, get, search, update, delete).

Every write is one transaction. An update reads its row with SELECT ... FOR UPDATE and runs the
change function on it there, so concurrent writes to one resource (from this instance or another)
are applied one after the other, each to what the one before it stored. Member changes are row
deltas (INSERT ... ON CONFLICT DO NOTHING, DELETE), never a rewrite of a list read earlier.
"""

from __future__ import annotations

import time

import asyncpg
import orjson

from scim.errors import ScimError, not_found, shown
from scim.patch import Member, MemberOp
from storage import Change, ChangeFn, CheckFn, Encoder, Query, Row
from storage.common import new_resource_id, now
from storage.postgresql.dialect import POSTGRESQL
from storage.postgresql.engine import Connection, Engine, status_count
from storage.resource_rules import IdpDeleted, changed_columns, hot_columns, typed_members, uniqueness
from storage.sql import GROUPS, USERS, TableMap, order_clause, where_clause

TABLES: dict[str, TableMap] = {"User": USERS, "Group": GROUPS}
# A page whose rows' groups (or members) are costly to load ends early once loading them took this
# long (the first row is always loaded whole), as the SQLite backend's PAGE_LOAD_STEPS.
PAGE_LOAD_SECONDS = 0.1
ROW_COLUMNS = "t.id, t.doc, t.version, t.created, t.modified"


def dumps(doc: dict) -> str:
    return orjson.dumps(doc).decode()


def to_row(record: asyncpg.Record) -> Row:
    return Row(record[0], orjson.loads(record[1]), record[2], record[3], record[4])


class GroupWalkTooLarge(Exception):
    """A user's groups reach more groups than the walk was allowed to visit."""


def too_many_groups(user_id: str, cap: int) -> ScimError:
    return ScimError(
        400,
        f"User {user_id} is in more than {cap} groups counting nested ones, more than this server lists "
        "(scim.max_user_groups); read it with excludedAttributes=groups",
        "tooMany",
    )


class Resources(Engine):
    """ResourceStore's reads and writes of users and groups (authenticate is in auth.py), and counts."""

    async def create(self, rtype: str, idp_id: str, doc: dict, members: list[Member] | None = None) -> Row:
        tmap = TABLES[rtype]
        stamp = now()
        row = Row(new_resource_id(), doc, 1, stamp, stamp)
        columns = hot_columns(tmap, doc)
        marks = ", ".join(f"${n}" for n in range(3, 3 + len(columns)))
        n = 3 + len(columns)
        sql = (
            f"INSERT INTO {tmap.table} (id, idp_id, {', '.join(columns)}, doc, version, created, modified) "
            f"VALUES ($1, $2, {marks}, ${n}, ${n + 1}, ${n + 2}, ${n + 3})"
        )

        async def insert(conn: Connection) -> Row:
            # Under a key-share lock of the IdP's row: a create authenticated before its IdP was
            # deleted must not leave a row of it behind (delete_idp deletes that row first).
            await check_idp(conn, idp_id)
            try:
                await conn.execute(sql, row.id, idp_id, *columns.values(), dumps(doc), 1, stamp, stamp)
            except asyncpg.UniqueViolationError:
                raise uniqueness(tmap, doc) from None
            if tmap is GROUPS:
                if members:
                    await apply_member_ops(conn, idp_id, row.id, [MemberOp("add", tuple(members))])
                row.members = await load_members(conn, row.id)
            else:
                row.groups = []
            return row

        return await self.write(insert)

    async def get(
        self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True, encode: Encoder | None = None
    ) -> Row | None:
        tmap = TABLES[rtype]

        async def load(conn: Connection) -> Row | None:
            found = await conn.fetchrow(
                f"SELECT {ROW_COLUMNS} FROM {tmap.table} AS t WHERE t.id = $1 AND t.idp_id = $2", resource_id, idp_id
            )
            if found is None:
                return None
            row = to_row(found)
            if members:
                await self._attach_members(conn, tmap, row)
            if encode is not None:
                row.encoded = encode(row)
            return row

        return await self.read(load)

    async def search(
        self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None
    ) -> tuple[int, list[Row]]:
        tmap = TABLES[rtype]
        params: list = [idp_id]
        where = "true" if query.where is None else where_clause(query.where, tmap, idp_id, POSTGRESQL, params)[0]
        order = order_clause(query.sort_by, query.descending, tmap, POSTGRESQL) if query.sort_by else "t.seq"
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = $1 AND {where}"
        n = len(params)

        async def run(conn: Connection) -> tuple[int, list[Row]]:
            rows: list[Row] = []
            size, ended_early = 0, False
            if query.count > 0:
                found = await conn.fetch(
                    f"SELECT {ROW_COLUMNS} {base} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
                    *params,
                    query.count,
                    query.start_index - 1,
                )
                deadline = time.monotonic() + PAGE_LOAD_SECONDS
                for record in found:
                    row = to_row(record)
                    if query.members:
                        if rows and time.monotonic() > deadline:
                            ended_early = True
                            break
                        await self._attach_members(conn, tmap, row)
                    if encode is not None:
                        row.encoded = encode(row)
                        if rows and query.max_bytes and size + len(row.encoded) > query.max_bytes:
                            ended_early = True
                            break
                        size += len(row.encoded)
                    rows.append(row)
            if not ended_early and len(rows) < query.count and (rows or query.start_index == 1):
                # A short page is the last one: it tells the total, and a lookup by userName (one
                # row or none, Entra's commonest request) needs no count query.
                return query.start_index - 1 + len(rows), rows
            return await conn.fetchval(f"SELECT count(*) {base}", *params), rows

        try:
            return await self.read(run)
        except (asyncpg.DataError, asyncpg.SyntaxOrAccessError) as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *, members: bool = True) -> Row:
        tmap = TABLES[rtype]

        async def run(conn: Connection) -> Row:
            current = await load_for_write(conn, tmap, rtype, idp_id, resource_id)
            result: Change = change(current)
            changed = False
            columns: dict[str, object] = {}
            if result.doc is not None and result.doc != current.doc:
                columns = changed_columns(tmap, current.doc, result.doc)
                current.doc = result.doc
                changed = True
            if result.member_ops:
                changed = await apply_member_ops(conn, idp_id, current.id, result.member_ops) or changed
            if changed:
                current.version += 1
                current.modified = now()
                sets = "".join(f"{name} = ${n}, " for n, name in enumerate(columns, start=5))
                try:
                    await conn.execute(
                        f"UPDATE {tmap.table} SET {sets}doc = $1, version = $2, modified = $3 WHERE id = $4",
                        dumps(current.doc),
                        current.version,
                        current.modified,
                        current.id,
                        *columns.values(),
                    )
                except asyncpg.UniqueViolationError:
                    raise uniqueness(tmap, current.doc) from None
            if members and tmap is GROUPS:
                current.members = await load_members(conn, current.id)
            return current

        row = await self.write(run)
        if members and tmap is USERS:
            # Read after the commit: a user's groups may be a long walk, never held in the write.
            try:
                row.groups = await self.read(lambda conn: load_groups(conn, row.id, self.max_user_groups))
            except GroupWalkTooLarge:
                row.groups = None
        return row

    async def delete(self, rtype: str, idp_id: str, resource_id: str, check: CheckFn | None = None) -> None:
        tmap = TABLES[rtype]

        async def run(conn: Connection) -> None:
            current = await load_for_write(conn, tmap, rtype, idp_id, resource_id)
            if check is not None:
                check(current)
            # Groups that lose a member (this resource) change: bump their version.
            await conn.execute(
                "UPDATE groups SET version = version + 1, modified = $1 WHERE id IN "
                "(SELECT group_id FROM group_members WHERE member_id = $2)",
                now(),
                resource_id,
            )
            await conn.execute("DELETE FROM group_members WHERE member_id = $1", resource_id)
            if tmap is GROUPS:
                await conn.execute("DELETE FROM group_members WHERE group_id = $1", resource_id)
            await conn.execute(f"DELETE FROM {tmap.table} WHERE id = $1", resource_id)

        await self.write(run)

    async def counts(self, idp_id: str) -> dict[str, int]:
        async def run(conn: Connection) -> dict[str, int]:
            users = await conn.fetchval("SELECT count(*) FROM users WHERE idp_id = $1", idp_id)
            groups = await conn.fetchval("SELECT count(*) FROM groups WHERE idp_id = $1", idp_id)
            return {"users": users, "groups": groups}

        return await self.read(run)

    async def _attach_members(self, conn: Connection, tmap: TableMap, row: Row) -> None:
        if tmap is GROUPS:
            row.members = await load_members(conn, row.id)
            return
        try:
            row.groups = await load_groups(conn, row.id, self.max_user_groups)
        except GroupWalkTooLarge:
            raise too_many_groups(row.id, self.max_user_groups) from None


async def check_idp(conn: Connection, idp_id: str) -> None:
    """The IdP exists, and stays until this transaction ends (delete_idp waits for it)."""
    if await conn.fetchval("SELECT 1 FROM idps WHERE id = $1 FOR KEY SHARE", idp_id) is None:
        raise IdpDeleted()


async def load_for_write(conn: Connection, tmap: TableMap, rtype: str, idp_id: str, resource_id: str) -> Row:
    """The row an update or delete works on, locked until the transaction ends; 404, or 401 when
    the IdP itself was deleted since the request was authenticated."""
    found = await conn.fetchrow(
        f"SELECT {ROW_COLUMNS} FROM {tmap.table} AS t WHERE t.id = $1 AND t.idp_id = $2 FOR UPDATE",
        resource_id,
        idp_id,
    )
    if found is None:
        await check_idp(conn, idp_id)
        raise not_found(f"{rtype} {shown(resource_id)} not found")
    return to_row(found)


MEMBERS = (
    "SELECT m.member_id, m.type, CASE m.type WHEN 'User' THEN "
    "(SELECT user_name FROM users WHERE id = m.member_id) "
    "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END "
    "FROM group_members AS m WHERE m.group_id = $1"
)


async def load_members(conn: Connection, group_id: str, limit: int | None = None) -> list[dict]:
    sql = MEMBERS if limit is None else f"{MEMBERS} LIMIT {int(limit)}"
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in await conn.fetch(sql, group_id)]


# A user's groups: the direct ones (by name), then those reached through nesting (by name). UNION
# visits each group once (cycles end); the LIMIT on the read of the walk stops it one group past
# the cap, since PostgreSQL computes a recursive query only as far as it is read.
GROUP_WALK = (
    "WITH RECURSIVE reach(gid) AS ("
    " SELECT group_id FROM group_members WHERE member_id = $1"
    " UNION SELECT gm.group_id FROM group_members AS gm JOIN reach ON gm.member_id = reach.gid)"
    " SELECT r.gid, g.display_name,"
    " EXISTS (SELECT 1 FROM group_members WHERE group_id = r.gid AND member_id = $1) AS direct"
    " FROM (SELECT gid FROM reach LIMIT $2) AS r JOIN groups AS g ON g.id = r.gid"
    ' ORDER BY direct DESC, g.display_name COLLATE "C"'
)


async def load_groups(conn: Connection, user_id: str, cap: int) -> list[dict]:
    """The user's groups, direct and nested; GroupWalkTooLarge when they are more than `cap`."""
    rows = await conn.fetch(GROUP_WALK, user_id, cap + 1)
    if len(rows) > cap:
        raise GroupWalkTooLarge(user_id)
    return [{"value": r[0], "display": r[1], "type": "direct" if r[2] else "indirect"} for r in rows]


async def apply_member_ops(conn: Connection, idp_id: str, group_id: str, ops: list[MemberOp]) -> bool:
    """Apply membership deltas in order; True when any row changed. Unknown ids abort the change."""
    changed = 0
    for op in ops:
        if op.op == "clear":
            changed += status_count(await conn.execute("DELETE FROM group_members WHERE group_id = $1", group_id))
            continue
        if op.op == "remove":
            changed += status_count(
                await conn.execute(
                    "DELETE FROM group_members WHERE group_id = $1 AND member_id = ANY($2::text[])",
                    group_id,
                    [m.value for m in op.members],
                )
            )
            continue
        typed = await member_types(conn, idp_id, group_id, op.members)
        ids = [member_id for member_id, _ in typed]
        if op.op == "replace":
            changed += status_count(
                await conn.execute(
                    "DELETE FROM group_members WHERE group_id = $1 AND NOT (member_id = ANY($2::text[]))",
                    group_id,
                    ids,
                )
            )
        changed += status_count(
            await conn.execute(
                "INSERT INTO group_members (idp_id, group_id, member_id, type) "
                "SELECT $1, $2, m.id, m.type FROM unnest($3::text[], $4::text[]) AS m(id, type) "
                "ON CONFLICT DO NOTHING",
                idp_id,
                group_id,
                ids,
                [kind for _, kind in typed],
            )
        )
    return changed > 0


async def member_types(
    conn: Connection, idp_id: str, group_id: str, members: tuple[Member, ...]
) -> list[tuple[str, str]]:
    """Resolve each member to (id, "User"|"Group") within the IdP, or fail naming the unknown ids."""
    ids = list(dict.fromkeys(m.value for m in members))
    found: dict[str, str] = {
        member_id: kind
        for member_id, kind in await conn.fetch(
            "SELECT id, 'User' FROM users WHERE idp_id = $1 AND id = ANY($2::text[]) "
            "UNION ALL SELECT id, 'Group' FROM groups WHERE idp_id = $1 AND id = ANY($2::text[])",
            idp_id,
            ids,
        )
    }
    return typed_members(group_id, members, found)
