"""Request shapes of docs/entra.md and the checks the replay suite makes on answers."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote_plus

import httpx

from tests.conftest import GROUP_SCHEMA, PATCH_SCHEMA, entra_user

SCIM_JSON = "application/scim+json"
ENTRA_JSON = "application/scim+json; charset=utf-8"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
MS_GROUP_SCHEMA = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
FLAG = "aadOptscim062020"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upn(prefix: str = "user") -> str:
    """A userPrincipalName as Entra sends it as userName."""
    return f"{unique(prefix)}@contoso.com"


def eq_filter(attribute: str, value: str) -> str:
    """A form-encoded filter query string, as Entra sends it: filter=userName+eq+%22...%22."""
    return "filter=" + quote_plus(f'{attribute} eq "{value}"')


def send(
    http: httpx.Client, method: str, url: str, body: object | None = None, content_type: str = ENTRA_JSON
) -> httpx.Response:
    """A request with a JSON body sent as Entra does: serialised by hand, with Entra's Content-Type."""
    if body is None:
        return http.request(method, url)
    return http.request(method, url, content=json.dumps(body).encode(), headers={"Content-Type": content_type})


def user_body(user_name: str, **extra: object) -> dict:
    """The create body of docs/entra.md ("Creating users"), with a GUID externalId."""
    body = entra_user(
        user_name, externalId=str(uuid.uuid4()), emails=[{"primary": True, "type": "work", "value": user_name}]
    )
    body.update(extra)
    return body


def group_body(display_name: str) -> dict:
    return {
        "schemas": [GROUP_SCHEMA, MS_GROUP_SCHEMA],
        "externalId": str(uuid.uuid4()),
        "displayName": display_name,
        "meta": {"resourceType": "Group"},
    }


def patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def create_user(http: httpx.Client, user_name: str | None = None, **extra: object) -> dict:
    response = send(http, "POST", "/Users", user_body(user_name or upn(), **extra))
    assert response.status_code == 201, response.text
    return response.json()


def create_group(http: httpx.Client, display_name: str | None = None) -> dict:
    response = send(http, "POST", "/Groups", group_body(display_name or unique("Group")))
    assert response.status_code == 201, response.text
    return response.json()


def get_user(http: httpx.Client, user_id: str) -> dict:
    response = http.get(f"/Users/{user_id}")
    assert response.status_code == 200, response.text
    return response.json()


def member_ids(http: httpx.Client, group_id: str) -> set[str]:
    response = http.get(f"/Groups/{group_id}")
    assert response.status_code == 200, response.text
    return {member["value"] for member in response.json().get("members", [])}


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict:
    """A SCIM error body (RFC 7644 §3.12) with the status, scimType and a detail an admin can act on."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert isinstance(body.get("detail"), str) and len(body["detail"]) > 10
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


def work_phone(resource: dict) -> str | None:
    phones = [p["value"] for p in resource.get("phoneNumbers", []) if p.get("type") == "work"]
    assert len(phones) <= 1, resource
    return phones[0] if phones else None


def work_email(resource: dict) -> str | None:
    emails = [e["value"] for e in resource.get("emails", []) if e.get("type") == "work"]
    assert len(emails) <= 1, resource
    return emails[0] if emails else None
