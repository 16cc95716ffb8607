"""Test connection from the console and the admin API: Entra's three requests, run by the server
against its own tenant with the pasted secret, each step's answer and what to fix."""

from __future__ import annotations

import httpx

from tests.admin.conftest import BASE, TOKEN, Admin

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _test(admin: Admin, idp_id: str, secret: str) -> dict:
    async with httpx.AsyncClient(transport=admin.client._transport, base_url=f"{BASE}/v1/admin", headers=BEARER) as api:
        response = await api.post(f"/idps/{idp_id}/test-connection", json={"secret": secret})
        assert response.status_code == 200, response.text
        return response.json()


async def test_the_right_secret_passes_every_step(admin: Admin) -> None:
    tenant = await admin.idp_with_key()
    report = await _test(admin, tenant.idp_id, tenant.secret)
    assert report["passed"] is True and report["verdict"].startswith("Passed")
    assert [(s["name"], s["status"], s["passed"]) for s in report["steps"]] == [
        ("Users, by a random userName", 200, True),
        ("Groups, by a random displayName", 200, True),
        ("With a wrong secret token", 401, True),
    ]
    assert report["steps"][0]["request"].startswith("GET /Users?filter=userName%20eq%20")
    assert "excludedAttributes=members" in report["steps"][1]["request"]
    # The requests went through the SCIM app: the provisioning log has them as Test connection probes.
    await admin.flush_logs()
    logs = await admin.client.get("/v1/admin/logs", headers=BEARER, params={"idp": tenant.idp_id})
    operations = [record["operation"] for record in logs.json()["Resources"]]
    assert operations.count("Test connection") == 3


async def test_a_wrong_secret_fails_and_says_why(admin: Admin) -> None:
    tenant = await admin.idp_with_key("Entra")
    other = await admin.idp_with_key("Okta")
    report = await _test(admin, tenant.idp_id, other.secret)
    assert report["passed"] is False and report["verdict"].startswith("Failed")
    users = report["steps"][0]
    assert (users["status"], users["passed"]) == (401, False)
    # The fix names the key whose secret was pasted and the IdP it belongs to.
    assert "Okta key" in users["fix"] and "Okta" in users["fix"] and "Entra" in users["fix"]
    assert report["steps"][2]["passed"] is True  # a wrong token is still refused


async def test_a_key_without_the_groups_privilege_still_reads(admin: Admin) -> None:
    tenant = await admin.idp_with_key("Readers", groups=False)
    report = await _test(admin, tenant.idp_id, tenant.secret)
    assert report["passed"] is True


async def test_console_page_runs_the_test_and_shows_each_step(signed_in: Admin) -> None:
    tenant = await signed_in.idp_with_key()
    page = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}")
    assert f'href="/admin/idps/{tenant.idp_id}/test"' in page.text
    form = await signed_in.client.get(f"/admin/idps/{tenant.idp_id}/test")
    assert form.status_code == 200 and 'type="password"' in form.text and 'id="test-report"' not in form.text
    ran = await signed_in.post(f"/admin/idps/{tenant.idp_id}/test", {"secret": tenant.secret})
    assert ran.status_code == 200
    assert "Passed: Entra&#39;s Test Connection would succeed" in ran.text
    assert ran.text.count('class="test-step"') == 3 and "✗ Failed" not in ran.text
    assert tenant.secret not in ran.text  # what was pasted is not echoed back
    wrong = await signed_in.post(f"/admin/idps/{tenant.idp_id}/test", {"secret": "not-a-secret"})
    assert "Failed: Entra would refuse" in wrong.text and "What to fix:" in wrong.text
    assert "not that of any API key" in wrong.text
    forged = await signed_in.post(f"/admin/idps/{tenant.idp_id}/test", {"secret": tenant.secret}, csrf="nope")
    assert forged.status_code == 403
    missing = await signed_in.post("/admin/idps/no-such-idp/test", {"secret": "x"})
    assert missing.status_code == 404
