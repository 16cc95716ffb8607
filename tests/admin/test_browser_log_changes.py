"""In a real browser (headless Chromium, as tests/admin/test_admin_browser.py): a log record's page
shows what a write changed, attribute by attribute and a group's members; the log page's Export
downloads the filtered records as CSV and as NDJSON files."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.admin.test_admin_browser import check_page, navigate, wait_until
from tests.conftest import GROUP_SCHEMA, entra_user, patch_body
from tests.live_server import Server


def downloaded(directory: Path, suffix: str) -> Path:
    """The one finished download with this suffix (Chromium writes .crdownload until done)."""
    found: list[Path] = []

    def done() -> bool:
        found[:] = [p for p in directory.glob(f"*{suffix}") if not p.name.endswith(".crdownload")]
        return len(found) == 1 and found[0].stat().st_size > 0

    wait_until(done, f"the {suffix} download")
    time.sleep(0.2)  # the file is renamed once complete; its size is final by then
    return found[0]


def test_a_records_changes_and_the_export_in_a_browser(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    driver, base = browser, server.base
    find = driver.find_element
    key = server.cli_json("apikey", "create", "--name", "Diff key", "--write", "users,groups")
    idp = server.cli_json("idp", "create", "--name", "Diff", "--apikey", key["id"])
    scim = httpx.Client(base_url=idp["tenant_url"], headers={"Authorization": f"Bearer {key['secret']}"}, timeout=10)
    user = scim.post("/Users", json=entra_user("diff@contoso.com", title="Pilot")).json()["id"]
    change = patch_body({"op": "replace", "path": "title", "value": "Captain"})
    assert scim.patch(f"/Users/{user}", json=change).status_code in (200, 204)
    group = scim.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Crew"}).json()["id"]
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user}]})
    assert scim.patch(f"/Groups/{group}", json=add).status_code == 204

    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    driver.get(f"{base}/admin/login")
    find(By.ID, "password").send_keys(server.extra["password"])
    navigate(driver, find(By.ID, "sign-in"))

    def record_page(operation: str) -> None:
        """The newest record of this operation, opened from the log page as an admin would."""
        driver.get(f"{base}/admin/logs?idp={idp['id']}")
        wait_until(lambda: operation in find(By.CSS_SELECTOR, "#logs tbody").text, f"the {operation} record")
        row = next(
            r for r in find(By.CSS_SELECTOR, "#logs tbody").find_elements(By.TAG_NAME, "tr") if operation in r.text
        )
        navigate(driver, row.find_element(By.TAG_NAME, "a"))

    record_page("Update User")
    changes = find(By.ID, "changes").text
    assert "title" in changes and "Pilot" in changes and "Captain" in changes
    before = find(By.CSS_SELECTOR, "#changes .change-before").text
    after = find(By.CSS_SELECTOR, "#changes .change-after").text
    assert "Pilot" in before and "Captain" in after
    check_page(driver, "log-changes", ("#changes",))

    record_page("Add members")
    members = find(By.ID, "changes").text
    assert "members" in members and "0 removed" in members and "1 added" in members

    # Export: the log page's CSV and NDJSON buttons download what the filters match.
    driver.get(f"{base}/admin/logs?idp={idp['id']}")
    find(By.ID, "export-csv").click()
    rows = list(csv.DictReader(downloaded(tmp_path, ".csv").open(encoding="utf-8")))
    assert {r["target"] for r in rows} >= {"diff@contoso.com", "Crew"}
    assert len(rows) == 4 and all(r["status"] in ("200", "201", "204") for r in rows)
    find(By.ID, "export-ndjson").click()
    lines = downloaded(tmp_path, ".ndjson").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 and {r["idp_id"] for r in records} == {idp["id"]}
