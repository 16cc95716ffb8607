"""Users, groups and their members on PostgreSQL: the SCIM hot paths (create, get, search, update, delete).

Round trips to the database are what a request costs here (each is a wait, and a statement for
PostgreSQL to run): the common requests take one or two. A user is read with its groups in one
statement (the walk through nested groups is a subquery of the row's); a create is one INSERT that
also takes the IdP's key-share lock. A user's update reads the row, runs the change function, and
stores the result only if the row's version is still the one read (compare-and-set), else reads
again and runs the change on what is there now: concurrent writes to one user (from this instance
or another) each apply to what the one before stored; one that keeps losing that race takes the
row's lock (SELECT ... FOR UPDATE) at its last attempt. A group's update runs in a transaction, on
its row read with SELECT ... FOR UPDATE, because its member changes are row deltas (INSERT ... ON
CONFLICT DO NOTHING, DELETE) that must commit with its version; the common one, a PATCH that
only adds or removes listed members, is one statement instead (migrations/002_member_delta.sql):
the group's row is then locked while PostgreSQL runs it, not for round trips to this process.
A write that must keep a declared `uniqueness: server` value unique (UniqueValue) checks it in a
transaction that holds an advisory lock on (IdP, table) first, so two instances cannot both find a
value free and both store it; such writes skip the batched statements.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson

from scim.errors import ScimError, not_found, shown
from scim.patch import Member, MemberOp
from storage import (
    Change,
    ChangeFn,
    CheckFn,
    Encoder,
    EventSource,
    MemberEncoder,
    MemberStream,
    Query,
    Row,
    UniqueValue,
    WalkPage,
)
from storage.common import new_resource_id, now
from storage.outbox import KEEP_LIVE_DATA, OUTBOX_COLUMNS, OutboxRow, outbox_rows, snapshot_json
from storage.postgresql.dialect import POSTGRESQL
from storage.postgresql.engine import ATTEMPTS, UNAVAILABLE, Batcher, Connection, Engine, status_count
from storage.records import MEMBER_CHUNK
from storage.resource_rules import (
    IdpDeleted,
    changed_columns,
    hot_columns,
    too_many_groups,
    typed_members,
    uniqueness,
)
from storage.sql import GROUPS, TABLES, USERS, TableMap, is_point_lookup, order_clause, taken_query, where_clause

# A page of groups ends early, before the group that would take the members loaded for it past this
# many (the first group is always loaded whole), as the SQLite backend's PAGE_LOAD_STEPS: counted
# in rows, not time, so what a page holds does not depend on how busy the server is.
PAGE_LOAD_MEMBERS = 100_000
# The same for a page of users: it ends before the user that would take the groups listed past this
# many (a user's groups are walked in the page's one statement; the number listed stands for the
# walk's cost). 100 users in 40 groups each make a full page.
PAGE_LOAD_GROUPS = 4_000
ROW_COLUMNS = "t.id, t.doc, t.version, t.created, t.modified"


def dumps(doc: dict) -> str:
    return orjson.dumps(doc).decode()


def to_row(record: asyncpg.Record) -> Row:
    return Row(record[0], orjson.loads(record[1]), record[2], record[3], record[4])


class GroupWalkTooLarge(Exception):
    """A user's groups reach more groups than the walk was allowed to visit."""


class Resources(Engine):
    """ResourceStore's reads and writes of users and groups (authenticate is in auth.py), and counts."""

    _user_creates: Batcher[tuple[str, Row], Row]

    _user_updates: Batcher[tuple[Row, int], bool]

    _user_creates_with_events: Batcher[tuple[str, Row, EventSource], Row]

    def _start_batchers(self) -> None:
        self._user_creates = Batcher(self, insert_users)
        self._user_creates_with_events = Batcher(self, insert_users_with_events)
        self._user_updates = Batcher(self, update_users)

    async def create(
        self,
        rtype: str,
        idp_id: str,
        doc: dict,
        members: list[Member] | None = None,
        unique: tuple[UniqueValue, ...] = (),
        events: EventSource | None = None,
    ) -> Row:
        tmap = TABLES[rtype]
        stamp = now()
        row = Row(new_resource_id(), doc, 1, stamp, stamp)
        if tmap is USERS and not unique:
            # Concurrent creates go to the database together, as one INSERT (insert_users).
            if events is not None:
                return await self._user_creates_with_events.submit((idp_id, row, events))
            return await self._user_creates.submit((idp_id, row))
        columns = hot_columns(tmap, doc)
        values = ", ".join(f"${n}" for n in range(3, 7 + len(columns)))
        # The IdP's row under a key-share lock: a create authenticated before its IdP was deleted
        # inserts nothing (delete_idp deletes that row first, and waits for this or is seen by it).
        sql = (
            f"INSERT INTO {tmap.table} (id, idp_id, {', '.join(columns)}, doc, version, created, modified) "
            f"SELECT $1, i.id, {values} FROM idps AS i WHERE i.id = $2 FOR KEY SHARE"
        )

        async def insert(conn: Connection) -> Row:
            await check_unique(conn, tmap, idp_id, row.id, unique)
            try:
                inserted = status_count(
                    await conn.execute(sql, row.id, idp_id, *columns.values(), dumps(doc), 1, stamp, stamp)
                )
            except asyncpg.UniqueViolationError:
                raise uniqueness(tmap, doc) from None
            if not inserted:
                raise IdpDeleted()
            if tmap is USERS:
                row.groups = []
            else:
                if members:
                    await apply_member_ops(conn, idp_id, row.id, [MemberOp("add", tuple(members))])
                row.members = await load_members(conn, row.id)
            if events is not None:
                await write_events(conn, idp_id, outbox_rows(events, idp_id, rtype, None, row, stamp))
            return row

        return await self.write(insert)

    async def get(
        self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True, encode: Encoder | None = None
    ) -> Row | None:
        tmap = TABLES[rtype]

        async def load(conn: Connection) -> Row | None:
            row = await self._read_row(conn, tmap, idp_id, resource_id, members)
            if row is not None and encode is not None:
                row.encoded = encode(row)
            return row

        return await self.read(load)

    async def stream_members(self, idp_id: str, group_id: str, encode: MemberEncoder) -> MemberStream | None:
        """The group and its members. The row and its first MEMBER_CHUNK + 1 members are one
        statement (one snapshot by itself): a group whose members fit in one slice is read in one
        round trip, as a group was before streaming. A bigger one is read again in a read-only
        REPEATABLE READ transaction on a pooled connection of its own (Engine.snapshot),
        MEMBER_CHUNK members per statement, keyset paged along the primary key."""
        found = await self.read(lambda conn: conn.fetchrow(GROUP_AND_FIRST_MEMBERS, group_id, idp_id, MEMBER_CHUNK + 1))
        if found is None:
            return None
        listed = [{"value": m[0], "type": m[1], "display": m[2]} for m in orjson.loads(found[5] or "[]")]
        if len(listed) <= MEMBER_CHUNK:

            async def whole() -> AsyncIterator[bytes]:
                if listed:
                    yield encode(listed)

            return MemberStream(to_row(found), whole(), _nothing_held)
        conn, release = await self.snapshot()
        try:
            row = await self._read_row(conn, GROUPS, idp_id, group_id, False)
            first = [] if row is None else await members_after(conn, group_id, "")
        except UNAVAILABLE as exc:
            await release()
            raise self.unavailable(exc) from None
        except BaseException:
            await release()
            raise
        if row is None or len(first) < MEMBER_CHUNK:
            await release()  # nothing more to read
        if row is None:
            return None
        held = conn if len(first) == MEMBER_CHUNK else None

        async def chunks() -> AsyncIterator[bytes]:
            members = first
            while members:
                yield encode(members)
                if held is None or len(members) < MEMBER_CHUNK:
                    break
                try:
                    members = await members_after(held, group_id, members[-1]["value"])
                except UNAVAILABLE as exc:
                    await release()
                    raise self.unavailable(exc) from None
            await release()

        return MemberStream(row, chunks(), release)

    async def search(
        self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None
    ) -> tuple[int, list[Row]]:
        tmap = TABLES[rtype]
        params: list = [idp_id]
        where = "true" if query.where is None else where_clause(query.where, tmap, idp_id, POSTGRESQL, params)[0]
        order = order_clause(query.sort_by, query.descending, tmap, POSTGRESQL) if query.sort_by else "t.seq"
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = $1 AND {where}"
        count_params = list(params)
        with_groups = query.members and tmap is USERS
        n = len(params)
        if query.sort_by:
            position, window = "", f"{base} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}"
        else:
            # In creation order: the page from the seq the OFFSET reaches, found by a walk that reads
            # only seq (the last 100 of 1,000,000 users: 0.2 s, where an OFFSET of whole rows took
            # 0.8 s); and the rows come with their seq, from which the total is counted.
            position = ", t.seq"
            start = f"(SELECT t.seq {base} ORDER BY t.seq LIMIT 1 OFFSET ${n + 2})"
            window = f"{base} AND t.seq >= {start} ORDER BY t.seq LIMIT ${n + 1}"
        page = f"SELECT {ROW_COLUMNS}{position} {window}"
        if with_groups:
            # The walks on the page's rows only: in one SELECT with OFFSET, PostgreSQL would compute
            # them for the skipped rows too. The page (named t again, so `order` applies) is sorted
            # again outside, a sort of at most one page.
            params.append(self.max_user_groups + 1)
            walk = GROUP_WALK.format(user="t.id", limit=f"${n + 3}")
            page = f"SELECT {ROW_COLUMNS}, {walk}{position} FROM (SELECT t.* {window}) AS t ORDER BY {order}"

        async def run(conn: Connection) -> tuple[int, list[Row]]:
            rows: list[Row] = []
            ended_early = False
            if query.count > 0:
                found = await conn.fetch(page, *params[:n], query.count, query.start_index - 1, *params[n:])
                rows, ended_early = await self._page(conn, found, query, encode, with_groups)
            if not ended_early and len(rows) < query.count and (rows or query.start_index == 1):
                # A short page is the last one: it tells the total, and a lookup by userName (one
                # row or none, Entra's commonest request) needs no count query.
                return query.start_index - 1 + len(rows), rows
            if rows and rows[-1].position is not None:
                # The rows before the page (the OFFSET walked them), the page, and those after it in
                # creation order: a deep page counts only the few after it (as on SQLite).
                after = await conn.fetchval(
                    f"SELECT count(*) {base} AND t.seq > ${len(count_params) + 1}", *count_params, rows[-1].position
                )
                return query.start_index - 1 + len(rows) + after, rows
            return await conn.fetchval(f"SELECT count(*) {base}", *count_params), rows

        try:
            return await self.read(run, timed=not is_point_lookup(query.where, tmap))
        except (asyncpg.DataError, asyncpg.SyntaxOrAccessError) as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def walk(self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None) -> WalkPage:
        """A keyset page in creation order (seq, an identity column a row keeps)."""
        tmap = TABLES[rtype]
        params: list = [idp_id]
        where = "true" if query.where is None else where_clause(query.where, tmap, idp_id, POSTGRESQL, params)[0]
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = $1 AND {where}"
        count_params = list(params)
        backward = query.before is not None
        position: int = query.before if query.before is not None else (query.after or 0)
        n = len(params)
        keyset = f"t.seq {'<' if backward else '>'} ${n + 1}"
        order = "t.seq DESC" if backward else "t.seq"
        with_groups = query.members and tmap is USERS
        page = f"SELECT {ROW_COLUMNS}, t.seq {base} AND {keyset} ORDER BY {order} LIMIT ${n + 2}"
        if with_groups:
            # As in search: the walks on the page's rows only.
            params.append(self.max_user_groups + 1)
            walk = GROUP_WALK.format(user="t.id", limit=f"${n + 3}")
            page = (
                f"SELECT {ROW_COLUMNS}, {walk}, t.seq FROM (SELECT t.* {base} AND {keyset} ORDER BY {order} "
                f"LIMIT ${n + 2}) AS t ORDER BY {order}"
            )

        # Is anything on the other side of the position asked for (found from it, one row's step)?
        behind = f"t.seq >= ${n + 1} ORDER BY t.seq" if backward else f"t.seq <= ${n + 1} ORDER BY t.seq DESC"

        async def run(conn: Connection) -> WalkPage:
            total = await conn.fetchval(f"SELECT count(*) {base}", *count_params)
            if query.count <= 0:
                return WalkPage(total, [], False, False)
            # One row more than the page: whether it is there says whether more follow.
            found = await conn.fetch(page, *params[:n], position, query.count + 1, *params[n:])
            rows, ended_early = await self._page(conn, found, query, encode, with_groups)
            further = ended_early or len(rows) > query.count
            del rows[query.count :]
            back = query.after is not None or backward
            if back:
                back = await conn.fetchval(f"SELECT 1 {base} AND {behind} LIMIT 1", *count_params, position) is not None
            if backward:
                rows.reverse()
                return WalkPage(total, rows, further, back)
            return WalkPage(total, rows, back, further)

        try:
            return await self.read(run, timed=True)
        except (asyncpg.DataError, asyncpg.SyntaxOrAccessError) as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def _page(
        self, conn: Connection, found: list[asyncpg.Record], query: Query, encode: Encoder | None, with_groups: bool
    ) -> tuple[list[Row], bool]:
        """The rows of a page as selected (ROW_COLUMNS[, the group walk][, seq: the position]), with
        their groups or members and encoded; also whether the page ended early (its bytes, or what
        loading members costs)."""
        rows: list[Row] = []
        size, members_loaded = 0, 0
        for record in found:
            row = to_row(record)
            if len(record) > (6 if with_groups else 5):
                row.position = record[-1]
            if with_groups:
                row.groups = self._groups(row.id, record[5])
                members_loaded += len(row.groups)
                if rows and members_loaded > PAGE_LOAD_GROUPS:
                    return rows, True
            elif query.members:
                row.members = await load_members(conn, row.id)
                members_loaded += len(row.members)
                if rows and members_loaded > PAGE_LOAD_MEMBERS:
                    return rows, True
            if encode is not None:
                row.encoded = encode(row)
                if rows and query.max_bytes and size + len(row.encoded) > query.max_bytes:
                    return rows, True
                size += len(row.encoded)
            rows.append(row)
        return rows, False

    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *, members: bool = True) -> Row:
        tmap = TABLES[rtype]
        if tmap is USERS:
            return await self._update_user(idp_id, resource_id, change, members)
        return await self._update_group(idp_id, resource_id, change, members)

    async def _update_group(self, idp_id: str, group_id: str, change: ChangeFn, members: bool) -> Row:
        """A change that only adds or removes listed members goes as one statement (see
        migrations/002_member_delta.sql) on the group read without a lock; any other, or one whose
        group's document changed since the read, runs in a transaction on the locked row."""
        current = await self.read(lambda conn: self._read_row(conn, GROUPS, idp_id, group_id, False))
        if current is None:
            await self.read(lambda conn: check_idp(conn, idp_id))
            raise not_found(f"Group {shown(group_id)} not found")
        result: Change = change(current)
        delta = one_delta(current, result) if result.events is None else None
        if delta is not None and await self._apply_delta(idp_id, current, delta):
            if members:
                current.members = await self.read(lambda conn: load_members(conn, group_id))
            return current
        return await self._update_locked(GROUPS, idp_id, group_id, change, members)

    async def _apply_delta(self, idp_id: str, current: Row, op: MemberOp) -> bool:
        """Apply `op` to the group in one statement and update `current` to match; False when the
        group's document is no longer current's (the caller then runs the change locked)."""
        ids = list(dict.fromkeys(m.value for m in op.members))
        declared = {m.value: m.type for m in op.members if m.type}
        record = await self.write_one(
            lambda conn: conn.fetchrow(
                "SELECT * FROM scimlet_member_delta($1, $2, $3::jsonb, $4, $5::text[], $6::text[], $7)",
                idp_id,
                current.id,
                dumps(current.doc),
                op.op,
                ids,
                [declared.get(i, "") for i in ids],
                now(),
            )
        )
        assert record is not None, "scimlet_member_delta returns one row"
        outcome, version, modified, found_ids, found_kinds = record
        if outcome == "missing":
            await self.read(lambda conn: check_idp(conn, idp_id))
            raise not_found(f"Group {shown(current.id)} not found")
        if outcome == "invalid":
            typed_members(current.id, op.members, dict(zip(found_ids or [], found_kinds or [], strict=True)))
            raise AssertionError("scimlet_member_delta refused members that typed_members accepts")
        if outcome == "stale":
            return False
        current.version, current.modified = version, modified
        return True

    async def _update_locked(
        self, tmap: TableMap, idp_id: str, resource_id: str, change: ChangeFn, members: bool
    ) -> Row:
        """The change in a transaction on the row read FOR UPDATE: every group change but a member
        delta, and a user change that must keep a value unique."""

        async def run(conn: Connection) -> Row:
            current = await load_for_write(conn, tmap, tmap.resource_type, idp_id, resource_id)
            result: Change = change(current)
            changed = members_changed = False
            before = current.doc
            columns: dict[str, object] = {}
            if result.doc is not None and result.doc != current.doc:
                await check_unique(conn, tmap, idp_id, current.id, result.unique)
                columns = changed_columns(tmap, current.doc, result.doc)
                current.doc = result.doc
                changed = True
            if result.member_ops:
                members_changed = await apply_member_ops(conn, idp_id, current.id, result.member_ops)
                changed = members_changed or changed
            if changed:
                if result.events is not None and tmap is USERS:
                    await conn.execute(KEEP_LIVE_DATA, snapshot_json(before, current.created), current.id)
                current.version += 1
                current.modified = now()
                await store_doc(conn, tmap, current, columns)
                if result.events is not None:
                    if tmap is GROUPS and result.events.kind == "put":
                        current.members = await load_members(conn, current.id)  # put:full carries them
                    rows = outbox_rows(
                        result.events,
                        idp_id,
                        tmap.resource_type,
                        before,
                        current,
                        current.modified,
                        members_changed=members_changed,
                    )
                    await write_events(conn, idp_id, rows)
            if members and tmap is GROUPS:
                current.members = await load_members(conn, current.id)
            return current

        row = await self.write(run)
        if members and tmap is USERS:
            read = await self.read(lambda conn: self._read_row(conn, USERS, idp_id, resource_id, True, cap_groups=True))
            row.groups = read.groups if read is not None else []
        return row

    async def _update_user(self, idp_id: str, user_id: str, change: ChangeFn, members: bool) -> Row:
        """Read, change, and store only if the version is still the one read; else again, and at the
        last attempt on the locked row (see the module)."""
        for _ in range(ATTEMPTS - 1):
            current = await self.read(
                lambda conn: self._read_row(conn, USERS, idp_id, user_id, members, cap_groups=True)
            )
            if current is None:
                await self.read(lambda conn: check_idp(conn, idp_id))
                raise not_found(f"User {shown(user_id)} not found")
            result: Change = change(current)
            if result.doc is None or result.doc == current.doc:
                return current
            if result.unique or result.events is not None:
                return await self._update_locked(USERS, idp_id, user_id, change, members)
            read_version = current.version
            current.doc, current.version, current.modified = result.doc, read_version + 1, now()
            # Concurrent updates go to the database together, as one UPDATE (update_users).
            if await self._user_updates.submit((current, read_version)):
                return current
        # Still changing under concurrent writers: wait for the row's lock instead, where the
        # change cannot lose to another.
        return await self._update_locked(USERS, idp_id, user_id, change, members)

    async def delete(
        self,
        rtype: str,
        idp_id: str,
        resource_id: str,
        check: CheckFn | None = None,
        events: EventSource | None = None,
    ) -> None:
        tmap = TABLES[rtype]

        async def run(conn: Connection) -> None:
            current = await load_for_write(conn, tmap, rtype, idp_id, resource_id)
            if check is not None:
                check(current)
            if events is not None:
                if tmap is USERS:
                    await conn.execute(KEEP_LIVE_DATA, snapshot_json(current.doc, current.created), current.id)
                rows = outbox_rows(events, idp_id, rtype, current.doc, current, now(), deleted=True)
                await write_events(conn, idp_id, rows)
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

    async def _read_row(
        self,
        conn: Connection,
        tmap: TableMap,
        idp_id: str,
        row_id: str,
        members: bool,
        *,
        cap_groups: bool = False,
    ) -> Row | None:
        """The row, with its members or (in the same statement) its groups when asked. A user in
        more than scim.max_user_groups groups is 400 tooMany, or with cap_groups has groups None."""
        cap = self.max_user_groups
        if members and tmap is USERS:
            found = await conn.fetchrow(
                f"SELECT {ROW_COLUMNS}, {GROUP_WALK.format(user='t.id', limit='$3')} FROM users AS t "
                "WHERE t.id = $1 AND t.idp_id = $2",
                row_id,
                idp_id,
                cap + 1,
            )
        else:
            found = await conn.fetchrow(
                f"SELECT {ROW_COLUMNS} FROM {tmap.table} AS t WHERE t.id = $1 AND t.idp_id = $2", row_id, idp_id
            )
        if found is None:
            return None
        row = to_row(found)
        if members and tmap is USERS:
            try:
                row.groups = groups_of(row.id, found[5], cap)
            except GroupWalkTooLarge:
                if not cap_groups:
                    raise too_many_groups(row.id, cap) from None
        elif members:
            row.members = await load_members(conn, row.id)
        return row

    def _groups(self, user_id: str, walk: str | None) -> list[dict]:
        try:
            return groups_of(user_id, walk, self.max_user_groups)
        except GroupWalkTooLarge:
            raise too_many_groups(user_id, self.max_user_groups) from None


async def store_doc(
    conn: Connection, tmap: TableMap, row: Row, columns: dict[str, object], *, read_version: int | None = None
) -> bool:
    """Write the row's document, version and modified, and the hot columns that changed; with
    read_version only while the stored version is still that one. False when nothing was written."""
    args: list = [dumps(row.doc), row.version, row.modified, row.id]
    guard = ""
    if read_version is not None:
        args.append(read_version)
        guard = f" AND version = ${len(args)}"
    sets = "".join(f"{name} = ${n}, " for n, name in enumerate(columns, start=len(args) + 1))
    try:
        status = await conn.execute(
            f"UPDATE {tmap.table} SET {sets}doc = $1, version = $2, modified = $3 WHERE id = $4{guard}",
            *args,
            *columns.values(),
        )
    except asyncpg.UniqueViolationError:
        raise uniqueness(tmap, row.doc) from None
    return status_count(status) > 0


async def check_unique(
    conn: Connection, tmap: TableMap, idp_id: str, resource_id: str, unique: tuple[UniqueValue, ...]
) -> None:
    """409 when another resource holds one of the values. The (IdP, table) advisory lock, held to
    the end of the transaction, makes the check and the write one step for every instance."""
    if not unique:
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"scimlet-unique:{idp_id}:{tmap.table}")
    for value in unique:
        sql, params = taken_query(tmap, idp_id, resource_id, value.where, POSTGRESQL)
        if await conn.fetchval(sql, *params) is not None:
            raise ScimError(409, value.detail, "uniqueness")


# New users, many in one statement, in the order they came (their seq is their creation order). The
# IdPs' rows are key-share locked, as a single create's are; a name taken (also by another user of
# the same batch) is skipped by ON CONFLICT DO NOTHING, so one refused create never fails the rest.
INSERT_USERS = (
    "INSERT INTO users (id, idp_id, user_name, external_id, active, doc, version, created, modified) "
    "SELECT v.id, v.idp_id, v.user_name, v.external_id, v.active, v.doc, 1, v.created, v.created "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::jsonb[], $7::text[]) "
    "WITH ORDINALITY AS v(id, idp_id, user_name, external_id, active, doc, created, n) "
    "JOIN idps AS i ON i.id = v.idp_id ORDER BY v.n FOR KEY SHARE OF i "
    "ON CONFLICT DO NOTHING RETURNING id"
)


# INSERT_USERS and the events of the users it inserted, one statement (atomic by itself, and one
# round trip). The WHERE's subquery is an InitPlan, run once before the first events row is made:
# it takes the IdPs' events locks (write_events), in one order, before any seq is drawn.
INSERT_USERS_WITH_EVENTS = (
    f"WITH created AS ({INSERT_USERS}), written AS ("
    f"INSERT INTO events ({OUTBOX_COLUMNS}) SELECT e.* FROM unnest($8::text[], $9::text[], $10::text[], "
    "$11::text[], $12::text[], $13::text[], $14::text[], $15::integer[], $16::text[], $17::text[]) "
    "AS e(idp_id, txn, time, rtype, resource_id, external_id, kind, version, attributes, data) "
    "WHERE (SELECT count(pg_advisory_xact_lock(hashtext('scimlet-events:' || l.idp_id))) "
    "FROM (SELECT DISTINCT unnest($8::text[]) AS idp_id ORDER BY 1) AS l) >= 0 "
    "AND e.resource_id IN (SELECT id FROM created)) "
    "SELECT id FROM created"
)


async def insert_users(
    conn: Connection, batch: list[tuple[str, Row]], events: list[OutboxRow] | None = None
) -> list[Row | BaseException]:
    """Store new users (IdP ID, row) in one statement, with the outbox rows of those it inserts
    when `events` are given; each gets its row, or 409 / 401 why not."""
    docs = [row.doc for _, row in batch]
    users = (
        [row.id for _, row in batch],
        [idp_id for idp_id, _ in batch],
        [doc["userName"] for doc in docs],
        [doc.get("externalId") for doc in docs],
        [doc.get("active") for doc in docs],
        [dumps(doc) for doc in docs],
        [row.created for _, row in batch],
    )
    if events:
        columns = [list(column) for column in zip(*events, strict=True)]
        records = await conn.fetch(INSERT_USERS_WITH_EVENTS, *users, *columns)
    else:
        records = await conn.fetch(INSERT_USERS, *users)
    inserted = {record[0] for record in records}
    outcomes: list[Row | BaseException] = []
    refused = {idp_id for idp_id, row in batch if row.id not in inserted}
    existing = (
        {r[0] for r in await conn.fetch("SELECT id FROM idps WHERE id = ANY($1::text[])", list(refused))}
        if refused
        else set()
    )
    for idp_id, row in batch:
        if row.id in inserted:
            row.groups = []
            outcomes.append(row)
        else:
            outcomes.append(uniqueness(USERS, row.doc) if idp_id in existing else IdpDeleted())
    return outcomes


async def insert_users_with_events(
    conn: Connection, batch: list[tuple[str, Row, EventSource]]
) -> list[Row | BaseException]:
    """insert_users with the users' events, in the same statement."""
    events = [r for idp_id, row, source in batch for r in outbox_rows(source, idp_id, "User", None, row, row.created)]
    return await insert_users(conn, [(idp_id, row) for idp_id, row, _ in batch], events)


# Changed users, many in one statement, each written only while its version is the one its change
# read (compare-and-set). Every hot column is set: PostgreSQL keeps an update HOT (no index
# entries rewritten) when the indexed values stay the same, whatever the SET list names.
UPDATE_USERS = (
    "UPDATE users AS t SET user_name = v.user_name, external_id = v.external_id, active = v.active, "
    "doc = v.doc, version = v.read_version + 1, modified = v.modified "
    "FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::boolean[], $6::jsonb[], $7::text[]) "
    "AS v(id, read_version, user_name, external_id, active, doc, modified) "
    "WHERE t.id = v.id AND t.version = v.read_version RETURNING t.id"
)


async def update_users(conn: Connection, batch: list[tuple[Row, int]]) -> list[bool | BaseException]:
    """Store changed users (row as changed, version read) in one statement: True for each written,
    False for one that changed meanwhile (to be read and changed again). A second change of one user
    in the same batch waits for the next (False); a new name already taken fails the statement, and
    then each is written alone, to refuse only that one."""
    first = {row.id: k for k, (row, _) in reversed(list(enumerate(batch)))}
    alone = [(row, version) for k, (row, version) in enumerate(batch) if first[row.id] == k]
    docs = [row.doc for row, _ in alone]
    try:
        written = {
            record[0]
            for record in await conn.fetch(
                UPDATE_USERS,
                [row.id for row, _ in alone],
                [version for _, version in alone],
                [doc["userName"] for doc in docs],
                [doc.get("externalId") for doc in docs],
                [doc.get("active") for doc in docs],
                [dumps(doc) for doc in docs],
                [row.modified for row, _ in alone],
            )
        }
    except asyncpg.UniqueViolationError:
        outcomes: list[bool | BaseException] = []
        for row, version in batch:
            try:
                outcomes.append(await store_doc(conn, USERS, row, hot_columns(USERS, row.doc), read_version=version))
            except ScimError as exc:
                outcomes.append(exc)
        return outcomes
    return [row.id in written and first[row.id] == k for k, (row, _) in enumerate(batch)]


def one_delta(current: Row, result: Change) -> MemberOp | None:
    """The change's one add or remove of listed members when that is all it does, on no particular
    version (see Change), else None."""
    if result.if_version is not None or (result.doc is not None and result.doc != current.doc):
        return None
    if len(result.member_ops) != 1 or result.member_ops[0].op not in ("add", "remove"):
        return None
    return result.member_ops[0]


# Outbox rows in one statement however many (executemany would run the insert once per row).
INSERT_EVENTS = (
    f"INSERT INTO events ({OUTBOX_COLUMNS}) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
    "$4::text[], $5::text[], $6::text[], $7::text[], $8::integer[], $9::text[], $10::text[])"
)


async def insert_events(conn: Connection, rows: list[OutboxRow]) -> None:
    await conn.execute(INSERT_EVENTS, *(list(column) for column in zip(*rows, strict=True)))


async def write_events(conn: Connection, idp_id: str, rows: list[OutboxRow]) -> None:
    """The outbox rows, in the write's transaction, under a lock on the IdP's events held until it
    commits: a later seq of the IdP is never committed before an earlier one, so a subscription
    that has read up to a seq can never miss one below it that commits later."""
    if not rows:
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"scimlet-events:{idp_id}")
    await insert_events(conn, rows)


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
    # In member id order, as SQLite's (its rows are keyed by (group_id, member_id)): both list alike.
    "FROM group_members AS m WHERE m.group_id = $1 ORDER BY m.member_id"
)


# A group's row and, as JSON [[id, type, display], ...], its first $3 members in member id order.
GROUP_AND_FIRST_MEMBERS = (
    f"SELECT {ROW_COLUMNS}, (SELECT json_agg(json_build_array(m.member_id, m.type, CASE m.type WHEN 'User' "
    "THEN (SELECT user_name FROM users WHERE id = m.member_id) "
    "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END) ORDER BY m.member_id) "
    "FROM (SELECT member_id, type FROM group_members WHERE group_id = t.id ORDER BY member_id LIMIT $3) AS m) "
    "FROM groups AS t WHERE t.id = $1 AND t.idp_id = $2"
)


async def _nothing_held() -> None:
    """The release of a member stream read in one statement: it holds nothing."""


# The slice of a group's members after a member id, in member id order (keyset paging).
MEMBERS_AFTER = f"{MEMBERS.removesuffix(' ORDER BY m.member_id')} AND m.member_id > $2 ORDER BY m.member_id LIMIT $3"


async def members_after(conn: Connection, group_id: str, after: str) -> list[dict]:
    """At most MEMBER_CHUNK of the group's members, those after the member id `after`."""
    found = await conn.fetch(MEMBERS_AFTER, group_id, after, MEMBER_CHUNK)
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in found]


async def load_members(conn: Connection, group_id: str, limit: int | None = None) -> list[dict]:
    sql = MEMBERS if limit is None else f"{MEMBERS} LIMIT {int(limit)}"
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in await conn.fetch(sql, group_id)]


# A user's groups, as JSON [[id, displayName, direct], ...]: the direct ones (by name), then those
# reached through nesting (by name). UNION visits each group once (cycles end); the LIMIT on the
# read of the walk stops it one group past the cap, since PostgreSQL computes a recursive query only
# as far as it is read. USER is the SQL of the user's id: a parameter, or the row's column. Each
# group's name is a subquery of its own, an index probe: as a join, the planner (which cannot tell
# how far the walk reaches) scanned every group of the table to hash them, 3.6 ms with 10,000 groups
# for a user in one.
GROUP_WALK = (
    # In no group (every user during an initial sync): one index probe instead of the walk.
    "(CASE WHEN EXISTS (SELECT 1 FROM group_members WHERE member_id = {user}) THEN"
    " (WITH RECURSIVE reach(gid) AS ("
    " SELECT group_id FROM group_members WHERE member_id = {user}"
    " UNION SELECT gm.group_id FROM group_members AS gm JOIN reach ON gm.member_id = reach.gid)"
    " SELECT json_agg(json_build_array(w.gid, w.display_name, w.direct) ORDER BY w.direct DESC,"
    ' w.display_name COLLATE "C") FROM (SELECT r.gid,'
    " (SELECT g.display_name FROM groups AS g WHERE g.id = r.gid) AS display_name,"
    " EXISTS (SELECT 1 FROM group_members WHERE group_id = r.gid AND member_id = {user}) AS direct"
    " FROM (SELECT gid FROM reach LIMIT {limit}) AS r) AS w WHERE w.display_name IS NOT NULL) END)"
)
USER_GROUPS = GROUP_WALK.format(user="$1", limit="$2")


def groups_of(user_id: str, walk: str | None, cap: int) -> list[dict]:
    """The groups GROUP_WALK found (its JSON text); GroupWalkTooLarge when they are more than `cap`."""
    found = orjson.loads(walk) if walk else []
    if len(found) > cap:
        raise GroupWalkTooLarge(user_id)
    return [{"value": g[0], "display": g[1], "type": "direct" if g[2] else "indirect"} for g in found]


async def load_groups(conn: Connection, user_id: str, cap: int) -> list[dict]:
    """The user's groups, direct and nested; GroupWalkTooLarge when they are more than `cap`."""
    return groups_of(user_id, await conn.fetchval(f"SELECT {USER_GROUPS}", user_id, cap + 1), cap)


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
            # An index probe per id (a join on unnest: = ANY's bitmap scan costs twice as much).
            "SELECT x.id, 'User' FROM unnest($2::text[]) AS x(id) JOIN users AS u ON u.id = x.id "
            "WHERE u.idp_id = $1 UNION ALL SELECT x.id, 'Group' FROM unnest($2::text[]) AS x(id) "
            "JOIN groups AS g ON g.id = x.id WHERE g.idp_id = $1",
            idp_id,
            ids,
        )
    }
    return typed_members(group_id, members, found)
