"""The admin side under abuse: concurrent sign-in guesses, replayed sign-in forms, query parameters
out of range, and an API key offered to a second IdP (admin API, console and CLI)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from storage.sqlite import SqliteStore, migrate
from tests.admin.conftest import BASE, CLIENT_ADDRESS, TOKEN, Admin, admin_settings, hidden_csrf, open_admin
from tests.admin.test_admin_cli import cli_env
from tests.conftest import run_cli
from web.admin.auth import LOGIN_COOKIE, SESSION_COOKIE
from web.admin.security import UsedTokens
from web.admin.service import AdminService

STORED_PASSWORD = "a stored password, checked with scrypt"
GUESSES = 100


@pytest.fixture
async def stored_password_admin(tmp_path: Path):
    """The console with its password stored as an scrypt hash (a configured one is not hashed)."""
    settings = admin_settings(tmp_path, SCIMLET_ADMIN_PASSWORD=None)
    store, app = await open_admin(settings)
    await AdminService(store, settings).set_admin_password(STORED_PASSWORD)
    transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Admin(client, store, app, settings)
    await store.close()


async def sign_in_form(admin: Admin) -> tuple[str, str]:
    """A fresh sign-in form: (its hidden token, its login cookie)."""
    async with httpx.AsyncClient(transport=admin.client._transport, base_url=BASE) as browser:
        page = await browser.get("/admin/login")
        return hidden_csrf(page.text), browser.cookies[LOGIN_COOKIE]


async def post_sign_in(admin: Admin, form: tuple[str, str], password: str) -> httpx.Response:
    token, cookie = form
    async with httpx.AsyncClient(
        transport=admin.client._transport, base_url=BASE, cookies={LOGIN_COOKIE: cookie}
    ) as browser:
        return await browser.post("/admin/login", data={"csrf_token": token, "password": password})


async def test_concurrent_wrong_sign_ins_from_one_address_are_not_all_checked(stored_password_admin: Admin) -> None:
    admin = stored_password_admin
    forms = [await sign_in_form(admin) for _ in range(GUESSES)]
    started = time.perf_counter()
    answers = await asyncio.gather(*(post_sign_in(admin, form, f"guess {i}") for i, form in enumerate(forms)))
    elapsed = time.perf_counter() - started
    statuses = [answer.status_code for answer in answers]
    checked = statuses.count(401)  # each 401 is one scrypt check; a 429 is answered before any
    print(f"\n{GUESSES} concurrent wrong sign-ins: {checked} checked, {statuses.count(429)} refused, {elapsed:.2f} s")
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= checked <= admin.auth.throttle.free, statuses
    refused = [answer for answer in answers if answer.status_code == 429]
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert re.search(
            r"(A sign-in from this address is still being checked|Too many failed sign-ins from this address)",
            answer.text,
        )
    assert any("still being checked; try again in 1 seconds" in answer.text for answer in refused)
    # The right password once the address may try again.
    wait = admin.auth.throttle.retry_after(CLIENT_ADDRESS[0])
    await asyncio.sleep(wait)
    right = await post_sign_in(admin, await sign_in_form(admin), STORED_PASSWORD)
    assert right.status_code == 303 and SESSION_COOKIE in right.cookies


async def test_a_sign_in_form_is_good_for_one_attempt(stored_password_admin: Admin) -> None:
    admin = stored_password_admin
    form = await sign_in_form(admin)
    assert (await post_sign_in(admin, form, "wrong password")).status_code == 401
    replayed = await post_sign_in(admin, form, STORED_PASSWORD)  # the same pair, now with the right password
    assert replayed.status_code == 403 and "expired" in replayed.text
    assert SESSION_COOKIE not in replayed.cookies
    used = await sign_in_form(admin)
    assert (await post_sign_in(admin, used, STORED_PASSWORD)).status_code == 303
    again = await post_sign_in(admin, used, STORED_PASSWORD)
    assert again.status_code == 403 and SESSION_COOKIE not in again.cookies
    # Each refusal hands out a fresh form, which works.
    fresh = (hidden_csrf(again.text), again.cookies[LOGIN_COOKIE])
    assert (await post_sign_in(admin, fresh, STORED_PASSWORD)).status_code == 303


BAD_LOG_QUERIES = [
    ({"since": "0001-01-01T00:00+05:00"}, "since must be a date and time between years 1 and 9999"),
    ({"until": "9999-12-31T23:59-05:00"}, "until must be a date and time between years 1 and 9999"),
    ({"since": "2026-13-01"}, "since must be a date and time"),
    ({"before": "99999999999999999999999"}, "before must be a whole number from 0 to 9223372036854775807"),
    ({"before": "-1"}, "before must be a whole number from 0"),
    ({"before": "x"}, "before must be a whole number, not 'x'"),
    ({"count": "1e3"}, "count must be a whole number"),
    ({"outcome": "maybe"}, "outcome must be success or failure"),
    ({"operation": "Drop Tables"}, "operation must be one of Create User"),
    ({"q": "x" * 201}, "The search text is 201 characters long; the limit is 200"),
]


@pytest.mark.parametrize(("params", "detail"), BAD_LOG_QUERIES)
async def test_admin_api_log_query_parameters_get_a_clear_400(admin: Admin, params: dict, detail: str) -> None:
    response = await admin.client.get("/v1/admin/logs", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(("params", "detail"), [case for case in BAD_LOG_QUERIES if "count" not in case[0]])
async def test_console_log_filter_fields_get_a_clear_400(signed_in: Admin, params: dict, detail: str) -> None:
    response = await signed_in.client.get("/admin/logs", params=params)
    assert response.status_code == 400, response.text
    assert detail.replace("'", "&#39;") in response.text


async def test_log_ids_beyond_any_row_are_not_found(signed_in: Admin) -> None:
    huge = "99999999999999999999999"
    api = await signed_in.client.get(f"/v1/admin/logs/{huge}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 404 and "No provisioning log record" in api.json()["detail"]
    assert (await signed_in.client.get(f"/admin/logs/{huge}")).status_code == 404


async def test_a_key_selected_for_one_idp_is_refused_for_another(signed_in: Admin) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    api = signed_in.client
    key = (await api.post("/v1/admin/apikeys", json={"name": "only-one", "users_write": True}, headers=bearer)).json()
    first = await api.post("/v1/admin/idps", json={"name": "First", "api_key": key["id"]}, headers=bearer)
    assert first.status_code == 201
    second = await api.post("/v1/admin/idps", json={"name": "Second", "api_key": "only-one"}, headers=bearer)
    assert second.status_code == 409
    assert "already selected for IdP 'First'" in second.json()["detail"]
    names = [i["name"] for i in (await api.get("/v1/admin/idps", headers=bearer)).json()["Resources"]]
    assert names == ["First"]  # nothing created
    # Configure SCIM of another IdP with it: refused too, and that IdP keeps its own key.
    other_key = (await api.post("/v1/admin/apikeys", json={"name": "other"}, headers=bearer)).json()
    other = (await api.post("/v1/admin/idps", json={"name": "Other", "api_key": "other"}, headers=bearer)).json()
    moved = await api.put(f"/v1/admin/idps/{other['id']}/apikey", json={"api_key": key["id"]}, headers=bearer)
    assert moved.status_code == 409 and "a key belongs to one IdP" in moved.json()["detail"]
    assert (await api.get(f"/v1/admin/idps/{other['id']}", headers=bearer)).json()["api_key_id"] == other_key["id"]
    # Saving the key an IdP already has is fine.
    same = await api.put(f"/v1/admin/idps/{first.json()['id']}/apikey", json={"api_key": key["id"]}, headers=bearer)
    assert same.status_code == 200
    # The console: the form does not offer the taken key, and posting it anyway is refused.
    form = await api.get("/admin/idps/new")
    assert f'value="{key["id"]}"' not in form.text
    posted = await signed_in.post("/admin/idps", {"name": "Third", "icon": "key", "api_key": key["id"]})
    assert posted.status_code == 400 and "already selected for IdP" in posted.text
    scim = await signed_in.post(f"/admin/idps/{other['id']}/scim", {"api_key": key["id"]})
    assert scim.status_code == 409 and "a key belongs to one IdP" in scim.text


def test_cli_refuses_a_second_idp_for_a_key(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_cli(env, "apikey", "create", "--name", "Entra", "--write", "users,groups", "--json")
    assert run_cli(env, "idp", "create", "--name", "One", "--apikey", "Entra").returncode == 0
    second = run_cli(env, "idp", "create", "--name", "Two", "--apikey", "Entra")
    assert second.returncode == 2 and "API key 'Entra' is already selected for IdP 'One'" in second.stderr
    assert [i["name"] for i in json.loads(run_cli(env, "idp", "list", "--json").stdout)] == ["One"]


async def test_a_key_shared_by_two_idps_in_an_old_database_keeps_working_and_is_shown(tmp_path: Path) -> None:
    """A database from before a key belonged to one IdP: both IdPs keep signing in with it, and the
    console's IdP page says so and how to fix it."""
    settings = admin_settings(tmp_path)
    path = settings.database.path
    migrate(path)
    store = SqliteStore(path)
    await store.open()
    key, secret = await store.create_api_key("shared", "", True, True)
    first = await store.create_idp("Old one", "key", key.id)
    await store.close()
    with sqlite3.connect(path) as conn:  # as an older version allowed it
        conn.execute(
            "INSERT INTO idps (id, name, icon, api_key_id, created) VALUES ('second', 'Old two', 'key', ?, '')",
            (key.id,),
        )
    store, app = await open_admin(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT_ADDRESS), base_url=BASE
        ) as client:
            for idp_id in (first.id, "second"):
                scim = await client.get(f"/v1/scim/{idp_id}/Users", headers={"Authorization": f"Bearer {secret}"})
                assert scim.status_code == 200
            admin = Admin(client, store, app, settings)
            assert (await admin.sign_in()).status_code == 303
            page = await client.get(f"/admin/idps/{first.id}")
            warning = re.search(r'<div class="warning" id="key-shared">(.*?)</div>', page.text, re.S)
            assert warning and "<strong>Old two</strong>" in warning.group(1)
            assert "Create a key for this IdP" in warning.group(1)
    finally:
        await store.close()


def test_used_sign_in_forms_are_remembered_until_they_expire_within_a_bound() -> None:
    now = [1000.0]
    used = UsedTokens(clock=lambda: now[0], max_tokens=3)
    assert used.use("a", 1100.0) and not used.use("a", 1100.0)
    now[0] = 1100.0  # "a" has expired: its signature is refused by now, so it is forgotten
    assert used.use("b", 1200.0) and "a" not in used.used
    for token in ("c", "d", "e"):
        assert used.use(token, 1300.0)
    assert len(used.used) == 3 and not used.use("e", 1300.0)
