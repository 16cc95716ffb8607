"""End to end in a real browser: headless Chromium (Debian's, driven by its chromedriver) against a
live `python app.py serve`, the way an admin wires scimlet up for Entra.

Every main page is checked at 420 px (a phone), 1280 px and 1600 px wide: nothing wider than the
viewport, its key columns and controls on screen. With SCIMLET_SCREENSHOTS=1 (`make screenshots`) it provisions a
fuller directory and saves a PNG of each main page at both widths under docs/screenshots/.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable

import httpx
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import ROOT, entra_user, patch_body
from tests.live_server import Server

SCREENSHOTS = ROOT / "docs" / "screenshots"
ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


def wait_until(check: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def navigate(driver: WebDriver, element: WebElement) -> None:
    """Click something that loads a new page, and wait until that page has replaced the old one."""
    driver.execute_script("window.scimletOldPage = true")
    element.click()

    def loaded() -> bool:
        try:  # a navigation replaces the window object, and with it the marker
            return driver.execute_script("return !window.scimletOldPage && document.readyState === 'complete'")
        except WebDriverException:  # asked in the middle of the navigation
            return False

    wait_until(loaded, "the next page")


# A phone, and a wide monitor; between them a laptop at 1280 px, where the tables used to scroll sideways.
NARROW, LAPTOP, WIDE = 420, 1280, 1600
WIDTHS = (NARROW, LAPTOP, WIDE)
# Every element whose box reaches past the viewport's right edge (or is wider than it), described enough
# to find it; clientWidth, not innerWidth: a vertical scrollbar takes its width from the page.
OVERFLOWING_ELEMENTS = """
const width = document.documentElement.clientWidth;
const found = [];
for (const element of document.querySelectorAll("body *")) {
  const box = element.getBoundingClientRect();
  if (box.width > 0 && (box.right > width + 0.5 || box.width > width + 0.5)) {
    const named = typeof element.className === "string" && element.className;
    const classes = named ? "." + element.className.trim().replace(/\\s+/g, ".") : "";
    const id = element.id ? "#" + element.id : "";
    found.push(`${element.tagName.toLowerCase()}${id}${classes} right=${Math.round(box.right)}`);
  }
}
return {width: width, scrollWidth: document.documentElement.scrollWidth, found: found.slice(0, 8)};
"""


def set_viewport(driver: WebDriver, width: int, height: int = 900) -> None:
    """The page laid out for exactly that viewport, as a phone or a wide monitor shows it."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def reset_viewport(driver: WebDriver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def assert_fits(driver: WebDriver, page: str, width: int) -> None:
    report = driver.execute_script(OVERFLOWING_ELEMENTS)
    assert report["scrollWidth"] <= report["width"] and not report["found"], (
        f"{page} at {width} px scrolls sideways: the page is {report['scrollWidth']} px wide for {report['width']} px; "
        f"past the right edge: {report['found']}"
    )


def assert_shown(driver: WebDriver, page: str, width: int, selectors: tuple[str, ...]) -> None:
    for selector in selectors:
        elements = driver.find_elements(By.CSS_SELECTOR, selector)
        assert elements, f"{page}: nothing matches {selector}"
        assert all(element.is_displayed() for element in elements), f"{page} at {width} px hides {selector}"


def shoot(driver: WebDriver, name: str, width: int) -> None:
    """A PNG of the page from its top for the README, its full height (at most 1500 px; 2600 px at 420)."""
    if os.environ.get("SCIMLET_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    set_viewport(driver, width, min(max(900, height), 1500 if width == WIDE else 2600))
    driver.save_screenshot(str(SCREENSHOTS / (f"{name}.png" if width == WIDE else f"{name}-{width}.png")))
    set_viewport(driver, width)


def check_page(driver: WebDriver, page: str, key: tuple[str, ...], wide: tuple[str, ...] = ()) -> None:
    """The page at 420, 1280 and 1600 px: it fits, its key elements (CSS selectors) are on screen at each
    width, and the columns a narrower screen leaves out (wide) are back at 1600 px. PNGs at 420 and 1600."""
    try:
        for width in WIDTHS:
            set_viewport(driver, width)
            assert_fits(driver, page, width)
            assert_shown(driver, page, width, key + (wide if width == WIDE else ()))
            if width != LAPTOP:
                shoot(driver, page, width)
    finally:
        reset_viewport(driver)


def fuller_directory(scim: httpx.Client, user_ids: list[str]) -> None:
    """A directory that looks like a small company, for the screenshots only."""
    rng = random.Random(7)
    given = ["Adele", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kaja", "Liam"]
    family = ["Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen"]
    for i in range(30):
        first, last = rng.choice(given), rng.choice(family)
        body = entra_user(
            f"{first}.{last}{i}@contoso.com".lower(),
            name={"givenName": first, "familyName": last},
            active=i % 9 != 4,
            phoneNumbers=[{"type": "work", "value": f"+1617555{1200 + i}"}],
        )
        user_ids.append(scim.post("/Users", json=body).json()["id"])
    for name in ("Engineering", "Finance", "Support", "Marketing"):
        group = scim.post("/Groups", json={"displayName": name}).json()
        members = [{"value": v} for v in rng.sample(user_ids, 8)]
        scim.patch(f"/Groups/{group['id']}", json=patch_body({"op": "Add", "path": "members", "value": members}))
    scim.post("/Users", json=entra_user("bad.phone@contoso.com", phoneNumbers=[{"type": "work", "value": "555-0100"}]))


def test_admin_wires_up_entra_and_watches_it_provision(server: Server, browser: WebDriver) -> None:
    driver, base = browser, server.base
    find = driver.find_element

    # Sign in with the password the first start printed.
    driver.get(f"{base}/admin/")
    assert driver.current_url.startswith(f"{base}/admin/login")
    check_page(driver, "sign-in", ("#password", "#sign-in"))
    find(By.ID, "password").send_keys("not the password")
    navigate(driver, find(By.ID, "sign-in"))
    assert "Wrong password" in find(By.CSS_SELECTOR, ".error").text
    find(By.ID, "password").send_keys(server.extra["password"])
    navigate(driver, find(By.ID, "sign-in"))
    assert find(By.TAG_NAME, "h1").text == "Overview"

    # Administration -> API Keys: add a key with both Write privileges and read its secret once.
    navigate(driver, find(By.LINK_TEXT, "API keys"))
    find(By.ID, "key-name").send_keys("Entra production")
    find(By.ID, "key-description").send_keys("Contoso tenant, Meta Networks Connector app")
    for toggle in ("users-write", "groups-write"):
        assert find(By.ID, toggle).is_selected()  # both on by default: Entra needs both
    navigate(driver, find(By.ID, "add-key-button"))
    assert "will not be shown again" in find(By.CSS_SELECTOR, ".warning").text
    secret = find(By.ID, "secret").text
    assert len(secret) >= 40
    check_page(driver, "api-key-created", ("#secret", "button[data-copy='secret']"))

    # Settings -> IdP: create one with an icon and that key.
    driver.get(f"{base}/admin/idps/new")
    find(By.ID, "idp-name").send_keys("Contoso Entra ID")
    find(By.CSS_SELECTOR, "label[title='Four squares']").click()
    Select(find(By.ID, "idp-key")).select_by_visible_text("Entra production")
    check_page(driver, "idp-new", ("#idp-name", ".icon-grid", "#idp-key", "#create-idp"))
    navigate(driver, find(By.ID, "create-idp"))
    assert "IdP created" in find(By.CSS_SELECTOR, ".notice").text
    assert 'viewBox="0 0 24 24"' in find(By.CSS_SELECTOR, "h1 .idp-icon").get_attribute("innerHTML")

    # Copy the tenant URL with its button, as an admin pastes it into Entra.
    driver.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}
    )
    find(By.CSS_SELECTOR, "button[data-copy='tenant-url']").click()
    wait_until(lambda: find(By.CSS_SELECTOR, "button[data-copy='tenant-url']").text == "Copied", "the copy")
    tenant_url = driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('clipboard: ' + e))"
    )
    idp_id = find(By.ID, "idp-id").text
    assert tenant_url == f"{base}/v1/scim/{idp_id}"

    # The IdP's schema: declare an extension attribute through the form, then switch the profile.
    find(By.ID, "ext-urn").send_keys(ACME)
    find(By.ID, "ext-name").send_keys("costCenter")
    Select(find(By.ID, "ext-type")).select_by_visible_text("string")
    find(By.ID, "ext-description").send_keys("Where the cost is booked")
    navigate(driver, find(By.ID, "add-attribute-button"))
    assert f"Declared {ACME} (User): costCenter." in find(By.ID, "schema-changes").text
    row = find(By.CSS_SELECTOR, f".extension[data-urn='{ACME}'] tr[data-attribute='costCenter']")
    assert "string" in row.text and "Where the cost is booked" in row.text
    assert find(By.ID, "schema-profile").text == "meta-networks"
    find(By.ID, "profile-rfc7643").click()
    navigate(driver, find(By.ID, "save-rules"))
    assert "Schema profile meta-networks → rfc7643" in find(By.ID, "schema-changes").text
    assert find(By.ID, "schema-profile").text == "rfc7643"
    assert find(By.ID, "profile-rfc7643").is_selected()
    assert "0 of 0 stored users would not pass these rules" in find(By.ID, "failing-users").text
    driver.get(f"{base}/admin/idps/{idp_id}")
    check_page(
        driver,
        "idp",
        (
            "button[data-copy='tenant-url']",
            "#idp-id",
            "#save-scim",
            "tr[data-attribute='costCenter'] td[data-label='Attribute']",
            "tr[data-attribute='costCenter'] td[data-label='Type']",
            "tr[data-attribute='costCenter'] .actions button",
            "#add-attribute-button",
        ),
    )

    # Entra provisions through the tenant URL with the secret.
    with httpx.Client(base_url=tenant_url, headers={"Authorization": f"Bearer {secret}"}, timeout=10) as scim:
        probe = scim.get("/Users", params={"filter": 'userName eq "7d420df3-9995-4831-a406-ecf8166f5f6a"'})
        assert probe.json()["totalResults"] == 0
        user = scim.post(
            "/Users",
            json=entra_user(
                "ada.lovelace@contoso.com",
                name={"givenName": "Ada", "familyName": "Lovelace"},
                **{f"{ACME}:costCenter": "CC-1843"},
            ),
        )
        assert user.status_code == 201
        group = scim.post("/Groups", json={"displayName": "Analytical Engines"})
        assert group.status_code == 201
        added = scim.patch(
            f"/Groups/{group.json()['id']}",
            json=patch_body({"op": "Add", "path": "members", "value": [{"value": user.json()["id"]}]}),
        )
        assert added.status_code == 204
        if os.environ.get("SCIMLET_SCREENSHOTS") == "1":
            fuller_directory(scim, [user.json()["id"]])
        wrong = httpx.get(f"{tenant_url}/Users", headers={"Authorization": "Bearer not-the-secret"})
        assert wrong.status_code == 401

    # Directory: find the user and the group.
    navigate(driver, find(By.LINK_TEXT, "Users and groups"))
    check_page(driver, "directories", ("#directories td[data-label='IdP'] a", "#directories td[data-label='Users']"))
    navigate(driver, find(By.XPATH, "//table[@id='directories']//a[normalize-space()='Contoso Entra ID']"))
    find(By.ID, "search").send_keys("lovelace")
    navigate(driver, find(By.CSS_SELECTOR, "form.search button"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#users tbody tr")
    assert len(rows) == 1 and "ada.lovelace@contoso.com" in rows[0].text and "Analytical Engines" in rows[0].text
    navigate(driver, find(By.LINK_TEXT, "ada.lovelace@contoso.com"))
    assert '"userName": "ada.lovelace@contoso.com"' in find(By.ID, "scim-json").text
    assert "costCenter\nCC-1843" in find(By.ID, "extension-values").text
    check_page(driver, "user", ("h1", "#scim-json", "#extension-values", "dl.attrs dd"))
    driver.get(f"{base}/admin/idps/{idp_id}/users")
    check_page(
        driver,
        "users",
        ("#search", "#users td[data-label='userName'] a", "#users td[data-label='Active'] .badge"),
        ("#users td[data-label='Created (UTC)']",),
    )
    navigate(driver, find(By.LINK_TEXT, "Groups"))
    group_row = find(By.XPATH, "//table[@id='groups']//tr[td/a[text()='Analytical Engines']]")
    assert group_row.find_element(By.CSS_SELECTOR, "td.num").text == "1"
    check_page(
        driver,
        "groups",
        ("#groups td[data-label='displayName'] a", "#groups td[data-label='Members']"),
        ("#groups td[data-label='Created (UTC)']",),
    )
    navigate(driver, group_row.find_element(By.TAG_NAME, "a"))
    assert find(By.TAG_NAME, "h1").text == "Analytical Engines"
    check_page(driver, "group", ("#members td a", "#members td.id", "#scim-json"))

    # Provisioning logs: the operations in words, and the wrong token as a failure.
    driver.get(f"{base}/admin/logs")

    def logged() -> bool:
        driver.refresh()
        return "Add members" in find(By.ID, "logs").text

    wait_until(logged, "the provisioning log records")  # the log is written in batches every 0.5 s
    operations = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#logs tbody tr td:nth-child(4)")]
    # Entra's Test Connection is shown as the probe it is, not as a failure.
    for operation in ("Test connection probe", "Create User", "Create Group", "Add members", "List Users"):
        assert operation in operations
    check_page(
        driver,
        "logs",
        (
            "#filter-idp",
            "#apply-filters",
            "#logs td[data-label='Time'] a",
            "#logs td[data-label='Operation']",
            "#logs td[data-label='Status'] .badge",
            "#counters td[data-label='IdP'] a",
        ),
        ("#logs td[data-label='API key']", "#logs td[data-label='scimType']", "#logs td[data-label='ms']"),
    )
    Select(find(By.ID, "filter-outcome")).select_by_visible_text("Failure")
    Select(find(By.ID, "filter-idp")).select_by_visible_text("Contoso Entra ID")
    navigate(driver, find(By.ID, "apply-filters"))
    failures = driver.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
    unauthorized = [row for row in failures if "List Users" in row.text]
    assert len(unauthorized) == 1 and "401" in unauthorized[0].text
    assert all(re.search(r"\b[45]\d\d\b", row.text) for row in failures)
    navigate(driver, unauthorized[0].find_element(By.CSS_SELECTOR, "td a"))
    # The reason, for the admin only (the client got the uniform 401), with what to fix.
    reason = find(By.ID, "log-reason").text
    assert "the secret is not that of any API key" in reason and "this tenant URL is IdP 'Contoso Entra ID'" in reason
    assert "the client got the one 401 every failed sign-in gets" in reason
    assert "The bearer token is missing, unknown, revoked" in find(By.ID, "response-body").text
    if os.environ.get("SCIMLET_SCREENSHOTS") == "1":  # the README shows a record with a request body
        driver.get(f"{base}/admin/logs")  # all outcomes: the Failure filter has no successful Create User
        navigate(driver, find(By.XPATH, "//table[@id='logs']//tr[td[normalize-space()='Create User']]/td/a"))
    check_page(driver, "log-detail", ("h1 .badge", "#log-detail", "#log-reason"))

    navigate(driver, find(By.LINK_TEXT, "Overview"))
    assert "Contoso Entra ID" in find(By.CSS_SELECTOR, ".cards").text
    check_page(
        driver,
        "overview",
        (".idp-card h2 a", ".idp-card .stats", "#recent-failures td[data-label='Operation']"),
    )
    driver.get(f"{base}/admin/keys")
    check_page(
        driver,
        "api-keys",
        (
            "#api-keys td[data-label='Name'] strong",
            "#api-keys td[data-label='Privileges'] .badge",
            "#api-keys td[data-label='Status'] .badge",
            "#api-keys .actions a",
        ),
        ("#api-keys td[data-label='Created (UTC)']",),
    )
    driver.get(f"{base}/admin/idps")
    check_page(
        driver,
        "idps",
        ("#idps td[data-label='Name'] a", "#idps td[data-label='IdP ID']", "#idps td[data-label='API key']"),
        ("#idps td[data-label='Created (UTC)']",),
    )

    # At 420 px the sidebar is a bar with a menu button: the menu opens on it and navigates.
    set_viewport(driver, NARROW)
    try:
        logs_link = find(By.CSS_SELECTOR, ".sidebar nav a[href$='/logs']")
        assert not logs_link.is_displayed() and not find(By.ID, "sign-out").is_displayed()
        find(By.CSS_SELECTOR, "label[for='nav-toggle']").click()
        assert logs_link.is_displayed() and find(By.ID, "sign-out").is_displayed()
        assert_fits(driver, "the open menu", NARROW)
        shoot(driver, "menu", NARROW)
        navigate(driver, logs_link)
        assert find(By.TAG_NAME, "h1").text == "Provisioning logs"
        assert not find(By.CSS_SELECTOR, ".sidebar nav a[href$='/keys']").is_displayed()
    finally:
        reset_viewport(driver)

    navigate(driver, find(By.ID, "sign-out"))
    assert "You are signed out" in find(By.CSS_SELECTOR, ".notice").text
    driver.get(f"{base}/admin/keys")
    assert driver.current_url.startswith(f"{base}/admin/login")
