"""Exporting the filtered provisioning log (issue 17): CSV and NDJSON, every matching record newest first,
streamed a batch at a time, from the admin API and the console, with formulas defused in CSV."""

from __future__ import annotations

import csv
import io

import orjson

from storage import LogRecord
from storage.common import now
from tests.admin.conftest import TOKEN, Admin
from web.admin.service import EXPORT_BATCH, EXPORT_FIELDS

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def record(n: int, idp: str, status: int, target: str) -> LogRecord:
    return LogRecord(
        time=now(),
        idp_id=idp,
        api_key_id="key",
        method="POST",
        path=f"/v1/scim/{idp}/Users",
        operation="Create User",
        resource_type="User",
        resource_id=f"id-{n}",
        target=target,
        status=status,
        scim_type="uniqueness" if status == 409 else None,
        detail="taken" if status == 409 else None,
        duration_ms=1.5,
        client="127.0.0.1",
        request_body='{"userName": "x"}',
        response_body=None,
    )


async def seed(admin: Admin) -> tuple[str, str]:
    one = (await admin.store.create_idp("One", "key", None)).id
    two = (await admin.store.create_idp("Two", "key", None)).id
    records = [
        record(n, one if n % 2 else two, 409 if n % 10 == 0 else 201, f"user{n}@contoso.com")
        for n in range(2 * EXPORT_BATCH + 500)
    ]
    records.append(record(99999, one, 201, '=HYPERLINK("http://evil","x")'))
    await admin.store.append_logs(records)
    return one, two


async def test_the_api_exports_every_matching_record_as_csv(signed_in: Admin) -> None:
    one, two = await seed(signed_in)
    answer = await signed_in.client.get("/v1/admin/logs/export", params={"format": "csv"}, headers=BEARER)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "content-length" not in answer.headers  # streamed
    assert 'filename="scimlet-log-' in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == list(EXPORT_FIELDS)
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(body) == 2 * EXPORT_BATCH + 501
    ids = [int(row["id"]) for row in body]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert body[0]["target"] == '\'=HYPERLINK("http://evil","x")'  # a formula is text in a spreadsheet
    assert {row["outcome"] for row in body} == {"success", "failure"}
    failures = await signed_in.client.get(
        "/v1/admin/logs/export", params={"format": "csv", "outcome": "failure", "idp": two}, headers=BEARER
    )
    failed = list(csv.DictReader(io.StringIO(failures.text)))
    assert len(failed) == (2 * EXPORT_BATCH + 500) // 10
    assert {(row["status"], row["idp_id"], row["scim_type"]) for row in failed} == {("409", two, "uniqueness")}


async def test_the_api_exports_ndjson_with_the_log_filters(signed_in: Admin) -> None:
    one, _ = await seed(signed_in)
    answer = await signed_in.client.get(
        "/v1/admin/logs/export", params={"format": "ndjson", "idp": one, "q": "user1"}, headers=BEARER
    )
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in answer.content.splitlines()]
    assert lines and all(line["idp_id"] == one and "user1" in line["target"] for line in lines)
    assert set(lines[0]) == set(EXPORT_FIELDS)
    assert "request_body" not in lines[0]
    bad = await signed_in.client.get("/v1/admin/logs/export", params={"format": "xlsx"}, headers=BEARER)
    assert bad.status_code == 400 and "csv or ndjson" in bad.json()["detail"]
    unauthenticated = await signed_in.client.get("/v1/admin/logs/export", headers={"Authorization": "Bearer no"})
    assert unauthenticated.status_code == 401


async def test_the_console_links_the_export_of_what_it_shows(signed_in: Admin) -> None:
    _, two = await seed(signed_in)
    page = await signed_in.client.get("/admin/logs", params={"idp": two, "outcome": "failure"})
    assert 'id="export-csv"' in page.text and 'id="export-ndjson"' in page.text
    assert f"/admin/logs/export?idp={two}&amp;outcome=failure&amp;format=csv" in page.text
    export = await signed_in.client.get(
        "/admin/logs/export", params={"idp": two, "outcome": "failure", "format": "csv"}
    )
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows and all(row["idp_id"] == two and row["outcome"] == "failure" for row in rows)
    bad = await signed_in.client.get("/admin/logs/export", params={"since": "yesterday"})
    assert bad.status_code == 400 and "must be a date and time" in bad.text
    signed_in.client.cookies.clear()
    anonymous = await signed_in.client.get("/admin/logs/export")
    assert anonymous.status_code == 303 and "/admin/login" in anonymous.headers["location"]
