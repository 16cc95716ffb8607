"""The admin console's directory pages on SQLite: users and groups in name order, keyset-paged, and a
group's members."""

from __future__ import annotations

import sqlite3

import orjson

from scim.errors import ScimError
from scim.filters import Node
from storage import (
    DirectoryPage,
    Row,
)
from storage.sql import GROUPS, TABLES, USERS, TableMap, where_clause
from storage.sqlite.dialect import SQLITE
from storage.sqlite.engine import Engine
from storage.sqlite.provisioning_log import like_pattern
from storage.sqlite.resources import load_groups


class Directory(Engine):
    """ConsoleStore's directory_page and group_members."""

    async def directory_page(
        self,
        rtype: str,
        idp_id: str,
        where: Node | None,
        *,
        text: str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> DirectoryPage:
        """A page in name order after (or before) a name: a walk along the UNIQUE (idp_id, name) index.

        Keyset paging costs the same on the last page of 100,000 users as on the first, where OFFSET
        would step over every earlier row. Names are unique regardless of case and the column
        collates NOCASE, so the name alone is a total order and a complete cursor.

        `text` is the console's plain search: the name contains it (users: userName, given or family
        name), or it is the externalId or id.
        """
        tmap = TABLES[rtype]
        name = "t.user_name" if tmap is USERS else "t.display_name"
        clause, params = ("1", []) if where is None else where_clause(where, tmap, idp_id, SQLITE)
        if text:
            text_clause, text_params = _text_search(tmap, text)
            clause, params = f"{clause} AND {text_clause}", [*params, *text_params]
        base = (
            f"SELECT t.id, t.doc, t.version, t.created, t.modified FROM {tmap.table} AS t "
            f"WHERE t.idp_id = ? AND {clause}"
        )

        def forward(conn: sqlite3.Connection, start: str | None) -> list[tuple]:
            keyset, extra = (f" AND {name} > ?", [start]) if start is not None else ("", [])
            return conn.execute(
                f"{base}{keyset} ORDER BY {name} LIMIT ?", (idp_id, *params, *extra, limit + 1)
            ).fetchall()

        def run(conn: sqlite3.Connection, walk_cap: int) -> DirectoryPage:
            total = conn.execute(
                f"SELECT count(*) FROM {tmap.table} AS t WHERE t.idp_id = ? AND {clause}", (idp_id, *params)
            ).fetchone()[0]
            found: list[tuple] | None = None
            if before is not None:
                backwards = conn.execute(
                    f"{base} AND {name} < ? ORDER BY {name} DESC LIMIT ?", (idp_id, *params, before, limit + 1)
                ).fetchall()
                if len(backwards) > limit:
                    found, has_previous, has_next = backwards[:limit][::-1], True, True
            if found is None:
                # Fewer than a page before the cursor: that is the first page, shown full.
                start = None if before is not None else after
                found = forward(conn, start)
                has_previous, has_next = start is not None, len(found) > limit
                found = found[:limit]
            rows = [Row(r[0], orjson.loads(r[1]), r[2], r[3], r[4]) for r in found]
            counts: dict[str, int] = {}
            if tmap is USERS:
                for row in rows:
                    row.groups = load_groups(conn, row.id, walk_cap)
            elif rows:
                marks = ",".join("?" * len(rows))
                counts = {row.id: 0 for row in rows}
                counts.update(
                    conn.execute(
                        f"SELECT group_id, count(*) FROM group_members WHERE group_id IN ({marks}) GROUP BY group_id",
                        [row.id for row in rows],
                    ).fetchall()
                )
            return DirectoryPage(total, rows, has_previous, has_next, counts)

        try:
            return await self.read_far(run)
        except sqlite3.OperationalError as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def group_members(self, idp_id: str, group_id: str, limit: int) -> tuple[int, list[dict]]:
        """How many direct members a group has, and the first `limit` of them (without loading the rest)."""

        def run(conn: sqlite3.Connection) -> tuple[int, list[dict]]:
            total = conn.execute(
                "SELECT count(*) FROM group_members WHERE group_id = ? AND idp_id = ?", (group_id, idp_id)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT m.member_id, m.type, CASE m.type WHEN 'User' THEN "
                "(SELECT user_name FROM users WHERE id = m.member_id) "
                "ELSE (SELECT display_name FROM groups WHERE id = m.member_id) END "
                "FROM group_members AS m WHERE m.group_id = ? AND m.idp_id = ? LIMIT ?",
                (group_id, idp_id, limit),
            ).fetchall()
            return total, [{"value": r[0], "type": r[1], "display": r[2]} for r in rows]

        return await self.read(run)


def _text_search(tmap: TableMap, text: str) -> tuple[str, list]:
    pattern = like_pattern(text)
    if tmap is GROUPS:
        return "(t.display_name LIKE ? ESCAPE '\\' OR t.external_id = ? OR t.id = ?)", [pattern, text, text]
    names = (
        "json_extract(t.doc, '$.name.givenName') LIKE ? ESCAPE '\\' OR "
        "json_extract(t.doc, '$.name.familyName') LIKE ? ESCAPE '\\'"
    )
    if '"' in text or "\\" in text:  # escaped inside the JSON text, so the text pre-check below would miss them
        return f"(t.user_name LIKE ? ESCAPE '\\' OR {names} OR t.external_id = ? OR t.id = ?)", [pattern] * 3 + [
            text,
            text,
        ]
    # The document is searched as text first, so only the few rows that contain the words at all pay
    # for parsing their JSON: a search through 100,000 users stays a single quick scan.
    return (
        f"(t.user_name LIKE ? ESCAPE '\\' OR (t.doc LIKE ? ESCAPE '\\' AND ({names})) "
        "OR t.external_id = ? OR t.id = ?)",
        [pattern] * 4 + [text, text],
    )
