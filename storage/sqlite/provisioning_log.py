"""The provisioning log on SQLite: appended in batches, pruned hourly, queried by the console."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from scim.filters import format_datetime
from storage import (
    IgnoredAttribute,
    LogCounters,
    LogQuery,
    LogRecord,
)
from storage.records import FAILURE_GROUPS_SQL, FAILURE_SQL, LOG_COLUMNS, LOG_RECORD_COLUMNS, FailureGroup
from storage.sql import escape_like
from storage.sqlite.engine import Engine, fetch


class ProvisioningLog(Engine):
    """LogStore on SQLite."""

    async def append_logs(self, records: list[LogRecord]) -> None:
        """Write provisioning log records (without id) in one statement (called with buffered batches)."""
        marks = ", ".join("?" * len(LOG_COLUMNS))
        rows = [record[: len(LOG_COLUMNS)] for record in records]
        await self.write(
            lambda conn: conn.executemany(
                f"INSERT INTO provisioning_log ({', '.join(LOG_COLUMNS)}) VALUES ({marks})", rows
            )
        )

    async def prune_logs(self, max_age_days: int, max_rows: int) -> int:
        """Delete log records older than max_age_days or beyond the newest max_rows (0 = no limit)."""

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            if max_age_days:
                cutoff = format_datetime(datetime.now(UTC) - timedelta(days=max_age_days))
                conn.execute("DELETE FROM provisioning_log WHERE time < ?", (cutoff,))
            if max_rows:
                conn.execute(
                    "DELETE FROM provisioning_log WHERE id <= "
                    "(SELECT id FROM provisioning_log ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (max_rows,),
                )
            return conn.total_changes - before

        return await self.write(run)

    async def query_logs(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        """Records newest first, at most query.limit, and whether older ones match too."""
        conditions, params = _log_conditions(query)
        if query.before_id is not None:
            # Keyset on (time, id), the order of the (time) and (idp_id, time) indexes.
            conditions.append("(time, id) < (SELECT time, id FROM provisioning_log WHERE id = ?)")
            params.append(query.before_id)
        order = "time DESC, id DESC"
        if query.after_id is not None:
            conditions.append("id > ?")
            params.append(query.after_id)
            order = "id"
        sql = (
            f"SELECT {LOG_RECORD_COLUMNS[query.bodies]} FROM provisioning_log "
            f"WHERE {' AND '.join(conditions) or '1'} "
            f"ORDER BY {order} LIMIT ?"
        )
        rows = await self.read(fetch, sql, (*params, query.limit + 1))
        return [LogRecord(*row) for row in rows[: query.limit]], len(rows) > query.limit

    async def get_log(self, log_id: int) -> LogRecord | None:
        rows = await self.read(
            fetch, f"SELECT {LOG_RECORD_COLUMNS[True]} FROM provisioning_log WHERE id = ?", (log_id,)
        )
        return LogRecord(*rows[0]) if rows else None

    async def log_counters(self, idp_ids: list[str], since: str) -> dict[str, LogCounters]:
        """Per IdP: operations and failures since `since`, and the time of its newest record."""

        def run(conn: sqlite3.Connection) -> dict[str, LogCounters]:
            result = {}
            for idp_id in idp_ids:
                operations, failures = conn.execute(
                    "SELECT count(*), total(status >= 400) FROM provisioning_log WHERE idp_id = ? AND time >= ?",
                    (idp_id, since),
                ).fetchone()
                # Less the probes (PROBE_SQL, on an IdP that exists): only the 401s' rows are read,
                # the rest is answered by the (idp_id, time, status) index.
                probes = conn.execute(
                    "SELECT count(*) FROM provisioning_log WHERE idp_id = ? AND time >= ? AND status = 401 "
                    "AND operation = 'Test connection'",
                    (idp_id, since),
                ).fetchone()[0]
                failures -= probes
                last = conn.execute("SELECT max(time) FROM provisioning_log WHERE idp_id = ?", (idp_id,)).fetchone()[0]
                result[idp_id] = LogCounters(operations, int(failures), last)
            return result

        return await self.read(run)

    async def failure_groups(self, since: str, limit: int = 10) -> list[FailureGroup]:
        rows = await self.read(fetch, FAILURE_GROUPS_SQL.format(since="?", limit="?"), (since, limit))
        return [FailureGroup(*row) for row in rows]

    async def activity(self, idp_id: str, since: str, bucket_chars: int) -> list[tuple[str, int, int]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
            # As log_counters: the (idp_id, time, status) index answers the counts, and only the 401s'
            # rows are read to take Test Connection's probes out of the failures.
            counted = conn.execute(
                "SELECT substr(time, 1, ?) AS bucket, count(*), total(status >= 400) FROM provisioning_log "
                "WHERE idp_id = ? AND time >= ? GROUP BY bucket ORDER BY bucket",
                (bucket_chars, idp_id, since),
            ).fetchall()
            probes = dict(
                conn.execute(
                    "SELECT substr(time, 1, ?) AS bucket, count(*) FROM provisioning_log WHERE idp_id = ? "
                    "AND time >= ? AND status = 401 AND operation = 'Test connection' GROUP BY bucket",
                    (bucket_chars, idp_id, since),
                ).fetchall()
            )
            return [(bucket, count, int(failed) - probes.get(bucket, 0)) for bucket, count, failed in counted]

        return await self.read(run)

    async def ignored_attributes(self, idp_id: str, limit: int = 50) -> list[IgnoredAttribute]:
        rows = await self.read(
            fetch,
            "SELECT j.value, count(*), min(l.time), max(l.time) "
            "FROM provisioning_log AS l, json_each(l.ignored) AS j "
            "WHERE l.idp_id = ? AND l.ignored IS NOT NULL "
            "GROUP BY j.value ORDER BY count(*) DESC, j.value LIMIT ?",
            (idp_id, limit),
        )
        return [IgnoredAttribute(*row) for row in rows]


def like_pattern(text: str) -> str:
    return f"%{escape_like(text)}%"


def _log_conditions(query: LogQuery) -> tuple[list[str], list]:
    conditions: list[str] = []
    params: list = []
    if query.idp_id:
        conditions.append("idp_id = ?")
        params.append(query.idp_id)
    if query.failures is not None:
        conditions.append(FAILURE_SQL if query.failures else "status < 400")
    if query.operation:
        conditions.append("operation = ?")
        params.append(query.operation)
    if query.bulk_request:
        conditions.append("bulk_request = ?")
        params.append(query.bulk_request)
    if query.resource_id:
        conditions.append("resource_id = ?")
        params.append(query.resource_id)
    if query.text:
        pattern = like_pattern(query.text)
        # PATCH and DELETE records name their resource by id only: match its current name as well.
        conditions.append(
            "(target LIKE ? ESCAPE '\\' OR detail LIKE ? ESCAPE '\\' OR path LIKE ? ESCAPE '\\' "
            "OR resource_id = ? OR resource_id IN (SELECT id FROM users WHERE user_name LIKE ? "
            "ESCAPE '\\' UNION ALL SELECT id FROM groups WHERE display_name LIKE ? ESCAPE '\\'))"
        )
        params += [pattern, pattern, pattern, query.text, pattern, pattern]
    if query.since:
        conditions.append("time >= ?")
        params.append(query.since)
    if query.until:
        conditions.append("time < ?")
        params.append(query.until)
    return conditions, params
