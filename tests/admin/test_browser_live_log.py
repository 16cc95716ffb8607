"""In a real browser (headless Chromium, as tests/admin/test_admin_browser.py): the provisioning log page
updates itself. A SCIM request made during the test appears without a reload; paused, it waits; resumed,
what came meanwhile arrives; the IdP page's activity chart and a user's timeline show the requests, and
its latest requests are live as well, as are the Overview's counters."""

from __future__ import annotations

import time

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.admin.test_admin_browser import check_page, navigate, wait_until
from tests.conftest import entra_user
from tests.live_server import Server


def test_the_log_page_shows_new_records_live(server: Server, browser: WebDriver) -> None:
    driver, base = browser, server.base
    find = driver.find_element
    key = server.cli_json("apikey", "create", "--name", "Live key", "--write", "users,groups")
    idp = server.cli_json("idp", "create", "--name", "Live", "--apikey", key["id"])
    scim = httpx.Client(base_url=idp["tenant_url"], headers={"Authorization": f"Bearer {key['secret']}"}, timeout=10)

    driver.get(f"{base}/admin/login")
    find(By.ID, "password").send_keys(server.extra["password"])
    navigate(driver, find(By.ID, "sign-in"))
    driver.get(f"{base}/admin/logs")
    assert find(By.ID, "live-toggle").text == "Pause"

    def rows() -> str:
        return find(By.CSS_SELECTOR, "#logs tbody").text

    # A request made now appears without a reload (the log is written every 0.5 s, read every 1 s).
    assert scim.post("/Users", json=entra_user("live1@contoso.com")).status_code == 201
    wait_until(lambda: "live1@contoso.com" in rows(), "the new record on the page")
    assert "Create User" in rows()

    # Paused: nothing comes; resumed: what was written meanwhile arrives, newest on top.
    find(By.ID, "live-toggle").click()
    assert find(By.ID, "live-toggle").text == "Resume"
    assert "Paused" in find(By.ID, "live-status").text
    assert scim.post("/Users", json=entra_user("live2@contoso.com")).status_code == 201
    time.sleep(2.5)
    assert "live2@contoso.com" not in rows()
    find(By.ID, "live-toggle").click()
    wait_until(lambda: "live2@contoso.com" in rows(), "the record written while paused")
    first = find(By.CSS_SELECTOR, "#logs tbody tr").text
    assert "live2@contoso.com" in first
    assert rows().count("live1@contoso.com") == 1  # resumed from the last row: nothing twice
    check_page(driver, "logs-live", ("#live-toggle", "#logs tbody tr"))

    # The IdP page's charts count the two creates; the user's page lists its requests.
    driver.get(f"{base}/admin/idps/{idp['id']}")
    assert "2 operations, 0 failures" in find(By.ID, "activity-1h").text
    check_page(driver, "idp-activity", ("#activity-1h svg", "#activity-7d figcaption"))
    # The IdP page's latest requests are live too.
    assert scim.get("/Users", params={"filter": 'userName eq "live3@contoso.com"'}).status_code == 200
    wait_until(
        lambda: "Find User" in find(By.CSS_SELECTOR, "#latest-requests tbody").text, "the lookup on the IdP page"
    )
    user_id = scim.get("/Users", params={"filter": 'userName eq "live1@contoso.com"'}).json()["Resources"][0]["id"]
    driver.get(f"{base}/admin/idps/{idp['id']}/users/{user_id}")
    assert "Create User" in find(By.ID, "timeline").text

    # The Overview's counters keep up by themselves.
    driver.get(f"{base}/admin/")
    counter = f"[data-counter='{idp['id']}:operations']"
    before = int(find(By.CSS_SELECTOR, counter).text)
    for n in range(3):
        assert scim.get(f"/Users/missing-{n}").status_code == 404
    wait_until(lambda: int(find(By.CSS_SELECTOR, counter).text) >= before + 3, "the Overview's counters", 15)
    assert int(find(By.CSS_SELECTOR, f"[data-counter='{idp['id']}:failures']").text) >= 3
    scim.close()
