"""In a real browser (headless Chromium, as tests/admin/test_admin_browser.py): the care of an IdP
that is already provisioning: Test connection, a key rotation without a gap, a rename, fault
injection, a clear."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.admin.test_admin_browser import check_page, navigate, wait_until
from tests.live_server import Server


def test_admin_tests_rotates_renames_and_clears_an_idp(server: Server, browser: WebDriver) -> None:
    driver, base = browser, server.base
    find = driver.find_element
    old = server.cli_json("apikey", "create", "--name", "Entra 2026", "--write", "users,groups")
    new = server.cli_json("apikey", "create", "--name", "Entra 2027", "--write", "users,groups")
    idp = server.cli_json("idp", "create", "--name", "Contoso", "--apikey", old["id"])
    assert server.cli("seed", "--idp", idp["id"], "--users", "30", "--groups", "4").returncode == 0

    def scim_status(secret: str) -> int:
        return httpx.get(f"{idp['tenant_url']}/Users", headers={"Authorization": f"Bearer {secret}"}).status_code

    driver.get(f"{base}/admin/login")
    find(By.ID, "password").send_keys(server.extra["password"])
    navigate(driver, find(By.ID, "sign-in"))
    driver.get(f"{base}/admin/idps/{idp['id']}")

    # Test connection with the secret Entra was given: every step passes, shown one by one.
    navigate(driver, find(By.ID, "test-connection"))
    find(By.ID, "test-secret").send_keys(old["secret"])
    navigate(driver, find(By.ID, "run-test"))
    assert find(By.ID, "test-verdict").text.startswith("Passed")
    steps = driver.find_elements(By.CSS_SELECTOR, "#test-report tr.test-step")
    assert len(steps) == 3 and all("Passed" in step.text for step in steps)
    check_page(
        driver, "idp-test", ("#test-secret", "#run-test", "#test-verdict", "tr.test-step td[data-label='Result']")
    )
    find(By.ID, "test-secret").send_keys(new["secret"])  # not this IdP's key (yet): the fix says whose it is
    navigate(driver, find(By.ID, "run-test"))
    assert find(By.ID, "test-verdict").text.startswith("Failed")
    assert "Entra 2027" in find(By.CSS_SELECTOR, "#test-report tr.test-fix").text

    # Rotation: a second key, both sign in, revoke the old one, the second is the IdP's key.
    driver.get(f"{base}/admin/idps/{idp['id']}")
    Select(find(By.ID, "second-key-select")).select_by_visible_text("Entra 2027")
    navigate(driver, find(By.ID, "add-second-key"))
    assert "Second key added" in find(By.CSS_SELECTOR, ".notice").text
    assert "Entra 2027" in find(By.ID, "second-key").text
    assert scim_status(old["secret"]) == 200 and scim_status(new["secret"]) == 200
    driver.get(f"{base}/admin/keys/{old['id']}/revoke")
    assert "keeps signing in" in find(By.CSS_SELECTOR, ".rotation-ends").text
    navigate(driver, find(By.ID, "confirm-revoke"))
    assert scim_status(old["secret"]) == 401 and scim_status(new["secret"]) == 200
    driver.get(f"{base}/admin/idps/{idp['id']}")
    assert "API key: Entra 2027" in find(By.ID, "configure-scim").text
    assert not driver.find_elements(By.ID, "second-key")

    # Rename: the tenant URL stays.
    navigate(driver, find(By.ID, "rename-idp"))
    name = find(By.ID, "idp-name")
    name.clear()
    name.send_keys("Contoso production")
    check_page(driver, "idp-rename", ("#idp-name", ".icon-grid", "#save-name"))
    navigate(driver, find(By.ID, "save-name"))
    assert find(By.TAG_NAME, "h1").text == "Contoso production"
    assert find(By.ID, "idp-id").text == idp["id"]

    # Fault injection: the throttle preset, its banner on every page, the injected answers in the log, off.
    driver.get(f"{base}/admin/idps/{idp['id']}")
    assert find(By.ID, "no-faults")
    navigate(driver, find(By.ID, "preset-throttle"))
    assert "Fault rule on" in find(By.CSS_SELECTOR, ".notice").text
    assert "429 Too Many Requests (Retry-After 5) on 25% of all requests" in find(By.ID, "fault-rules").text
    check_page(driver, "idp-faults", ("#fault-banner", "#fault-rules", "#faults-off", "#preset-quarantine"))
    statuses = [scim_status(new["secret"]) for _ in range(8)]
    assert statuses.count(429) == 2
    driver.get(f"{base}/admin/logs")
    assert "Contoso production" in find(By.ID, "fault-banner").text

    def marked() -> bool:
        driver.refresh()
        return len(driver.find_elements(By.CSS_SELECTOR, "#logs .badge.injected")) == 2

    wait_until(marked, "the injected answers in the log")
    driver.get(f"{base}/admin/idps/{idp['id']}")
    navigate(driver, find(By.ID, "faults-off"))
    assert "Fault rules off" in find(By.CSS_SELECTOR, ".notice").text
    assert not driver.find_elements(By.ID, "fault-banner")
    assert all(scim_status(new["secret"]) == 200 for _ in range(4))

    # Clear: asks first, then the directory is empty and the same secret still signs in.
    navigate(driver, find(By.ID, "clear-idp"))
    assert "30 users" in find(By.TAG_NAME, "main").text and "4 groups" in find(By.TAG_NAME, "main").text
    check_page(driver, "idp-clear", ("#confirm-clear",))
    navigate(driver, find(By.ID, "confirm-clear"))
    assert "Users and groups cleared" in find(By.CSS_SELECTOR, ".notice").text
    assert "0 users · 0 groups" in find(By.CSS_SELECTOR, ".lede").text
    listed = httpx.get(f"{idp['tenant_url']}/Users", headers={"Authorization": f"Bearer {new['secret']}"})
    assert listed.status_code == 200 and listed.json()["totalResults"] == 0
