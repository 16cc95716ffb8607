"""The admin console's settings and sessions on SQLite."""

from __future__ import annotations

import sqlite3

from storage import (
    AdminSession,
)
from storage.common import now
from storage.sqlite.engine import Engine, fetch


class ConsoleData(Engine):
    """ConsoleStore's settings and sessions."""

    async def get_setting(self, key: str) -> str | None:
        rows = await self.read(fetch, "SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def set_setting(self, key: str, value: str) -> None:
        stamp = now()
        await self.write(
            lambda conn: conn.execute(
                "INSERT INTO settings (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                (key, value, stamp),
            )
        )

    async def setting_or_create(self, key: str, value: str) -> str:
        """The stored value of key, storing `value` first when there is none (racing callers agree)."""
        stamp = now()

        def run(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT OR IGNORE INTO settings (key, value, updated) VALUES (?, ?, ?)", (key, value, stamp))
            return conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0]

        return await self.write(run)

    async def create_admin_session(self, session: AdminSession, client: str | None) -> None:
        stamp = now()

        def run(conn: sqlite3.Connection) -> None:
            # Expired sessions are swept at each sign-in, which keeps the table small without a timer.
            conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (stamp,))
            conn.execute(
                "INSERT INTO admin_sessions (id_hash, csrf_token, created, expires, client) VALUES (?, ?, ?, ?, ?)",
                (session.id_hash, session.csrf_token, session.created, session.expires, client),
            )

        await self.write(run)

    async def get_admin_session(self, id_hash: str) -> AdminSession | None:
        rows = await self.read(
            fetch,
            "SELECT id_hash, csrf_token, created, expires FROM admin_sessions WHERE id_hash = ? AND expires > ?",
            (id_hash, now()),
        )
        return AdminSession(*rows[0]) if rows else None

    async def delete_admin_sessions(self, id_hash: str | None = None) -> None:
        """Delete one session (sign-out), or every session (the admin password changed)."""
        if id_hash is None:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions"))
        else:
            await self.write(lambda conn: conn.execute("DELETE FROM admin_sessions WHERE id_hash = ?", (id_hash,)))
