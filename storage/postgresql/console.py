"""The admin console's data on PostgreSQL: settings, sessions, and the directory's pages."""

from __future__ import annotations

import asyncpg
import orjson

from scim.errors import ScimError
from scim.filters import Node
from storage import AdminSession, DirectoryPage, Row
from storage.common import now
from storage.postgresql.dialect import POSTGRESQL
from storage.postgresql.engine import Connection, Engine
from storage.postgresql.provisioning_log import like_pattern
from storage.postgresql.resources import (
    ROW_COLUMNS,
    GroupWalkTooLarge,
    load_groups,
    load_members,
)
from storage.resource_rules import too_many_groups
from storage.sql import TABLES, USERS, TableMap, where_clause


class ConsoleData(Engine):
    """ConsoleStore on PostgreSQL."""

    async def get_setting(self, key: str) -> str | None:
        return await self.read(lambda conn: conn.fetchval("SELECT value FROM settings WHERE key = $1", key))

    async def set_setting(self, key: str, value: str) -> None:
        stamp = now()
        await self.write(
            lambda conn: conn.execute(
                "INSERT INTO settings (key, value, updated) VALUES ($1, $2, $3) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                key,
                value,
                stamp,
            )
        )

    async def setting_or_create(self, key: str, value: str) -> str:
        """The stored value; racing callers (in any instance) all get the one stored first."""
        stamp = now()

        async def run(conn: Connection) -> str:
            await conn.execute(
                "INSERT INTO settings (key, value, updated) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                key,
                value,
                stamp,
            )
            return await conn.fetchval("SELECT value FROM settings WHERE key = $1", key)

        return await self.write(run)

    async def create_admin_session(self, session: AdminSession, client: str | None) -> None:
        stamp = now()

        async def run(conn: Connection) -> None:
            # Expired sessions are swept at each sign-in, which keeps the table small without a timer.
            await conn.execute("DELETE FROM admin_sessions WHERE expires <= $1", stamp)
            await conn.execute(
                "INSERT INTO admin_sessions (id_hash, csrf_token, created, expires, client) "
                "VALUES ($1, $2, $3, $4, $5)",
                session.id_hash,
                session.csrf_token,
                session.created,
                session.expires,
                None if client is None else client.replace("\x00", ""),
            )

        await self.write(run)

    async def get_admin_session(self, id_hash: str) -> AdminSession | None:
        row = await self.read(
            lambda conn: conn.fetchrow(
                "SELECT id_hash, csrf_token, created, expires FROM admin_sessions WHERE id_hash = $1 AND expires > $2",
                id_hash,
                now(),
            )
        )
        return AdminSession(*row) if row else None

    async def delete_admin_sessions(self, id_hash: str | None = None) -> None:
        if id_hash is None:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions"))
        else:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions WHERE id_hash = $1", id_hash))

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
        """A page in name order after (or before) a name: a walk along the UNIQUE (idp_id,
        scim_fold(name)) index. Names are unique regardless of ASCII case, so the folded name alone
        is a total order and a complete cursor."""
        tmap = TABLES[rtype]
        name = "scim_fold(t.user_name)" if tmap is USERS else "scim_fold(t.display_name)"
        params: list = [idp_id]
        clause = "true" if where is None else where_clause(where, tmap, idp_id, POSTGRESQL, params)[0]
        if text:
            clause = f"{clause} AND {_text_search(tmap, text, params)}"
        base = f"SELECT {ROW_COLUMNS} FROM {tmap.table} AS t WHERE t.idp_id = $1 AND {clause}"
        n = len(params)

        async def run(conn: Connection) -> DirectoryPage:
            total = await conn.fetchval(
                f"SELECT count(*) FROM {tmap.table} AS t WHERE t.idp_id = $1 AND {clause}", *params
            )
            found: list[asyncpg.Record] | None = None
            if before is not None:
                backwards = await conn.fetch(
                    f"{base} AND {name} < scim_fold(${n + 1}) ORDER BY {name} DESC LIMIT ${n + 2}",
                    *params,
                    before,
                    limit + 1,
                )
                if len(backwards) > limit:
                    found, has_previous, has_next = backwards[:limit][::-1], True, True
            if found is None:
                # Fewer than a page before the cursor: that is the first page, shown full.
                start = None if before is not None else after
                if start is None:
                    found = await conn.fetch(f"{base} ORDER BY {name} LIMIT ${n + 1}", *params, limit + 1)
                else:
                    found = await conn.fetch(
                        f"{base} AND {name} > scim_fold(${n + 1}) ORDER BY {name} LIMIT ${n + 2}",
                        *params,
                        start,
                        limit + 1,
                    )
                has_previous, has_next = start is not None, len(found) > limit
                found = found[:limit]
            rows = [Row(r[0], orjson.loads(r[1]), r[2], r[3], r[4]) for r in found]
            counts: dict[str, int] = {}
            if tmap is USERS:
                for row in rows:
                    try:
                        row.groups = await load_groups(conn, row.id, self.max_user_groups)
                    except GroupWalkTooLarge:
                        raise too_many_groups(row.id, self.max_user_groups) from None
            elif rows:
                counts = {row.id: 0 for row in rows}
                counted = await conn.fetch(
                    "SELECT group_id, count(*) FROM group_members WHERE group_id = ANY($1::text[]) GROUP BY group_id",
                    [row.id for row in rows],
                )
                counts.update({group_id: n for group_id, n in counted})
            return DirectoryPage(total, rows, has_previous, has_next, counts)

        try:
            return await self.read(run, timed=True)
        except (asyncpg.DataError, asyncpg.SyntaxOrAccessError) as exc:
            raise ScimError(400, f"The filter could not be evaluated: {exc}", "invalidFilter") from None

    async def group_members(self, idp_id: str, group_id: str, limit: int) -> tuple[int, list[dict]]:
        async def run(conn: Connection) -> tuple[int, list[dict]]:
            total = await conn.fetchval(
                "SELECT count(*) FROM group_members WHERE group_id = $1 AND idp_id = $2", group_id, idp_id
            )
            if not total:
                return 0, []
            return total, await load_members(conn, group_id, limit)

        return await self.read(run)


def _text_search(tmap: TableMap, text: str, params: list) -> str:
    """The console's plain search: the name contains `text` (users: or the given or family name),
    or it is the externalId or the id."""
    params.extend([like_pattern(text), text.replace("\x00", "")])
    pattern, exact = f"${len(params) - 1}", f"${len(params)}"
    if tmap is USERS:
        names = (
            f"scim_fold(t.user_name) LIKE {pattern} ESCAPE '\\' "
            f"OR scim_fold(t.doc -> 'name' ->> 'givenName') LIKE {pattern} ESCAPE '\\' "
            f"OR scim_fold(t.doc -> 'name' ->> 'familyName') LIKE {pattern} ESCAPE '\\'"
        )
    else:
        names = f"scim_fold(t.display_name) LIKE {pattern} ESCAPE '\\'"
    return f"({names} OR t.external_id = {exact} OR t.id = {exact})"
