"""The console's directory at 100,000 users: keyset pages along the (idp_id, user_name) index.

Run with `-s` to see the timings; they are printed, never asserted (timing depends on the machine).
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from pathlib import Path

import orjson

from tests.admin.conftest import Admin

USERS = 100_000


def seed(path: str, idp_id: str, count: int) -> list[str]:
    """count users written straight into the table (what 100,000 SCIM creates would leave behind)."""
    names = [f"user{i:06d}@contoso.com" for i in range(count)]
    stamp = "2025-01-01T00:00:00.000Z"
    rows = []
    for i, name in enumerate(names):
        doc = {
            "userName": name,
            "active": i % 10 != 0,
            "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
            "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
        }
        rows.append(
            (
                str(uuid.uuid4()),
                idp_id,
                name,
                f"ext-{i}",
                int(doc["active"]),
                orjson.dumps(doc).decode(),
                1,
                stamp,
                stamp,
            )
        )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO users (id, idp_id, user_name, external_id, active, doc, version, created, "
            "modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return names


def names_on(page: str) -> list[str]:
    return re.findall(r'/users/[0-9a-f-]{36}">([^<]+)</a>', page)


async def timed(admin: Admin, path: str, **params: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = await admin.client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed, response.text


async def test_pages_deep_in_100k_users_cost_what_the_first_one_costs(signed_in: Admin, tmp_path: Path) -> None:
    tenant = await signed_in.idp_with_key()
    names = seed(signed_in.settings.database.path, tenant.idp_id, USERS)
    path = f"/admin/idps/{tenant.idp_id}/users"
    figures = {}
    figures["first page"], first = await timed(signed_in, path)
    assert names_on(first) == names[:50]
    assert f"{USERS} users" in first
    figures["page 1,990 (after a cursor)"], deep = await timed(signed_in, path, after=names[99_449])
    assert names_on(deep) == names[99_450:99_500]
    figures["last page"], last = await timed(signed_in, path, after=names[99_949])
    assert names_on(last) == names[99_950:] and 'id="next-page"' not in last
    figures["previous page from the end"], back = await timed(signed_in, path, before=names[99_950])
    assert names_on(back) == names[99_900:99_950]
    figures["plain-text search (userName / names co)"], found = await timed(signed_in, path, q="user09999")
    assert names_on(found) == names[99_990:]
    figures["SCIM filter: active eq false"], inactive = await timed(signed_in, path, q="active eq false")
    assert names_on(inactive)[:2] == [names[0], names[10]] and f"{USERS // 10} users match" in inactive
    for label, ms in figures.items():
        print(f"100k users, {label}: {ms:.1f} ms")

    # Keyset paging walks the index in order: no sort of the 100,000 rows, whatever the page.
    with sqlite3.connect(signed_in.settings.database.path) as conn:
        plan = " ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT t.id FROM users AS t WHERE t.idp_id = ? AND 1 AND t.user_name > ? "
                "ORDER BY t.user_name LIMIT 51",
                (tenant.idp_id, names[99_000]),
            )
        )
    assert "users_idp_user_name" in plan and "TEMP B-TREE" not in plan
