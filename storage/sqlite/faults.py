"""Fault injection rules on SQLite (web/faults.py reads the active ones about once a second)."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, fields

from storage import FaultRule
from storage.sqlite.engine import Engine, fetch

FAULT_COLUMNS = ", ".join(f.name for f in fields(FaultRule))


class FaultRules(Engine):
    """FaultStore on SQLite."""

    async def add_fault_rule(self, rule: FaultRule) -> None:
        marks = ", ".join("?" * len(fields(FaultRule)))

        def run(conn: sqlite3.Connection) -> None:
            # Expired rules are swept whenever one is added, which keeps the table small without a timer.
            conn.execute("DELETE FROM fault_rules WHERE expires <= ?", (rule.created,))
            conn.execute(f"INSERT INTO fault_rules ({FAULT_COLUMNS}) VALUES ({marks})", astuple(rule))

        await self.write(run)

    async def fault_rules(self, now: str) -> list[FaultRule]:
        rows = await self.read(
            fetch, f"SELECT {FAULT_COLUMNS} FROM fault_rules WHERE expires > ? ORDER BY created, id", (now,)
        )
        return [FaultRule(*row) for row in rows]

    async def delete_fault_rules(self, idp_id: str, rule_id: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if rule_id is None:
                return conn.execute("DELETE FROM fault_rules WHERE idp_id = ?", (idp_id,)).rowcount
            return conn.execute("DELETE FROM fault_rules WHERE idp_id = ? AND id = ?", (idp_id, rule_id)).rowcount

        return await self.write(run)
