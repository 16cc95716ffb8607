"""Console sign-in, sessions, sign-out, CSRF and throttling, seen from a browser's side (HTTP)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import (
    BASE,
    CLIENT_ADDRESS,
    PASSWORD,
    Admin,
    admin_settings,
    hidden_csrf,
    open_admin,
)
from web.admin.auth import LOGIN_COOKIE, SESSION_COOKIE
from web.admin.service import PASSWORD_SETTING, AdminService

# Every console page and form, with a path that exists once `ids` are filled in.
PAGES = [
    "/admin/",
    "/admin/keys",
    "/admin/idps",
    "/admin/idps/new",
    "/admin/idps/{idp}",
    "/admin/idps/{idp}/users",
    "/admin/idps/{idp}/groups",
    "/admin/idps/{idp}/users/{user}",
    "/admin/idps/{idp}/groups/{group}",
    "/admin/idps/{idp}/delete",
    "/admin/keys/{key}/revoke",
    "/admin/directory",
    "/admin/logs",
    "/admin/logs/1",
]
FORMS = [
    "/admin/keys",
    "/admin/keys/{key}/revoke",
    "/admin/idps",
    "/admin/idps/{idp}/scim",
    "/admin/idps/{idp}/delete",
    "/admin/logout",
]


def cookie_header(response: httpx.Response, name: str) -> str:
    found = [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return found[0]


async def fixtures_for_routes(admin: Admin) -> dict[str, str]:
    tenant = await admin.idp_with_key()
    user = (
        await tenant.scim.post(
            "/Users", json={"userName": "alice@contoso.com", "name": {"givenName": "Alice", "familyName": "Smith"}}
        )
    ).json()
    group = (await tenant.scim.post("/Groups", json={"displayName": "Sales"})).json()
    await admin.flush_logs()
    return {"idp": tenant.idp_id, "user": user["id"], "group": group["id"], "key": tenant.key_id}


async def test_sign_in_sets_a_strict_http_only_session_cookie(admin: Admin) -> None:
    page = await admin.client.get("/admin/login")
    assert page.status_code == 200
    assert 'type="password"' in page.text
    login_cookie = cookie_header(page, LOGIN_COOKIE).lower()
    assert "httponly" in login_cookie and "samesite=strict" in login_cookie and "secure" in login_cookie

    response = await admin.client.post(
        "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD, "next": "/admin/keys"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/keys"
    session_cookie = cookie_header(response, SESSION_COOKIE).lower()
    for flag in ("httponly", "samesite=strict", "secure", "path=/"):
        assert flag in session_cookie
    keys = await admin.client.get("/admin/keys")
    assert keys.status_code == 200 and "Add API key" in keys.text


async def test_cookie_is_not_secure_over_plain_http(tmp_path: Path) -> None:
    settings = admin_settings(tmp_path)
    store, app = await open_admin(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT_ADDRESS), base_url="http://127.0.0.1:8000"
        ) as client:
            page = await client.get("/admin/login")
            response = await client.post(
                "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD}
            )
            assert response.status_code == 303
            assert "secure" not in cookie_header(response, SESSION_COOKIE).lower()
            assert (await client.get("/admin/")).status_code == 200
    finally:
        await store.close()


async def test_wrong_password_is_refused_and_gives_no_session(admin: Admin) -> None:
    response = await admin.sign_in("not the password")
    assert response.status_code == 401
    assert "Wrong password" in response.text
    assert not [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
    home = await admin.client.get("/admin/")
    assert home.status_code == 303 and home.headers["location"].startswith("/admin/login")


async def test_empty_password_is_refused(admin: Admin) -> None:
    assert (await admin.sign_in("")).status_code == 401


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_sign_in_form_without_its_csrf_token_is_refused(admin: Admin, token: str | None) -> None:
    await admin.client.get("/admin/login")
    data = {"password": PASSWORD} if token is None else {"password": PASSWORD, "csrf_token": token}
    response = await admin.client.post("/admin/login", data=data)
    assert response.status_code == 403
    assert "expired" in response.text
    assert (await admin.client.get("/admin/")).status_code == 303


async def test_sign_in_form_token_without_its_cookie_is_refused(admin: Admin) -> None:
    page = await admin.client.get("/admin/login")
    admin.client.cookies.clear()
    response = await admin.client.post(
        "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD}
    )
    assert response.status_code == 403


async def test_sign_in_is_throttled_after_repeated_failures(admin: Admin) -> None:
    now = [1000.0]
    admin.auth.throttle.clock = lambda: now[0]
    for _ in range(5):
        assert (await admin.sign_in("wrong password")).status_code == 401
    # Locked out now: even the right password is not checked until the lock-out passes.
    locked = await admin.sign_in(PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in locked.text
    now[0] += 1.5
    assert (await admin.sign_in("wrong again")).status_code == 401
    # Each further failure doubles the lock-out: 2 s now.
    now[0] += 1.5
    assert (await admin.sign_in(PASSWORD)).status_code == 429
    now[0] += 1.0
    assert (await admin.sign_in(PASSWORD)).status_code == 303


async def test_throttle_is_per_client_address(tmp_path: Path, admin: Admin) -> None:
    admin.auth.throttle.clock = lambda: 50.0
    for _ in range(6):
        await admin.sign_in("wrong password")
    assert (await admin.sign_in(PASSWORD)).status_code == 429
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=admin.app, client=("198.51.100.9", 1)), base_url=BASE)
    async with other:
        elsewhere = Admin(other, admin.store, admin.app, admin.settings)
        assert (await elsewhere.sign_in(PASSWORD)).status_code == 303


async def test_sign_in_makes_a_new_session_id_every_time(signed_in: Admin) -> None:
    first = signed_in.client.cookies[SESSION_COOKIE]
    # A signed-in browser asking for /admin/login is sent on into the console.
    assert (await signed_in.client.get("/admin/login")).headers["location"] == "/admin/"
    signed_in.client.cookies.delete(SESSION_COOKIE)
    page = await signed_in.client.get("/admin/login")
    signed_in.client.cookies.set(SESSION_COOKIE, first, domain="scim.test")
    response = await signed_in.client.post(
        "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD}
    )
    assert response.status_code == 303
    second = signed_in.client.cookies[SESSION_COOKIE]
    assert second != first
    # The session presented at sign-in is ended, so a planted or stolen id is worth nothing.
    signed_in.client.cookies.set(SESSION_COOKIE, first, domain="scim.test")
    assert (await signed_in.client.get("/admin/")).status_code == 303


async def test_sign_out_ends_the_session_on_the_server(signed_in: Admin) -> None:
    cookie = signed_in.client.cookies[SESSION_COOKIE]
    response = await signed_in.post("/admin/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?notice=signed-out"
    assert "max-age=0" in cookie_header(response, SESSION_COOKIE).lower()
    login = await signed_in.client.get(response.headers["location"])
    assert "You are signed out" in login.text
    # Replaying the old cookie does not bring the session back.
    signed_in.client.cookies.set(SESSION_COOKIE, cookie, domain="scim.test")
    assert (await signed_in.client.get("/admin/keys")).status_code == 303


async def test_sign_out_needs_the_csrf_token(signed_in: Admin) -> None:
    assert (await signed_in.post("/admin/logout", csrf="")).status_code == 403
    assert (await signed_in.client.get("/admin/")).status_code == 200


async def test_tampered_or_expired_session_cookies_are_refused(signed_in: Admin) -> None:
    cookie = signed_in.client.cookies[SESSION_COOKIE]
    signed_in.client.cookies.set(
        SESSION_COOKIE, cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"), domain="scim.test"
    )
    assert (await signed_in.client.get("/admin/")).status_code == 303
    signed_in.client.cookies.set(SESSION_COOKIE, cookie, domain="scim.test")
    assert (await signed_in.client.get("/admin/")).status_code == 200
    with sqlite3.connect(signed_in.settings.database.path) as conn:
        conn.execute("UPDATE admin_sessions SET expires = '2000-01-01T00:00:00.000Z'")
    assert (await signed_in.client.get("/admin/")).status_code == 303


async def test_after_sign_in_next_only_leads_into_the_console(admin: Admin) -> None:
    for target in ("https://evil.example/", "//evil.example/admin/", "/elsewhere", "/admin\\@evil"):
        admin.client.cookies.clear()
        page = await admin.client.get("/admin/login")
        response = await admin.client.post(
            "/admin/login", data={"csrf_token": hidden_csrf(page.text), "password": PASSWORD, "next": target}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/"


async def test_every_page_without_a_session_leads_to_sign_in(admin: Admin) -> None:
    ids = await fixtures_for_routes(admin)
    for page in PAGES:
        path = page.format(**ids)
        response = await admin.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=")


async def test_every_form_without_a_session_changes_nothing(admin: Admin) -> None:
    ids = await fixtures_for_routes(admin)
    for form in FORMS:
        path = form.format(**ids)
        response = await admin.client.post(path, data={"name": "x", "api_key": ids["key"], "csrf_token": "x"})
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login")
    assert [k.name for k in await admin.store.list_api_keys()] == ["Entra key"]
    assert not (await admin.store.list_api_keys())[0].revoked
    assert [i.id for i in await admin.store.list_idps()] == [ids["idp"]]


async def test_every_form_refuses_a_missing_or_wrong_csrf_token(signed_in: Admin) -> None:
    ids = await fixtures_for_routes(signed_in)
    for form in FORMS:
        path = form.format(**ids)
        for token in ("", "0" * 43):
            response = await signed_in.post(path, {"name": "new", "icon": "key", "api_key": ids["key"]}, csrf=token)
            assert response.status_code == 403, path
            assert "security token" in response.text
    assert [k.name for k in await signed_in.store.list_api_keys()] == ["Entra key"]
    assert not (await signed_in.store.list_api_keys())[0].revoked
    assert [i.id for i in await signed_in.store.list_idps()] == [ids["idp"]]
    assert (await signed_in.client.get("/admin/")).status_code == 200  # still signed in


async def test_pages_carry_security_headers(signed_in: Admin) -> None:
    for path in ("/admin/", "/admin/login", "/admin/keys"):
        response = await signed_in.client.get(path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


async def test_static_files_and_unknown_pages(signed_in: Admin) -> None:
    css = await signed_in.client.get("/admin/static/admin.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    js = await signed_in.client.get("/admin/static/admin.js")
    assert js.status_code == 200 and "data-copy" in js.text
    missing = await signed_in.client.get("/admin/no-such-page")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"] and "Page not found" in missing.text
    assert (await signed_in.client.delete("/admin/keys")).status_code == 405


async def test_oversized_form_is_refused(signed_in: Admin) -> None:
    response = await signed_in.post("/admin/keys", {"name": "big", "description": "x" * 70_000})
    assert response.status_code == 413
    assert [k.name for k in await signed_in.store.list_api_keys()] == []


async def test_generated_password_is_stored_only_as_a_salted_hash(tmp_path: Path) -> None:
    settings = admin_settings(tmp_path, SCIMLET_ADMIN_PASSWORD=None)
    store, app = await open_admin(settings)
    try:
        service = AdminService(store, settings)
        password = await service.ensure_admin_password()
        assert password and len(password) >= 20
        assert await service.ensure_admin_password() is None  # only the first start makes one
        stored = await store.get_setting(PASSWORD_SETTING)
        assert stored.startswith("scrypt$") and password not in stored
        for file in Path(settings.database.path).parent.glob("admin.db*"):
            assert password.encode() not in file.read_bytes()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT_ADDRESS), base_url=BASE
        ) as client:
            admin = Admin(client, store, app, settings)
            assert (await admin.sign_in("wrong password here")).status_code == 401
            assert (await admin.sign_in(password)).status_code == 303
            # A new password (the CLI's `admin password`) ends every session.
            await service.set_admin_password("another long password")
            assert (await client.get("/admin/")).status_code == 303
            assert (await admin.sign_in(password)).status_code == 401
            assert (await admin.sign_in("another long password")).status_code == 303
    finally:
        await store.close()


async def test_without_any_password_nobody_signs_in(tmp_path: Path) -> None:
    settings = admin_settings(tmp_path, SCIMLET_ADMIN_PASSWORD=None)
    store, app = await open_admin(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT_ADDRESS), base_url=BASE
        ) as client:
            assert (await Admin(client, store, app, settings).sign_in("")).status_code == 401
            assert (await Admin(client, store, app, settings).sign_in("anything")).status_code == 401
    finally:
        await store.close()
