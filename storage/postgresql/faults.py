"""Fault injection rules on PostgreSQL, shared by every instance (web/faults.py reads the active
ones about once a second)."""

from __future__ import annotations

from dataclasses import astuple, fields

from storage import FaultRule
from storage.postgresql.engine import Connection, Engine, status_count

FAULT_COLUMNS = ", ".join(f.name for f in fields(FaultRule))


class FaultRules(Engine):
    """FaultStore on PostgreSQL."""

    async def add_fault_rule(self, rule: FaultRule) -> None:
        marks = ", ".join(f"${n}" for n in range(1, len(fields(FaultRule)) + 1))

        async def run(conn: Connection) -> None:
            # Expired rules are swept whenever one is added, which keeps the table small without a timer.
            await conn.execute("DELETE FROM fault_rules WHERE expires <= $1", rule.created)
            await conn.execute(f"INSERT INTO fault_rules ({FAULT_COLUMNS}) VALUES ({marks})", *astuple(rule))

        await self.write(run)

    async def fault_rules(self, now: str) -> list[FaultRule]:
        rows = await self.read(
            lambda conn: conn.fetch(
                f"SELECT {FAULT_COLUMNS} FROM fault_rules WHERE expires > $1 ORDER BY created, id", now
            )
        )
        return [FaultRule(*row) for row in rows]

    async def delete_fault_rules(self, idp_id: str, rule_id: str | None = None) -> int:
        async def run(conn: Connection) -> int:
            if rule_id is None:
                return status_count(await conn.execute("DELETE FROM fault_rules WHERE idp_id = $1", idp_id))
            return status_count(
                await conn.execute("DELETE FROM fault_rules WHERE idp_id = $1 AND id = $2", idp_id, rule_id)
            )

        return await self.write(run)
