"""The provisioning log on PostgreSQL: appended in batches, pruned hourly, queried by the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scim.filters import fold, format_datetime
from storage import IgnoredAttribute, LogCounters, LogQuery, LogRecord
from storage.postgresql.engine import Connection, Engine, status_count
from storage.records import FAILURE_GROUPS_SQL, FAILURE_SQL, LOG_COLUMNS, LOG_RECORD_COLUMNS, FailureGroup
from storage.sql import escape_like

# The SQL type of each column written, in LOG_COLUMNS order.
LOG_COLUMN_TYPES = {"status": "integer", "duration_ms": "float8"}
APPEND_LOGS = (
    f"INSERT INTO provisioning_log ({', '.join(LOG_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${n}::{LOG_COLUMN_TYPES.get(name, 'text')}[]" for n, name in enumerate(LOG_COLUMNS, start=1))
    + ")"
)


def without_nul(value: object) -> object:
    # PostgreSQL's text cannot hold NUL, and a record keeps what the client sent: shown as JSON writes it.
    return value.replace("\x00", "\\u0000") if isinstance(value, str) else value


def like_pattern(text: str) -> str:
    """A LIKE pattern matching text anywhere, ASCII letters folded (compare with scim_fold(column))."""
    return f"%{escape_like(fold(text).replace(chr(0), ''))}%"


class ProvisioningLog(Engine):
    """LogStore on PostgreSQL."""

    async def append_logs(self, records: list[LogRecord]) -> None:
        # One statement for the whole batch, each column an array: a statement per record cost
        # PostgreSQL as much again as the request it records.
        columns = [[without_nul(record[i]) for record in records] for i in range(len(LOG_COLUMNS))]
        await self.write_one(lambda conn: conn.execute(APPEND_LOGS, *columns))

    async def prune_logs(self, max_age_days: int, max_rows: int) -> int:
        async def run(conn: Connection) -> int:
            deleted = 0
            if max_age_days:
                cutoff = format_datetime(datetime.now(UTC) - timedelta(days=max_age_days))
                deleted += status_count(await conn.execute("DELETE FROM provisioning_log WHERE time < $1", cutoff))
            if max_rows:
                deleted += status_count(
                    await conn.execute(
                        "DELETE FROM provisioning_log WHERE id <= "
                        "(SELECT id FROM provisioning_log ORDER BY id DESC LIMIT 1 OFFSET $1)",
                        max_rows,
                    )
                )
            return deleted

        return await self.write(run)

    async def query_logs(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        conditions, params = _log_conditions(query)
        if query.before_id is not None:
            params.append(query.before_id)
            # Keyset on (time, id), the order of the (time, id) index.
            conditions.append(f"(time, id) < (SELECT time, id FROM provisioning_log WHERE id = ${len(params)})")
        order = "time DESC, id DESC"
        if query.after_id is not None:
            params.append(query.after_id)
            conditions.append(f"id > ${len(params)}")
            order = "id"
        params.append(query.limit + 1)
        sql = (
            f"SELECT {LOG_RECORD_COLUMNS[query.bodies]} FROM provisioning_log "
            f"WHERE {' AND '.join(conditions) or 'true'} "
            f"ORDER BY {order} LIMIT ${len(params)}"
        )
        rows = await self.read(lambda conn: conn.fetch(sql, *params))
        return [LogRecord(*row) for row in rows[: query.limit]], len(rows) > query.limit

    async def get_log(self, log_id: int) -> LogRecord | None:
        row = await self.read(
            lambda conn: conn.fetchrow(f"SELECT {LOG_RECORD_COLUMNS[True]} FROM provisioning_log WHERE id = $1", log_id)
        )
        return LogRecord(*row) if row else None

    async def log_counters(self, idp_ids: list[str], since: str) -> dict[str, LogCounters]:
        async def run(conn: Connection) -> dict[str, LogCounters]:
            rows = await conn.fetch(
                "SELECT i.id, "
                "(SELECT count(*) FROM provisioning_log WHERE idp_id = i.id AND time >= $2), "
                "(SELECT count(*) FROM provisioning_log WHERE idp_id = i.id AND time >= $2 AND status >= 400 "
                "AND NOT (status = 401 AND operation = 'Test connection')), "  # the probes (PROBE_SQL)
                "(SELECT max(time) FROM provisioning_log WHERE idp_id = i.id) "
                "FROM unnest($1::text[]) AS i(id)",
                idp_ids,
                since,
            )
            return {r[0]: LogCounters(r[1], r[2], r[3]) for r in rows}

        return await self.read(run)

    async def failure_groups(self, since: str, limit: int = 10) -> list[FailureGroup]:
        sql = FAILURE_GROUPS_SQL.format(since="$1", limit="$2")
        rows = await self.read(lambda conn: conn.fetch(sql, since, limit))
        return [FailureGroup(*row) for row in rows]

    async def activity(self, idp_id: str, since: str, bucket_chars: int) -> list[tuple[str, int, int]]:
        rows = await self.read(
            lambda conn: conn.fetch(
                "SELECT substr(time, 1, $3) AS bucket, count(*), count(*) FILTER (WHERE status >= 400 "
                "AND NOT (status = 401 AND operation = 'Test connection')) "  # the probes (PROBE_SQL)
                "FROM provisioning_log WHERE idp_id = $1 AND time >= $2 GROUP BY bucket ORDER BY 1",
                idp_id,
                since,
                bucket_chars,
            )
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def ignored_attributes(self, idp_id: str, limit: int = 50) -> list[IgnoredAttribute]:
        rows = await self.read(
            lambda conn: conn.fetch(
                "SELECT j.name, count(*), min(l.time), max(l.time) "
                "FROM provisioning_log AS l, jsonb_array_elements_text(l.ignored::jsonb) AS j(name) "
                "WHERE l.idp_id = $1 AND l.ignored IS NOT NULL "
                'GROUP BY j.name ORDER BY count(*) DESC, j.name COLLATE "C" LIMIT $2',
                idp_id,
                limit,
            )
        )
        return [IgnoredAttribute(*row) for row in rows]


def _log_conditions(query: LogQuery) -> tuple[list[str], list]:
    conditions: list[str] = []
    params: list = []

    def bind(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.idp_id:
        conditions.append(f"idp_id = {bind(query.idp_id)}")
    if query.failures is not None:
        conditions.append(FAILURE_SQL if query.failures else "status < 400")
    if query.operation:
        conditions.append(f"operation = {bind(query.operation)}")
    if query.bulk_request:
        conditions.append(f"bulk_request = {bind(query.bulk_request.replace(chr(0), ''))}")
    if query.resource_id:
        conditions.append(f"resource_id = {bind(query.resource_id.replace(chr(0), ''))}")
    if query.text:
        pattern = bind(like_pattern(query.text))
        exact = bind(query.text.replace("\x00", ""))
        # PATCH and DELETE records name their resource by id only: match its current name as well.
        conditions.append(
            f"(scim_fold(target) LIKE {pattern} ESCAPE '\\' OR scim_fold(detail) LIKE {pattern} ESCAPE '\\' "
            f"OR scim_fold(path) LIKE {pattern} ESCAPE '\\' OR resource_id = {exact} "
            f"OR resource_id IN (SELECT id FROM users WHERE scim_fold(user_name) LIKE {pattern} ESCAPE '\\' "
            f"UNION ALL SELECT id FROM groups WHERE scim_fold(display_name) LIKE {pattern} ESCAPE '\\'))"
        )
    if query.since:
        conditions.append(f"time >= {bind(query.since)}")
    if query.until:
        conditions.append(f"time < {bind(query.until)}")
    return conditions, params
