"""In a real browser (headless Chromium, as tests/admin/test_admin_browser.py): an admin adds an event
subscription on the IdP page, copies its secret, and sees a SCIM change reach the receiver, with the
event's SET and its attempt on the subscription's page; pausing shows on the page too."""

from __future__ import annotations

import httpx
import jwt
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.admin.test_admin_browser import check_page, navigate, wait_until
from tests.conftest import entra_user
from tests.live.test_events_live import Receiver
from tests.live_server import Server


def test_an_admin_subscribes_and_watches_events_arrive(server: Server, browser: WebDriver) -> None:
    driver, base = browser, server.base
    find = driver.find_element
    receiver = Receiver(lambda body: (202, b""))
    try:
        key = server.cli_json("apikey", "create", "--name", "Events key", "--write", "users,groups")
        idp = server.cli_json("idp", "create", "--name", "Events", "--apikey", key["id"])
        scim = httpx.Client(base_url=idp["tenant_url"], headers={"Authorization": f"Bearer {key['secret']}"})

        driver.get(f"{base}/admin/login")
        find(By.ID, "password").send_keys(server.extra["password"])
        navigate(driver, find(By.ID, "sign-in"))
        driver.get(f"{base}/admin/idps/{idp['id']}")
        assert find(By.ID, "no-subscriptions").is_displayed()
        find(By.ID, "subscription-url").send_keys(receiver.url)
        find(By.ID, "event-delete").click()  # unticked: every event but delete
        navigate(driver, find(By.ID, "add-subscription"))
        secret = find(By.ID, "subscription-secret").text
        navigate(driver, find(By.LINK_TEXT, "See the subscription"))
        page = driver.current_url

        assert scim.post("/Users", json=entra_user("watch@contoso.com")).status_code == 201
        wait_until(lambda: len(receiver.received) == 1, "the SET at the receiver")
        claims = jwt.decode(receiver.received[0], secret, algorithms=["HS256"], audience=receiver.url)
        assert (
            claims["events"]["urn:ietf:params:scim:event:prov:create:full"]["data"]["userName"] == "watch@contoso.com"
        )

        def delivered() -> bool:
            driver.get(page)
            return find(By.ID, "delivered").text == "1"

        wait_until(delivered, "the delivery on the subscription's page")
        assert find(By.ID, "pending").text == "0" and "create" in find(By.ID, "subscription-events").text
        find(By.CSS_SELECTOR, "#subscription-events details summary").click()
        shown = find(By.CSS_SELECTOR, "#subscription-events details").text
        assert "watch@contoso.com" in shown and "delivered · HTTP 202" in shown
        check_page(driver, "events-subscription", ("#subscription-counters", "#subscription-events"))

        navigate(driver, find(By.ID, "pause"))
        assert find(By.ID, "state").text == "paused" and find(By.ID, "subscription-paused").is_displayed()
        driver.get(f"{base}/admin/idps/{idp['id']}")
        assert "paused" in find(By.ID, "subscriptions").text
        check_page(driver, "idp-events", ("#events", "#add-subscription"))
    finally:
        receiver.shutdown()
