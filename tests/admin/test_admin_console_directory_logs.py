"""Console: the directory (users, groups, search, paging, details) and the provisioning logs."""

from __future__ import annotations

import html
import re

import orjson

from storage import LogQuery
from tests.admin.conftest import TOKEN, Admin, Tenant
from tests.conftest import entra_user, patch_body


def user_names(page: str) -> list[str]:
    table = re.search(r'<table id="users".*?</table>', page, re.S).group(0)
    return re.findall(r'/users/[0-9a-f-]{36}">([^<]+)</a>', table)


def next_link(page: str, which: str) -> str | None:
    match = re.search(r'<a class="button small" href="([^"]+)" id="' + which + '"', page)
    return html.unescape(match.group(1)) if match else None


async def provision(tenant: Tenant) -> dict[str, str]:
    """Three users (one disabled, one with a work phone) and a group holding two of them."""
    ids = {}
    for name, given, family in (
        ("alice@contoso.com", "Alice", "Smith"),
        ("bob@contoso.com", "Bob", "Jones"),
        ("carol@contoso.com", "Carol", "Smithers"),
    ):
        body = entra_user(name, name={"givenName": given, "familyName": family})
        response = await tenant.scim.post("/Users", json=body)
        assert response.status_code == 201
        ids[name] = response.json()["id"]
    await tenant.scim.patch(
        f"/Users/{ids['bob@contoso.com']}", json=patch_body({"op": "Replace", "path": "active", "value": "False"})
    )
    group = await tenant.scim.post("/Groups", json={"displayName": "Sales", "externalId": "sales-ext"})
    ids["Sales"] = group.json()["id"]
    await tenant.scim.patch(
        f"/Groups/{ids['Sales']}",
        json=patch_body(
            {
                "op": "Add",
                "path": "members",
                "value": [{"value": ids["alice@contoso.com"]}, {"value": ids["carol@contoso.com"]}],
            }
        ),
    )
    await tenant.scim.post("/Groups", json={"displayName": "Engineering"})
    return ids


async def test_users_list_shows_the_columns_an_admin_needs(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users")
    assert page.status_code == 200
    assert user_names(page.text) == ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]
    assert '<p class="muted small" id="total">3 users</p>' in page.text
    bob_row = re.search(r"<tr>\s*<td[^>]*><a [^>]*>bob@contoso.com</a></td>(.*?)</tr>", page.text, re.S).group(1)
    assert "Bob" in bob_row and "Jones" in bob_row and ">No<" in bob_row and "+16175551212" in bob_row
    alice_row = re.search(r"<tr>\s*<td[^>]*><a [^>]*>alice@contoso.com</a></td>(.*?)</tr>", page.text, re.S).group(1)
    assert f'/groups/{ids["Sales"]}">Sales</a>' in alice_row and ">Yes<" in alice_row
    for header in (
        "userName",
        "Given name",
        "Family name",
        "Active",
        "Work phone",
        "Groups",
        "Created",
        "Last modified",
    ):
        assert re.search(rf"<th[^>]*>{header}", page.text), header


async def test_groups_list_shows_member_counts(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    await provision(tenant)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups")
    rows = re.findall(r'/groups/[0-9a-f-]{36}">([^<]+)</a></td>\s*<td class="num"[^>]*>(\d+)</td>', page.text)
    assert rows == [("Engineering", "0"), ("Sales", "2")]
    assert "sales-ext" in page.text


async def test_search_plain_text_matches_names(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)
    path = f"/admin/idps/{tenant.idp_id}/users"
    assert user_names((await signed_in.client.get(path, params={"q": "smith"})).text) == [
        "alice@contoso.com",
        "carol@contoso.com",
    ]  # family names Smith and Smithers
    assert user_names((await signed_in.client.get(path, params={"q": "BOB@"})).text) == ["bob@contoso.com"]
    assert user_names((await signed_in.client.get(path, params={"q": ids["carol@contoso.com"]})).text) == [
        "carol@contoso.com"
    ]
    nothing = await signed_in.client.get(path, params={"q": '50%_"\\'})
    assert nothing.status_code == 200 and user_names(nothing.text) == [] and "No users match" in nothing.text
    groups = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups", params={"q": "sal"})
    assert ">Sales</a>" in groups.text and "Engineering" not in groups.text


async def test_search_accepts_a_scim_filter(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)
    path = f"/admin/idps/{tenant.idp_id}/users"
    assert user_names((await signed_in.client.get(path, params={"q": "active eq false"})).text) == ["bob@contoso.com"]
    assert user_names(
        (
            await signed_in.client.get(
                path, params={"q": f'groups.value eq "{ids["Sales"]}" and name.givenName sw "C"'}
            )
        ).text
    ) == ["carol@contoso.com"]
    groups = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups", params={"q": "members pr"})
    assert ">Sales</a>" in groups.text and "Engineering" not in groups.text


async def test_bad_filter_says_what_is_wrong(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    for query in ('userName eq "unterminated', 'nosuchattr eq "x"', "active eq"):
        page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users", params={"q": query})
        assert page.status_code == 400, query
        assert "not a valid SCIM filter" in page.text


async def test_paging_walks_forward_and_back(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    names = [f"user{i:03d}@contoso.com" for i in range(120)]
    for name in reversed(names):
        assert (await tenant.scim.post("/Users", json=entra_user(name))).status_code == 201
    path = f"/admin/idps/{tenant.idp_id}/users"
    first = await signed_in.client.get(path)
    assert user_names(first.text) == names[:50]
    assert next_link(first.text, "previous-page") is None
    second = await signed_in.client.get(next_link(first.text, "next-page"))
    assert user_names(second.text) == names[50:100]
    third = await signed_in.client.get(next_link(second.text, "next-page"))
    assert user_names(third.text) == names[100:]
    assert next_link(third.text, "next-page") is None
    back = await signed_in.client.get(next_link(third.text, "previous-page"))
    assert user_names(back.text) == names[50:100]
    start = await signed_in.client.get(next_link(back.text, "previous-page"))
    assert user_names(start.text) == names[:50]
    # Paging keeps the search.
    searched = await signed_in.client.get(path, params={"q": "user1"})
    assert user_names(searched.text) == names[100:120] and next_link(searched.text, "next-page") is None


async def test_user_detail_shows_attributes_and_scim_json(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{ids['alice@contoso.com']}")
    assert page.status_code == 200
    assert "<h1>alice@contoso.com</h1>" in page.text
    assert "+16175551212" in page.text and "Smith" in page.text
    scim = html.unescape(re.search(r'<pre class="json" id="scim-json">(.*?)</pre>', page.text, re.S).group(1))
    assert f'"location": "{tenant.url}/Users/{ids["alice@contoso.com"]}"' in scim
    assert '"userName": "alice@contoso.com"' in scim and '"display": "Sales"' in scim


async def test_group_detail_shows_members_and_scim_json(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups/{ids['Sales']}")
    assert "2 direct members" in page.text
    members = re.search(r'<table id="members">.*?</table>', page.text, re.S).group(0)
    assert "alice@contoso.com" in members and "carol@contoso.com" in members and "bob@" not in members
    scim = html.unescape(re.search(r'<pre class="json" id="scim-json">(.*?)</pre>', page.text, re.S).group(1))
    assert '"displayName": "Sales"' in scim and ids["carol@contoso.com"] in scim


async def test_unknown_user_or_group_is_404(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    for path in ("users", "groups"):
        response = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/{path}/no-such-id")
        assert response.status_code == 404


async def test_directory_never_shows_another_idps_resources(signed_in: Admin) -> None:
    ours = await signed_in.idp_with_key("Ours")
    theirs = await signed_in.idp_with_key("Theirs")
    ids = await provision(theirs)
    page = await signed_in.client.get(f"/admin/idps/{ours.idp_id}/users")
    assert user_names(page.text) == []
    assert (
        await signed_in.client.get(f"/admin/idps/{ours.idp_id}/users/{ids['alice@contoso.com']}")
    ).status_code == 404
    directory = await signed_in.client.get("/admin/directory")
    assert directory.status_code == 200
    assert (
        f'/admin/idps/{ours.idp_id}/users">' in directory.text
        and f'/admin/idps/{theirs.idp_id}/groups">' in directory.text
    )


async def test_directory_with_one_idp_goes_straight_to_its_users(signed_in: Admin) -> None:
    empty = await signed_in.client.get("/admin/directory")
    assert empty.status_code == 200 and "No IdPs yet" in empty.text
    only = await signed_in.idp_with_key()
    directory = await signed_in.client.get("/admin/directory")
    assert directory.status_code == 303 and directory.headers["location"] == f"/admin/idps/{only.idp_id}/users"


async def log_rows(admin: Admin, **params: str) -> list[dict]:
    page = await admin.client.get("/admin/logs", params=params)
    assert page.status_code == 200, page.text
    table = re.search(r'<table id="logs".*?</table>', page.text, re.S).group(0)
    rows = []
    for row in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", table, re.S):
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        rows.append(
            dict(
                zip(
                    ["time", "idp", "key", "operation", "target", "status", "scim_type", "detail", "ms"],
                    cells,
                    strict=True,
                )
            )
        )
    return rows


async def test_logs_list_operations_in_words_with_their_outcome(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Contoso")
    await tenant.scim.post("/Users", json=entra_user("erin@contoso.com"))
    await tenant.scim.post("/Users", json=entra_user("ERIN@contoso.com"))
    await tenant.scim.get("/Users", headers={"Authorization": "Bearer wrong"})
    await signed_in.flush_logs()
    rows = await log_rows(signed_in)
    assert [(r["operation"], r["status"]) for r in rows] == [
        ("List Users", "401"),
        ("Create User", "409"),
        ("Create User", "201"),
    ]
    failed_create = rows[1]
    assert failed_create["idp"] == "Contoso" and failed_create["key"] == "Contoso key"
    assert failed_create["target"] == "ERIN@contoso.com" and failed_create["scim_type"] == "uniqueness"
    assert "already taken" in failed_create["detail"]
    assert rows[0]["key"] == "—"  # the wrong token is nobody's key
    assert float(rows[2]["ms"]) >= 0


async def test_logs_filter_by_idp_outcome_operation_text_and_time(signed_in: Admin) -> None:
    one = await signed_in.idp_with_key("One")
    two = await signed_in.idp_with_key("Two")
    await one.scim.post("/Users", json=entra_user("frank@contoso.com"))
    await one.scim.post("/Groups", json={"displayName": "Ops"})
    await two.scim.post("/Users", json=entra_user("grace@contoso.com"))
    await two.scim.get("/Users/missing-id")
    await signed_in.flush_logs()
    assert {r["target"] for r in await log_rows(signed_in, idp=one.idp_id)} == {"frank@contoso.com", "Ops"}
    failures = await log_rows(signed_in, outcome="failure")
    assert [(r["operation"], r["status"], r["idp"]) for r in failures] == [("Get User", "404", "Two")]
    assert len(await log_rows(signed_in, outcome="success")) == 3
    assert [r["target"] for r in await log_rows(signed_in, operation="Create Group")] == ["Ops"]
    assert [r["target"] for r in await log_rows(signed_in, q="grace")] == ["grace@contoso.com"]
    assert [r["operation"] for r in await log_rows(signed_in, q="not found")] == ["Get User"]
    assert await log_rows(signed_in, since="2999-01-01T00:00") == []
    assert len(await log_rows(signed_in, until="2999-01-01T00:00:00", since="2000-01-01T00:00")) == 4
    assert await log_rows(signed_in, until="2000-01-01T00:00") == []
    bad = await signed_in.client.get("/admin/logs", params={"since": "yesterday"})
    assert bad.status_code == 400 and "must be a date and time" in bad.text


async def test_logs_page_older_records(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    for i in range(60):
        await tenant.scim.get("/Users", params={"filter": f'userName eq "u{i:02d}"'})
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/logs")
    assert [r["operation"] for r in await log_rows(signed_in)] == ["Find User"] * 50
    older = next_link(page.text, "older")
    rest = await log_rows(signed_in, **dict(re.findall(r"(\w+)=([^&]+)", older.split("?", 1)[1])))
    assert len(rest) == 10
    assert rest[-1]["target"] == 'userName eq "u00"'


async def test_log_detail_shows_redacted_request_and_response(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    await tenant.scim.post("/Users", json=entra_user("heidi@contoso.com", password="Sup3r-secret!"))
    await signed_in.flush_logs()
    record = (await signed_in.store.query_logs(LogQuery()))[0][0]
    page = await signed_in.client.get(f"/admin/logs/{record.id}")
    assert page.status_code == 200
    assert "Create User" in page.text and "heidi@contoso.com" in page.text
    assert "Sup3r-secret!" not in page.text and "[redacted]" in page.text
    response = html.unescape(re.search(r'<pre class="json" id="response-body">(.*?)</pre>', page.text, re.S).group(1))
    assert '"userName": "heidi@contoso.com"' in response and '"id":' in response
    assert (await signed_in.client.get("/admin/logs/999999")).status_code == 404


async def test_logs_counters_for_the_last_24_hours(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Counted")
    await tenant.scim.post("/Users", json=entra_user("ivan@contoso.com"))
    await tenant.scim.get("/Users/nope")
    await tenant.scim.get("/Users/nope2")
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/logs")
    counters = re.search(r'<table id="counters"[^>]*>.*?</table>', page.text, re.S).group(0)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", counters, re.S)]
    assert cells[:3] == ["Counted", "3", "2"]
    assert cells[3].startswith("20")


async def test_logs_name_resources_that_requests_named_only_by_id(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    ids = await provision(tenant)  # bob is disabled and Sales gets members by PATCH: both by id only
    await signed_in.flush_logs()
    rows = await log_rows(signed_in)
    assert ("Add members", "Sales") in [(r["operation"], r["target"]) for r in rows]
    assert ("Disable User", "bob@contoso.com") in [(r["operation"], r["target"]) for r in rows]
    assert [r["operation"] for r in await log_rows(signed_in, q="sales")] == ["Add members", "Create Group"]
    by_id = await log_rows(signed_in, q=ids["bob@contoso.com"])
    assert [r["operation"] for r in by_id] == ["Disable User", "Create User"]
    user_page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{ids['bob@contoso.com']}")
    assert f"/admin/logs?idp={tenant.idp_id}&amp;q={ids['bob@contoso.com']}" in user_page.text


async def test_search_finds_names_with_quotes_and_backslashes(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    body = entra_user("odd@contoso.com", name={"givenName": 'Say "hi"', "familyName": "Back\\slash"})
    assert (await tenant.scim.post("/Users", json=body)).status_code == 201
    await tenant.scim.post("/Users", json=entra_user("plain@contoso.com"))
    path = f"/admin/idps/{tenant.idp_id}/users"
    for text in ('"hi"', "k\\s", "SAY"):
        assert user_names((await signed_in.client.get(path, params={"q": text})).text) == ["odd@contoso.com"], text


async def test_test_connection_probes_show_as_probes_not_failures(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Probed")
    probe = {"filter": 'userName eq "0f8fad5b-d9cb-469f-a165-70867728950e"'}
    assert (await tenant.scim.get("/Users", params=probe)).status_code == 200
    wrong = await tenant.scim.get("/Users", params=probe, headers={"Authorization": "Bearer wrong-secret"})
    assert wrong.status_code == 401
    assert (await tenant.scim.get("/Users/nope")).status_code == 404
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/logs")
    counters = re.search(r'<table id="counters"[^>]*>.*?</table>', page.text, re.S).group(0)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", counters, re.S)]
    assert cells[:3] == ["Probed", "3", "1"]
    assert [(r["operation"], r["status"]) for r in await log_rows(signed_in, outcome="failure")] == [
        ("Get User", "404")
    ]
    overview = await signed_in.client.get("/admin/")
    recent = re.search(r"<h2>Recent failures</h2>.*?</table>", overview.text, re.S).group(0)
    assert "Get User" in recent and "Test connection" not in recent
    assert re.search(r"<dt>Failures</dt><dd[^>]*>1</dd>", overview.text)
    records, _ = await signed_in.store.query_logs(LogQuery(operation="Test connection"))
    for record in records:
        shown = await signed_in.client.get(f"/admin/logs/{record.id}")
        outcome = re.search(r'<dd id="log-outcome">(.*?)</dd>', shown.text, re.S).group(1)
        assert ">Probe<" in outcome and "not counted as a failure" in outcome
    listing = await signed_in.client.get("/admin/logs", params={"operation": "Test connection"})
    assert listing.text.count('class="badge info" title="Test Connection') == 2
    api = await signed_in.client.get(
        "/v1/admin/logs", params={"operation": "Test connection"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert [r["outcome"] for r in api.json()["Resources"]] == ["probe", "probe"]


async def test_records_of_a_deleted_idp_keep_its_name(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Fabrikam")
    await tenant.scim.post("/Users", json=entra_user("judy@fabrikam.com"))
    await signed_in.flush_logs()
    deleted = await signed_in.post(f"/admin/idps/{tenant.idp_id}/delete")
    assert deleted.status_code == 303, deleted.text
    rows = await log_rows(signed_in)
    assert [(r["operation"], r["idp"], r["target"]) for r in rows] == [
        ("Create User", "Fabrikam (deleted)", "judy@fabrikam.com")
    ]
    record = (await signed_in.store.query_logs(LogQuery()))[0][0]
    shown = await signed_in.client.get(f"/admin/logs/{record.id}")
    assert "Fabrikam (deleted)" in shown.text and "unknown IdP" not in shown.text
    by_idp = await log_rows(signed_in, idp=tenant.idp_id)
    assert [r["target"] for r in by_idp] == ["judy@fabrikam.com"]


async def test_a_bulk_requests_operations_are_listed_together(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Bulky")
    await tenant.scim.post("/Users", json=entra_user("solo@contoso.com"))
    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": entra_user("bulk1@contoso.com")},
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"displayName": "Bulk group"}},
        ],
    }
    assert (await tenant.scim.post("/Bulk", json=bulk)).status_code == 200
    await signed_in.flush_logs()
    records, _ = await signed_in.store.query_logs(LogQuery(operation="Create Group"))
    group = records[0].bulk_request
    assert group is not None
    detail = await signed_in.client.get(f"/admin/logs/{records[0].id}")
    assert f"/admin/logs?bulk={group}" in detail.text and 'id="log-bulk"' in detail.text
    rows = await log_rows(signed_in, bulk=group)
    assert [(r["operation"], r["target"]) for r in rows] == [
        ("Create Group", "Bulk group"),
        ("Create User", "bulk1@contoso.com"),
    ]
    page = await signed_in.client.get("/admin/logs", params={"bulk": group})
    assert 'id="filter-bulk"' in page.text
    api = await signed_in.client.get(
        "/v1/admin/logs", params={"bulk": group}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert [r["target"] for r in api.json()["Resources"]] == ["Bulk group", "bulk1@contoso.com"]
    assert {r["bulk_request"] for r in api.json()["Resources"]} == {group}


async def test_a_users_and_a_groups_page_show_their_timeline(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Timeline")
    ids = await provision(tenant)
    alice, sales = ids["alice@contoso.com"], ids["Sales"]
    await tenant.scim.patch(f"/Users/{alice}", json=patch_body({"op": "Replace", "path": "title", "value": "CTO"}))
    await tenant.scim.patch(
        f"/Users/{alice}",
        headers={"If-Match": 'W/"999"'},
        json=patch_body({"op": "Replace", "path": "title", "value": "x"}),
    )
    await signed_in.flush_logs()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/users/{alice}")
    timeline = re.search(r'<ol class="timeline">(.*?)</ol>', page.text, re.S).group(1)
    entries = [
        html.unescape(re.sub(r"<[^>]+>", " ", item)).split()
        for item in re.findall(r"<li[^>]*>(.*?)</li>", timeline, re.S)
    ]
    assert [" ".join(words[2:5]) for words in entries] == ["Create User 201", "Update User 200", "Update User 412"]
    assert 'class="failed"' in timeline
    group_page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/groups/{sales}")
    group_timeline = re.search(r'<ol class="timeline">(.*?)</ol>', group_page.text, re.S).group(1)
    assert "Create Group" in group_timeline and "Add members" in group_timeline
    rows = await log_rows(signed_in, resource=alice, idp=tenant.idp_id)
    assert [r["operation"] for r in rows] == ["Update User", "Update User", "Create User"]
    api = await signed_in.client.get(
        "/v1/admin/logs", params={"resource": sales}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert [r["operation"] for r in api.json()["Resources"]] == ["Add members", "Create Group"]


async def test_activity_charts_count_operations_and_failures(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Charted")
    for n in range(3):
        await tenant.scim.post("/Users", json=entra_user(f"chart{n}@contoso.com"))
    await tenant.scim.post("/Users", json=entra_user("chart0@contoso.com"))  # 409: a failure
    await tenant.scim.get("/Users/missing")  # 404: a failure
    await signed_in.flush_logs()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    for window in ("1h", "24h", "7d"):
        figure = re.search(rf'<figure class="chart" id="activity-{window}">(.*?)</figure>', page.text, re.S).group(1)
        caption = html.unescape(re.sub(r"<[^>]+>", "", figure.split("<figcaption>")[1]))
        assert "5 operations, 2 failures, failure rate 40.0%" in caption, caption
        assert "<svg" in figure and 'fill="url(#hatch-chart-' in figure  # failures hatched, not only coloured
        assert "5 operations, 2 failures" in re.search(r"<title[^>]*>(.*?)</title>", figure).group(1)
    overview = await signed_in.client.get("/admin/")
    assert f'id="overview-activity-{tenant.idp_id}"' in overview.text
    assert "5 operations, 2 failures (40.0%) in the last 24 hours" in overview.text


async def test_only_the_newest_log_page_is_live(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Live")
    for i in range(55):
        await tenant.scim.get("/Users", params={"filter": f'userName eq "u{i:02d}"'})
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/logs", params={"idp": tenant.idp_id})
    newest = (await signed_in.store.query_logs(LogQuery(limit=1)))[0][0].id
    assert f'data-live="/admin/logs/live?idp={tenant.idp_id}" data-after="{newest}"' in page.text
    older = await signed_in.client.get(next_link(page.text, "older"))
    assert "data-live" not in older.text and 'id="live-toggle"' not in older.text
    for after in ("x", "-1", "9" * 30):
        refused = await signed_in.client.get("/admin/logs/live", params={"after": after})
        assert refused.status_code == 400 and "after must be a record id" in refused.text
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_failures_carry_a_hint_and_a_link_to_the_docs_section(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Hinted")
    await tenant.scim.post("/Users", json=entra_user("dup@contoso.com"))
    await tenant.scim.post("/Users", json=entra_user("DUP@contoso.com"))  # 409 uniqueness
    await tenant.scim.get("/Users", headers={"Authorization": "Bearer wrong"})  # 401
    await signed_in.flush_logs()
    records, _ = await signed_in.store.query_logs(LogQuery(failures=True))
    by_status = {r.status: r for r in records}
    page = await signed_in.client.get(f"/admin/logs/{by_status[409].id}")
    hint = html.unescape(re.search(r'<dd id="log-hint">(.*?)</dd>', page.text, re.S).group(1))
    assert "already has this userName" in hint and 'href="/admin/docs/entra#status-codes"' in hint
    listing = await signed_in.client.get("/admin/logs")
    assert listing.text.count(">What to do</a>") == 2  # each failure, not the success
    doc = await signed_in.client.get("/admin/docs/entra")
    assert doc.status_code == 200 and '<h3 id="status-codes">Status codes</h3>' in doc.text
    assert '<h3 id="failures-retries-and-quarantine">' in doc.text
    for missing in ("nope", "..%2Fsettings", "ENTRA"):
        assert (await signed_in.client.get(f"/admin/docs/{missing}")).status_code == 404


async def test_the_overview_groups_repeated_failures(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Noisy")
    for _ in range(4):
        await tenant.scim.get("/Users/missing")
    await tenant.scim.get("/Groups/missing")  # once: not repeated
    await signed_in.flush_logs()
    page = await signed_in.client.get("/admin/")
    card = html.unescape(
        re.sub(
            r"<[^>]+>",
            "",
            re.search(r'<section class="card" id="repeated-failures">(.*?)</section>', page.text, re.S).group(1),
        )
    )
    assert "404 × 4 Get User from 203.0.113.7 to Noisy" in " ".join(card.split())  # the console test client
    assert "Get Group" not in card


async def test_a_writes_record_shows_what_it_changed(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key("Changed")
    ids = await provision(tenant)  # bob disabled by PATCH, alice and carol added to Sales
    bob = ids["bob@contoso.com"]
    await tenant.scim.patch(f"/Users/{bob}", json=patch_body({"op": "Replace", "path": "title", "value": "CFO"}))
    await tenant.scim.delete(f"/Users/{ids['carol@contoso.com']}")
    await signed_in.flush_logs()
    records, _ = await signed_in.store.query_logs(LogQuery(resource_id=bob))
    update_title, disable, create = records
    assert orjson.loads(disable.changes) == {"active": [True, False]}
    assert orjson.loads(update_title.changes) == {"title": [None, "CFO"]}
    assert create.changes is None  # a create's answer is the stored resource
    (add_members,) = (await signed_in.store.query_logs(LogQuery(operation="Add members")))[0]
    assert orjson.loads(add_members.changes) == {"members": {"added": 2, "removed": 0}}
    (deleted,) = (await signed_in.store.query_logs(LogQuery(operation="Delete User")))[0]
    assert orjson.loads(deleted.changes)["userName"] == ["carol@contoso.com", None]
    page = await signed_in.client.get(f"/admin/logs/{update_title.id}")
    table = html.unescape(re.search(r'<section class="card" id="changes">(.*?)</section>', page.text, re.S).group(1))
    assert "title" in table and "— (absent)" in table and "CFO" in table
    members = await signed_in.client.get(f"/admin/logs/{add_members.id}")
    assert "2 added" in members.text and "0 removed" in members.text
