"""Users, groups and their members on SQLite: the SCIM hot paths (create, get, search, update, delete)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

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
from storage.records import MEMBER_CHUNK
from storage.resource_rules import IdpDeleted, ReadTooLong, changed_columns, hot_columns, typed_members, uniqueness
from storage.sql import GROUPS, TABLES, USERS, TableMap, is_point_lookup, order_clause, taken_query, where_clause
from storage.sqlite.dialect import SQLITE
from storage.sqlite.engine import Engine, GroupWalkTooLarge, TooLongInPlace, in_place, run_on

# A page of users whose groups are each a long walk (all in densely nested groups) would hold a
# reader thread for a walk per user: the page ends early, as at scim.max_page_bytes, once loading
# its rows' groups (or members) has cost about this many VM instructions, a tenth of a second. The
# first row is always loaded whole.
PAGE_LOAD_STEPS = 2_000_000
PAGE_LOAD_GRAIN = 10_000


def _dumps(doc: dict) -> str:
    # SQLite's JSON functions read TEXT; a BLOB would be taken for JSONB by newer SQLite.
    return orjson.dumps(doc).decode()


class Resources(Engine):
    """ResourceStore's reads and writes of users and groups (authenticate is in auth.py), and counts."""

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
        row = Row(new_resource_id(), doc, 1, now(), "")
        row.modified = row.created

        def insert(conn: sqlite3.Connection) -> Row:
            # Checked in the write transaction: a create that was authenticated before its IdP was
            # deleted must not leave a row of it behind.
            _check_idp(conn, idp_id)
            _check_unique(conn, tmap, idp_id, row.id, unique)
            try:
                _insert(conn, tmap, idp_id, row)
            except sqlite3.IntegrityError:
                raise uniqueness(tmap, doc) from None
            if tmap is GROUPS:
                if members:
                    _apply_member_ops(conn, idp_id, row.id, [MemberOp("add", tuple(members))])
                row.members = _load_members(conn, row.id)
            else:
                row.groups = []
            if events is not None:
                _write_events(conn, outbox_rows(events, idp_id, rtype, None, row, row.created))
            return row

        return await self.write(insert)

    async def get(
        self, rtype: str, idp_id: str, resource_id: str, *, members: bool = True, encode: Encoder | None = None
    ) -> Row | None:
        """The row, and `encoded` = encode(row) when asked, made where it was read: a group's full
        member list (100,000 members are 20 MB of JSON) is encoded on the reader thread that read it."""
        tmap = TABLES[rtype]

        def load(conn: sqlite3.Connection, walk_cap: int) -> Row | None:
            row = _load(conn, tmap, idp_id, resource_id, members, walk_cap)
            if row is not None and encode is not None:
                row.encoded = encode(row)
            return row

        if tmap is USERS or not members:  # one row by its id: a point read, unless its groups reach far
            return await self.read_in_place(load)
        return await self.read_far(load)

    async def stream_members(self, idp_id: str, group_id: str, encode: MemberEncoder) -> MemberStream | None:
        """The group and its members on a connection of its own (Engine.streamer), in one read
        transaction, its snapshot: MEMBER_CHUNK members per hop to the connection's thread, each
        slice encoded there. A group whose members fit in one slice takes one hop, its connection
        given back at once."""
        conn = await self.streamer()
        try:
            opened = await run_on(conn, _open_members, idp_id, group_id, encode)
        except BaseException:
            await self.release_streamer(conn)
            raise
        if opened is None:
            await self.release_streamer(conn, reading=False)
            return None
        row, first, after = opened
        held: Any = conn
        reading = after is not None  # whether its read transaction is still open

        async def release() -> None:
            nonlocal held
            if held is not None:
                taken, held = held, None
                await self.release_streamer(taken, reading=reading)

        if not reading:
            await release()

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal reading
            if first is not None:
                yield first
            following = after
            while following is not None and held is not None:
                chunk, following = await run_on(held, _next_members, group_id, following, encode)
                reading = following is not None
                if chunk is not None:
                    yield chunk
            await release()

        return MemberStream(row, chunks(), release)

    async def search(
        self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None
    ) -> tuple[int, list[Row]]:
        """The total and one page of rows. With `encode`, each row gets `encoded` = encode(row),
        made where the rows are read (a reader thread, but for point lookups), and the page ends
        before the row that would take it past query.max_bytes of encoded rows (0: no limit). It
        also ends before a row whose groups or members would take it past PAGE_LOAD_STEPS. It
        always holds at least one row, so a client paging by startIndex + itemsPerPage goes on
        where it ended."""
        tmap = TABLES[rtype]
        where, params = ("1", []) if query.where is None else where_clause(query.where, tmap, idp_id, SQLITE)
        order = order_clause(query.sort_by, query.descending, tmap, SQLITE) if query.sort_by else "t.rowid"
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = ? AND {where}"

        # In creation order the rows come with their position (rowid), from which the total is counted.
        columns = "t.id, t.doc, t.version, t.created, t.modified" + ("" if query.sort_by else ", t.rowid")

        def run(conn: sqlite3.Connection, walk_cap: int) -> tuple[int, list[Row]]:
            rows: list[Row] = []
            ended_early = False
            if query.count > 0:
                sql = f"SELECT {columns} {base} ORDER BY {order} LIMIT ? OFFSET ?"
                args = (idp_id, *params, query.count, query.start_index - 1)
                rows, ended_early = self._page(conn, sql, args, tmap, query, encode, walk_cap)
            if not ended_early and len(rows) < query.count and (rows or query.start_index == 1):
                # A short page is the last one: it tells the total, and a lookup by userName (one
                # row or none, Entra's commonest request) needs no count query.
                total = query.start_index - 1 + len(rows)
            elif rows and rows[-1].position is not None:
                # The rows before the page (the OFFSET walked them), the page, and those after it in
                # creation order: a deep page counts only the few after it, where a count of all
                # doubled the last page's time at 1,000,000 users (make bench-scale).
                after = conn.execute(f"SELECT count(*) {base} AND t.rowid > ?", (idp_id, *params, rows[-1].position))
                total = query.start_index - 1 + len(rows) + after.fetchone()[0]
            else:
                total = conn.execute(f"SELECT count(*) {base}", (idp_id, *params)).fetchone()[0]
            return total, rows

        try:
            if is_point_lookup(query.where, tmap) and (tmap is USERS or not query.members):
                return await self.read_in_place(run)
            return await self.read_far(run)
        except sqlite3.OperationalError as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def walk(self, rtype: str, idp_id: str, query: Query, encode: Encoder | None = None) -> WalkPage:
        """A keyset page in creation order (rowid: a row keeps its rowid for as long as it exists)."""
        tmap = TABLES[rtype]
        where, params = ("1", []) if query.where is None else where_clause(query.where, tmap, idp_id, SQLITE)
        base = f"FROM {tmap.table} AS t WHERE t.idp_id = ? AND {where}"
        backward = query.before is not None
        keyset, order = ("t.rowid < ?", "t.rowid DESC") if backward else ("t.rowid > ?", "t.rowid")
        position: int = query.before if query.before is not None else (query.after or 0)

        # Is anything on the other side of the position asked for (found from it, one row's step)?
        behind = "t.rowid >= ? ORDER BY t.rowid" if backward else "t.rowid <= ? ORDER BY t.rowid DESC"

        def run(conn: sqlite3.Connection, walk_cap: int) -> WalkPage:
            total = conn.execute(f"SELECT count(*) {base}", (idp_id, *params)).fetchone()[0]
            if query.count <= 0:
                return WalkPage(total, [], False, False)
            # One row more than the page: whether it is there says whether more follow.
            columns = "t.id, t.doc, t.version, t.created, t.modified, t.rowid"
            sql = f"SELECT {columns} {base} AND {keyset} ORDER BY {order} LIMIT ?"
            args = (idp_id, *params, position, query.count + 1)
            rows, ended_early = self._page(conn, sql, args, tmap, query, encode, walk_cap)
            further = ended_early or len(rows) > query.count
            del rows[query.count :]
            back = query.after is not None or backward
            back = (
                back and conn.execute(f"SELECT 1 {base} AND {behind} LIMIT 1", (idp_id, *params, position)).fetchone()
            )
            if backward:
                rows.reverse()
                return WalkPage(total, rows, further, bool(back))
            return WalkPage(total, rows, bool(back), further)

        try:
            return await self.read_far(run)
        except sqlite3.OperationalError as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    def _page(
        self,
        conn: sqlite3.Connection,
        sql: str,
        args: tuple,
        tmap: TableMap,
        query: Query,
        encode: Encoder | None,
        walk_cap: int,
    ) -> tuple[list[Row], bool]:
        """The rows `sql` selects (id, doc, version, created, modified[, position]), read row by row:
        the rows past a full page's bytes are never parsed, walked or encoded. Also whether the page
        ended early (its bytes, or the members' loading budget off the event loop)."""
        rows: list[Row] = []
        size = 0
        # In place, in_place bounds the whole read already.
        budget = None if conn is self.local_conn else _LoadBudget()
        with contextlib.closing(conn.execute(sql, args)) as cursor:
            for found in cursor:
                row = Row(found[0], orjson.loads(found[1]), found[2], found[3], found[4])
                if len(found) > 5:
                    row.position = found[5]
                if query.members:
                    if rows and budget is not None:
                        if not budget.run(conn, _attach_members, conn, tmap, row, walk_cap):
                            return rows, True
                    else:
                        _attach_members(conn, tmap, row, walk_cap)
                if encode is not None:
                    row.encoded = encode(row)
                    if rows and query.max_bytes and size + len(row.encoded) > query.max_bytes:
                        return rows, True
                    size += len(row.encoded)
                rows.append(row)
        return rows, False

    async def update(self, rtype: str, idp_id: str, resource_id: str, change: ChangeFn, *, members: bool = True) -> Row:
        """Apply `change` to the current row in one write; the row as written, with its members or
        groups when asked (a user's groups are None when more than scim.max_user_groups)."""
        tmap = TABLES[rtype]

        def run(conn: sqlite3.Connection) -> Row:
            current = _load_for_write(conn, tmap, rtype, idp_id, resource_id)
            result: Change = change(current)
            changed = members_changed = False
            before = current.doc
            columns: dict[str, object] = {}
            if result.doc is not None and result.doc != current.doc:
                _check_unique(conn, tmap, idp_id, current.id, result.unique)
                columns = changed_columns(tmap, current.doc, result.doc)
                current.doc = result.doc
                changed = True
            if result.member_ops:
                members_changed = _apply_member_ops(conn, idp_id, current.id, result.member_ops)
                changed = members_changed or changed
            if changed:
                if result.events is not None and tmap is USERS:
                    _keep_live_data(conn, current.id, before, current.created)
                current.version += 1
                current.modified = now()
                try:
                    _store_doc(conn, tmap, current, columns)
                except sqlite3.IntegrityError:
                    raise uniqueness(tmap, current.doc) from None
                if result.events is not None:
                    if tmap is GROUPS and result.events.kind == "put":
                        current.members = _load_members(conn, current.id)  # put:full carries them
                    rows = outbox_rows(
                        result.events, idp_id, rtype, before, current, current.modified, members_changed=members_changed
                    )
                    _write_events(conn, rows)
            if members and tmap is USERS:
                try:
                    with in_place(conn):
                        current.groups = load_groups(conn, current.id, self.max_user_groups)
                except (TooLongInPlace, GroupWalkTooLarge):
                    current.groups = None  # read after the commit, on a reader thread: never far in the writer
            elif members:
                current.members = _load_members(conn, current.id)
            return current

        row = await self.write(run)
        if members and tmap is USERS and row.groups is None:
            # The write is done whatever this finds: a user in more than max_user_groups groups, or
            # whose groups take longer than database.read_timeout_ms to walk, is returned with groups
            # None, for the caller to answer without listing them.
            with contextlib.suppress(GroupWalkTooLarge, ReadTooLong):
                row.groups = await self.read(lambda conn: load_groups(conn, row.id, self.max_user_groups))
        return row

    async def delete(
        self,
        rtype: str,
        idp_id: str,
        resource_id: str,
        check: CheckFn | None = None,
        events: EventSource | None = None,
    ) -> None:
        tmap = TABLES[rtype]

        def run(conn: sqlite3.Connection) -> None:
            current = _load_for_write(conn, tmap, rtype, idp_id, resource_id)
            if check is not None:
                check(current)
            stamp = now()
            if events is not None:
                if tmap is USERS:
                    _keep_live_data(conn, current.id, current.doc, current.created)
                _write_events(conn, outbox_rows(events, idp_id, rtype, current.doc, current, stamp, deleted=True))
            # Groups that lose a member (this resource) change: bump their version.
            conn.execute(
                "UPDATE groups SET version = version + 1, modified = ? WHERE id IN "
                "(SELECT group_id FROM group_members WHERE member_id = ?)",
                (stamp, resource_id),
            )
            conn.execute("DELETE FROM group_members WHERE member_id = ?", (resource_id,))
            if tmap is GROUPS:
                conn.execute("DELETE FROM group_members WHERE group_id = ?", (resource_id,))
            conn.execute(f"DELETE FROM {tmap.table} WHERE id = ?", (resource_id,))

        await self.write(run)

    async def counts(self, idp_id: str) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            users = conn.execute("SELECT count(*) FROM users WHERE idp_id = ?", (idp_id,)).fetchone()[0]
            groups = conn.execute("SELECT count(*) FROM groups WHERE idp_id = ?", (idp_id,)).fetchone()[0]
            return {"users": users, "groups": groups}

        return await self.read(run)


INSERT_EVENTS = f"INSERT INTO events ({OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _write_events(conn: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    """The outbox rows, in the write's transaction (the single writer keeps seq in commit order)."""
    conn.executemany(INSERT_EVENTS, rows)


def _keep_live_data(conn: sqlite3.Connection, user_id: str, doc: dict, created: str) -> None:
    """Before a user changes: its create or put event that reads the user's row (storage/outbox.py)
    gets the row as it is now, the state it reported."""
    conn.execute(KEEP_LIVE_DATA.replace("$1", "?").replace("$2", "?"), (snapshot_json(doc, created), user_id))


def _check_idp(conn: sqlite3.Connection, idp_id: str) -> None:
    if conn.execute("SELECT 1 FROM idps WHERE id = ?", (idp_id,)).fetchone() is None:
        raise IdpDeleted()


def _check_unique(
    conn: sqlite3.Connection, tmap: TableMap, idp_id: str, resource_id: str, unique: tuple[UniqueValue, ...]
) -> None:
    """409 when another resource holds one of the values (the writer is the only one: no race)."""
    for value in unique:
        sql, params = taken_query(tmap, idp_id, resource_id, value.where, SQLITE)
        if conn.execute(sql, params).fetchone() is not None:
            raise ScimError(409, value.detail, "uniqueness")


def _insert(conn: sqlite3.Connection, tmap: TableMap, idp_id: str, row: Row) -> None:
    columns = hot_columns(tmap, row.doc)
    conn.execute(
        f"INSERT INTO {tmap.table} (id, idp_id, {', '.join(columns)}, doc, version, created, modified)"
        f" VALUES (?, ?{', ?' * len(columns)}, ?, ?, ?, ?)",
        (row.id, idp_id, *columns.values(), _dumps(row.doc), row.version, row.created, row.modified),
    )


def _store_doc(conn: sqlite3.Connection, tmap: TableMap, row: Row, columns: dict[str, object]) -> None:
    # Setting an indexed column, even to its own value, rewrites its index entries: only the hot
    # columns that changed are set. Entra's disable (active only) costs half as much this way.
    sets = "".join(f"{name} = ?, " for name in columns)
    conn.execute(
        f"UPDATE {tmap.table} SET {sets}doc = ?, version = ?, modified = ? WHERE id = ?",
        (*columns.values(), _dumps(row.doc), row.version, row.modified, row.id),
    )


def _load_for_write(conn: sqlite3.Connection, tmap: TableMap, rtype: str, idp_id: str, resource_id: str) -> Row:
    """The row an update or delete works on, in the write transaction; 404, or 401 when the IdP
    itself was deleted since the request was authenticated."""
    current = _load(conn, tmap, idp_id, resource_id, members=False)
    if current is None:
        _check_idp(conn, idp_id)
        raise not_found(f"{rtype} {shown(resource_id)} not found")
    return current


def _load(
    conn: sqlite3.Connection, tmap: TableMap, idp_id: str, resource_id: str, members: bool, walk_cap: int = 0
) -> Row | None:
    found = conn.execute(
        f"SELECT id, doc, version, created, modified FROM {tmap.table} WHERE id = ? AND idp_id = ?",
        (resource_id, idp_id),
    ).fetchone()
    if found is None:
        return None
    row = Row(found[0], orjson.loads(found[1]), found[2], found[3], found[4])
    if members:
        _attach_members(conn, tmap, row, walk_cap)
    return row


def _attach_members(conn: sqlite3.Connection, tmap: TableMap, row: Row, walk_cap: int) -> None:
    if tmap is GROUPS:
        row.members = _load_members(conn, row.id)
    else:
        row.groups = load_groups(conn, row.id, walk_cap)


# A group's members with their names, in member id order (the primary key's: no sort).
MEMBERS = (
    "SELECT m.member_id, m.type, CASE m.type WHEN 'User' THEN "
    "(SELECT user_name FROM users WHERE id = m.member_id) "
    "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END "
    "FROM group_members AS m WHERE m.group_id = ?"
)
# The slice of them after a member id (keyset paging along the primary key).
MEMBERS_AFTER = f"{MEMBERS} AND m.member_id > ? ORDER BY m.member_id LIMIT ?"


def _load_members(conn: sqlite3.Connection, group_id: str) -> list[dict]:
    rows = conn.execute(f"{MEMBERS} ORDER BY m.member_id", (group_id,)).fetchall()
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in rows]


def _members_after(conn: sqlite3.Connection, group_id: str, after: str) -> list[dict]:
    rows = conn.execute(MEMBERS_AFTER, (group_id, after, MEMBER_CHUNK)).fetchall()
    return [{"value": r[0], "type": r[1], "display": r[2]} for r in rows]


def _open_members(
    conn: sqlite3.Connection, idp_id: str, group_id: str, encode: MemberEncoder
) -> tuple[Row, bytes | None, str | None] | None:
    """Begin the stream's snapshot: the group's row, its first slice of members encoded (None: it
    has none) and the member id the next slice starts after (None: that was all, and the snapshot
    is ended here). None, the snapshot ended, when there is no such group."""
    conn.execute("BEGIN")
    row = _load(conn, GROUPS, idp_id, group_id, members=False)
    if row is None:
        conn.execute("ROLLBACK")
        return None
    members = _members_after(conn, group_id, "")
    if len(members) < MEMBER_CHUNK:
        conn.execute("COMMIT")
        return row, encode(members) if members else None, None
    return row, encode(members), members[-1]["value"]


def _next_members(
    conn: sqlite3.Connection, group_id: str, after: str, encode: MemberEncoder
) -> tuple[bytes | None, str | None]:
    """The next slice of the stream's members encoded (None: there were none left), and the
    member id the one after starts after (None: this was the last; the snapshot is ended here)."""
    members = _members_after(conn, group_id, after)
    if len(members) < MEMBER_CHUNK:
        conn.execute("COMMIT")
        return encode(members) if members else None, None
    return encode(members), members[-1]["value"]


class _LoadBudget:
    """What is left of a page's PAGE_LOAD_STEPS."""

    def __init__(self) -> None:
        self.left = PAGE_LOAD_STEPS

    def run(self, conn: sqlite3.Connection, fn: Callable[..., None], *args: Any) -> bool:
        """fn(*args), its statements counted against the budget: False, fn stopped, when it ran out."""

        def tick() -> bool:
            self.left -= PAGE_LOAD_GRAIN
            return self.left <= 0

        conn.set_progress_handler(tick, PAGE_LOAD_GRAIN)
        try:
            fn(*args)
        except sqlite3.OperationalError:
            if self.left <= 0:
                return False
            raise
        finally:
            conn.set_progress_handler(None, 0)
        return True


# A user's groups: the direct ones (by name), then those reached through nesting (by name). The
# walk is over group ids only, and UNION keeps each once: every group is visited once and each
# membership row read once, whatever the nesting (cycles included), so the walk is linear in the
# part of the graph above the user. LIMIT stops it one group past the cap.
GROUP_WALK = (
    "WITH RECURSIVE reach(gid) AS ("
    " SELECT group_id FROM group_members WHERE member_id = :user"
    " UNION SELECT gm.group_id FROM group_members AS gm JOIN reach ON gm.member_id = reach.gid"
    " LIMIT :limit)"
    " SELECT reach.gid, g.display_name,"
    " EXISTS (SELECT 1 FROM group_members WHERE group_id = reach.gid AND member_id = :user) AS direct"
    " FROM reach JOIN groups AS g ON g.id = reach.gid ORDER BY direct DESC, g.display_name"
)


def load_groups(conn: sqlite3.Connection, user_id: str, cap: int) -> list[dict]:
    """The user's groups, direct and nested; GroupWalkTooLarge when they are more than `cap`."""
    if conn.execute("SELECT 1 FROM group_members WHERE member_id = ? LIMIT 1", (user_id,)).fetchone() is None:
        # In no group (every user during an initial sync): one index probe instead of the walk below.
        return []
    rows = conn.execute(GROUP_WALK, {"user": user_id, "limit": cap + 1}).fetchall()
    if len(rows) > cap:
        raise GroupWalkTooLarge(user_id)
    return [{"value": r[0], "display": r[1], "type": "direct" if r[2] else "indirect"} for r in rows]


def _apply_member_ops(conn: sqlite3.Connection, idp_id: str, group_id: str, ops: list[MemberOp]) -> bool:
    """Apply membership deltas in order; True when any row changed. Unknown ids abort the change."""
    before = conn.total_changes
    for op in ops:
        if op.op == "clear":
            conn.execute("DELETE FROM group_members WHERE group_id = ?", (group_id,))
            continue
        if op.op == "remove":
            conn.executemany(
                "DELETE FROM group_members WHERE group_id = ? AND member_id = ?",
                [(group_id, m.value) for m in op.members],
            )
            continue
        typed = _member_types(conn, idp_id, group_id, op.members)
        if op.op == "replace":
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS keep_members (id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM temp.keep_members")
            conn.executemany("INSERT OR IGNORE INTO temp.keep_members VALUES (?)", [(m,) for m, _ in typed])
            conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND member_id NOT IN (SELECT id FROM temp.keep_members)",
                (group_id,),
            )
        conn.executemany(
            "INSERT OR IGNORE INTO group_members (idp_id, group_id, member_id, type) VALUES (?, ?, ?, ?)",
            [(idp_id, group_id, member_id, kind) for member_id, kind in typed],
        )
    return conn.total_changes != before


def _member_types(
    conn: sqlite3.Connection, idp_id: str, group_id: str, members: tuple[Member, ...]
) -> list[tuple[str, str]]:
    """Resolve each member to (id, "User"|"Group") within the IdP, or fail naming the unknown ids."""
    ids = list(dict.fromkeys(m.value for m in members))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for member_id, kind in conn.execute(
            f"SELECT id, 'User' FROM users WHERE idp_id = ? AND id IN ({marks}) "
            f"UNION ALL SELECT id, 'Group' FROM groups WHERE idp_id = ? AND id IN ({marks})",
            (idp_id, *chunk, idp_id, *chunk),
        ):
            found[member_id] = kind
    return typed_members(group_id, members, found)
