"""Users: Entra's create bodies and their tolerances, both PATCH dialects, disable, restore, delete."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ENTERPRISE, USER_SCHEMA
from tests.entra.shapes import (
    FLAG,
    assert_scim_error,
    create_user,
    eq_filter,
    get_user,
    patch,
    send,
    upn,
    user_body,
    work_email,
    work_phone,
)

LEGACY, MODERN = "legacy", FLAG
DIALECTS = [LEGACY, MODERN]


def op(dialect: str, name: str, path: str | None = None, value: object = None) -> dict:
    """One operation as the dialect spells it: capitalised ops in legacy, lower case with the flag."""
    operation: dict = {"op": name.capitalize() if dialect == LEGACY else name.lower()}
    if path is not None:
        operation["path"] = path
    if value is not None or path is None:
        operation["value"] = value
    return operation


def boolean(dialect: str, value: bool) -> object:
    """Legacy Entra sends booleans as the strings "True"/"False"."""
    return str(value) if dialect == LEGACY else value


def url(dialect: str, path: str) -> str:
    return f"{path}?{FLAG}" if dialect == MODERN else path


# --- create ------------------------------------------------------------------------------------


def test_create_returns_201_with_location_and_meta(http: httpx.Client) -> None:
    name = upn("create")
    response = send(http, "POST", "/Users", user_body(name))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["userName"] == name and body["id"]
    assert response.headers["location"] == body["meta"]["location"]
    assert body["meta"]["location"].endswith(f"/Users/{body['id']}")
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["created"] and body["meta"]["lastModified"] and body["meta"]["version"]
    assert body["emails"] == [{"primary": True, "type": "work", "value": name}]
    assert work_phone(body) == "+16175551212"
    assert get_user(http, body["id"]) == body


def test_create_tolerates_nulls_meta_roles_and_true_strings(http: httpx.Client) -> None:
    name = upn("tolerant")
    body = user_body(
        name,
        active="True",
        displayName=None,
        nickName=None,
        title=None,
        addresses=None,
        emails=[{"primary": "True", "type": "work", "value": name}, None],
        name={"givenName": "Ann", "familyName": "Lee", "middleName": None, "formatted": None},
        meta={"resourceType": "User", "created": "2001-01-01T00:00:00Z", "location": "https://elsewhere/x"},
        roles=[{"primary": "False", "type": "WindowsAzureActiveDirectoryRole", "value": "Reader"}],
    )
    body[ENTERPRISE] = {"department": None, "employeeNumber": "42", "manager": None}
    response = send(http, "POST", "/Users", body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["active"] is True
    assert created["emails"] == [{"primary": True, "type": "work", "value": name}]
    assert created["name"] == {"givenName": "Ann", "familyName": "Lee"}
    assert created["roles"] == [{"primary": False, "type": "WindowsAzureActiveDirectoryRole", "value": "Reader"}]
    assert created[ENTERPRISE] == {"employeeNumber": "42"}
    for absent in ("displayName", "nickName", "title", "addresses"):
        assert absent not in created
    assert not created["meta"]["created"].startswith("2001")
    assert "elsewhere" not in created["meta"]["location"]
    assert "null" not in response.text


def test_create_with_false_string_and_empty_roles(http: httpx.Client) -> None:
    created = create_user(http, active="false", roles=[])
    assert created["active"] is False
    assert "roles" not in created


def test_create_tolerates_the_misspelled_enterprise_urn(http: httpx.Client) -> None:
    misspelled = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"
    body = user_body(upn("urn"), schemas=[USER_SCHEMA, misspelled])
    body[misspelled] = {"department": "ignored: not our schema"}
    body[ENTERPRISE] = {"department": "Sales"}
    response = send(http, "POST", "/Users", body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created[ENTERPRISE] == {"department": "Sales"}
    assert misspelled not in created and misspelled not in created["schemas"]


def test_duplicate_user_name_in_another_case_is_409(http: httpx.Client) -> None:
    name = upn("Dup.User")
    create_user(http, name)
    for other in (name.upper(), name.lower(), name):
        body = assert_scim_error(send(http, "POST", "/Users", user_body(other)), 409, "uniqueness")
        assert other in body["detail"]
    # The lookup Entra makes before creating finds the existing user, so it never loops GET -> POST -> 409.
    found = http.get(f"/Users?{eq_filter('userName', name.swapcase())}").json()
    assert found["totalResults"] == 1


@pytest.mark.parametrize("missing", ["userName", "name.givenName", "name.familyName"])
def test_missing_required_attribute_is_400_naming_it(http: httpx.Client, profile: str, missing: str) -> None:
    body = user_body(upn("required"))
    if missing == "userName":
        del body["userName"]
    else:
        del body["name"][missing.split(".")[1]]
    response = send(http, "POST", "/Users", body)
    if profile == "rfc7643" and missing != "userName":  # RFC 7643 requires userName alone
        assert response.status_code == 201, response.text
        assert missing.split(".")[1] not in response.json()["name"]
        return
    error = assert_scim_error(response, 400, "invalidValue")
    assert missing in error["detail"]


def test_a_non_e164_work_phone_is_400_with_an_actionable_detail(http: httpx.Client, profile: str) -> None:
    name = upn("phone")
    body = user_body(name, phoneNumbers=[{"type": "work", "value": "617-555-1212"}])
    response = send(http, "POST", "/Users", body)
    if profile == "rfc7643":  # phone numbers are free text: kept as sent
        assert response.status_code == 201, response.text
        assert response.json()["phoneNumbers"] == [{"type": "work", "value": "617-555-1212"}]
        return
    error = assert_scim_error(response, 400, "invalidValue")
    assert "E.164" in error["detail"] and "+16175551212" in error["detail"]
    assert http.get(f"/Users?{eq_filter('userName', name)}").json()["totalResults"] == 0


# --- manager -----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["string", "object", "list"])
def test_create_with_the_manager_in_each_form(http: httpx.Client, form: str) -> None:
    boss = create_user(http)
    value = {
        "string": boss["id"],
        "object": {"value": boss["id"]},
        "list": [{"$ref": boss["meta"]["location"], "value": boss["id"]}],
    }[form]
    body = user_body(upn("report"))
    body[ENTERPRISE] = {"manager": value}
    response = send(http, "POST", "/Users", body)
    assert response.status_code == 201, response.text
    assert response.json()[ENTERPRISE]["manager"]["value"] == boss["id"]
    assert get_user(http, response.json()["id"])[ENTERPRISE]["manager"]["value"] == boss["id"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_manager_is_set_in_every_form_and_cleared(http: httpx.Client, dialect: str) -> None:
    bosses = [create_user(http)["id"] for _ in range(4)]
    user = create_user(http)
    path = f"{ENTERPRISE}:manager"
    for boss, value in zip(bosses, (bosses[0], {"value": bosses[1]}, [{"value": bosses[2]}]), strict=False):
        for verb in ("add", "replace"):
            response = send(http, "PATCH", url(dialect, f"/Users/{user['id']}"), patch(op(dialect, verb, path, value)))
            assert response.status_code == 200, response.text
            assert response.json()[ENTERPRISE]["manager"]["value"] == boss
    pathless = send(
        http, "PATCH", url(dialect, f"/Users/{user['id']}"), patch(op(dialect, "replace", None, {path: bosses[3]}))
    )
    assert pathless.status_code == 200 and pathless.json()[ENTERPRISE]["manager"]["value"] == bosses[3]

    for clear in ("", {"value": ""}):
        send(http, "PATCH", f"/Users/{user['id']}", patch(op(dialect, "replace", path, bosses[0])))
        response = send(http, "PATCH", url(dialect, f"/Users/{user['id']}"), patch(op(dialect, "replace", path, clear)))
        assert response.status_code == 200, response.text
        assert "manager" not in response.json().get(ENTERPRISE, {})
        assert "manager" not in get_user(http, user["id"]).get(ENTERPRISE, {})


def test_compound_manager_reference_filter(http: httpx.Client) -> None:
    boss, other = create_user(http), create_user(http)
    body = user_body(upn("managed"))
    body[ENTERPRISE] = {"manager": boss["id"]}
    user = send(http, "POST", "/Users", body).json()
    hit = http.get(
        "/Users?"
        + "filter="
        + f'id eq "{user["id"]}" and manager eq "{boss["id"]}"'.replace(" ", "+").replace('"', "%22")
    )
    assert hit.status_code == 200 and [r["id"] for r in hit.json()["Resources"]] == [user["id"]]
    miss = http.get("/Users", params={"filter": f'id eq "{user["id"]}" and manager eq "{other["id"]}"'})
    assert miss.status_code == 200 and miss.json()["totalResults"] == 0
    qualified = http.get(
        "/Users", params={"filter": f'id eq "{user["id"]}" and {ENTERPRISE}:manager.value eq "{boss["id"]}"'}
    )
    assert qualified.json()["totalResults"] == 1


# --- PATCH -------------------------------------------------------------------------------------


def test_legacy_patch_exactly_as_entra_sends_it(http: httpx.Client) -> None:
    user = create_user(http)
    response = send(
        http,
        "PATCH",
        f"/Users/{user['id']}",
        patch(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@contoso.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+16175550000"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "nickName", "value": "Babs"},
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert work_email(body) == "updated@contoso.com"
    assert body["name"]["familyName"] == "updatedFamilyName" and body["name"]["givenName"] == "givenName"
    assert work_phone(body) == "+16175550000"
    assert body["active"] is False and body["nickName"] == "Babs"
    assert get_user(http, user["id"]) == body


def test_modern_patch_with_dotted_and_urn_keys(http: httpx.Client) -> None:
    user = create_user(http)
    response = send(
        http,
        "PATCH",
        f"/Users/{user['id']}?{FLAG}",
        patch(
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@contoso.com"},
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                    "active": False,
                    f"{ENTERPRISE}:employeeNumber": "Aklq",
                },
            },
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["displayName"] == "Bjfe" and body["active"] is False
    assert body["name"]["givenName"] == "Kkom" and body["name"]["familyName"] == "Unua"
    assert body["name"]["formatted"] == "givenName familyName"  # the other sub-attributes stay
    assert body[ENTERPRISE] == {"employeeNumber": "Aklq"}
    assert work_email(body) == "x@contoso.com"
    stored = get_user(http, user["id"])
    assert not [key for key in stored if "." in key and not key.startswith("urn:")], stored
    assert stored == body


def test_pathless_add_with_the_same_shape(http: httpx.Client) -> None:
    user = create_user(http)
    response = send(
        http,
        "PATCH",
        f"/Users/{user['id']}?{FLAG}",
        patch(
            {
                "op": "add",
                "value": {
                    "nickName": "Nick",
                    "name.middleName": "M",
                    f"{ENTERPRISE}:department": "Ops",
                    "title": "Engineer",
                },
            }
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["nickName"] == "Nick" and body["title"] == "Engineer"
    assert body["name"]["middleName"] == "M" and body["name"]["givenName"] == "givenName"
    assert body[ENTERPRISE]["department"] == "Ops"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("verb", ["add", "replace"])
def test_filtered_path_upserts_the_work_phone_and_email(http: httpx.Client, dialect: str, verb: str) -> None:
    user = create_user(http, phoneNumbers=[{"type": "mobile", "value": "+447700900123"}], emails=None)
    assert work_phone(user) is None and work_email(user) is None
    response = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(
            op(dialect, verb, 'phoneNumbers[type eq "work"].value', "+16175550001"),
            op(dialect, verb, 'emails[type eq "work"].value', "upsert@contoso.com"),
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert work_phone(body) == "+16175550001" and work_email(body) == "upsert@contoso.com"
    assert {"type": "mobile", "value": "+447700900123"} in body["phoneNumbers"]
    again = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(op(dialect, verb, 'phoneNumbers[type eq "work"].value', "+16175550002")),
    )
    assert work_phone(again.json()) == "+16175550002"  # updated in place, not a second work phone
    assert len(again.json()["phoneNumbers"]) == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_empty_string_clears_every_non_required_attribute(http: httpx.Client, dialect: str) -> None:
    boss = create_user(http)
    body = user_body(upn("clear"), displayName="D", nickName="N", title="T", preferredLanguage="en-US")
    body[ENTERPRISE] = {"department": "Sales", "employeeNumber": "7", "manager": boss["id"]}
    user = send(http, "POST", "/Users", body).json()
    paths = [
        "displayName",
        "nickName",
        "title",
        "preferredLanguage",
        'phoneNumbers[type eq "work"].value',
        'emails[type eq "work"].value',
        f"{ENTERPRISE}:department",
        f"{ENTERPRISE}:employeeNumber",
        f"{ENTERPRISE}:manager",
    ]
    # Entra's validator sends "" for every non-required attribute, the work phone included.
    response = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(*(op(dialect, "replace", path, "") for path in paths)),
    )
    assert response.status_code == 200, response.text
    cleared = response.json()
    for name in ("displayName", "nickName", "title", "preferredLanguage", "phoneNumbers", "emails", ENTERPRISE):
        assert name not in cleared, name
    assert cleared["name"]["givenName"] == "givenName"  # required attributes stay
    assert get_user(http, user["id"]) == cleared


def test_pathless_empty_strings_clear_too(http: httpx.Client) -> None:
    user = create_user(http, displayName="Shown", nickName="Nick")
    response = send(
        http,
        "PATCH",
        f"/Users/{user['id']}?{FLAG}",
        patch({"op": "replace", "value": {"displayName": "", "nickName": "", f"{ENTERPRISE}:department": ""}}),
    )
    assert response.status_code == 200, response.text
    assert "displayName" not in response.json() and "nickName" not in response.json()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_attribute_we_do_not_keep_never_blocks_a_disable(http: httpx.Client, dialect: str) -> None:
    user = create_user(http)
    response = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(
            op(
                dialect,
                "add",
                "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:CustomAttribute",
                "x",
            ),
            op(dialect, "replace", "mailNickname", "alias"),
            op(dialect, "replace", "active", boolean(dialect, False)),
        ),
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    assert "mailNickname" not in response.json()
    assert get_user(http, user["id"])["active"] is False


@pytest.mark.parametrize("dialect", DIALECTS)
def test_one_invalid_operation_changes_nothing(http: httpx.Client, profile: str, dialect: str) -> None:
    user = create_user(http)
    # A work phone that is not E.164 is invalid for the connector; a boolean that is no boolean for any profile.
    invalid = (
        op(dialect, "replace", 'phoneNumbers[type eq "work"].value', "12345")
        if profile == "meta-networks"
        else op(dialect, "replace", "active", "perhaps")
    )
    response = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(
            op(dialect, "replace", "name.familyName", "Changed"),
            invalid,
            op(dialect, "replace", "active", boolean(dialect, False)),
        ),
    )
    error = assert_scim_error(response, 400, "invalidValue")
    assert "Operation 2" in error["detail"]
    assert ("phoneNumbers" if profile == "meta-networks" else "active") in error["detail"]
    assert get_user(http, user["id"]) == user  # same values, same meta.version

    bad_op = send(
        http,
        "PATCH",
        url(dialect, f"/Users/{user['id']}"),
        patch(op(dialect, "replace", "nickName", "Changed"), {"op": "Frobnicate", "path": "title", "value": "x"}),
    )
    assert bad_op.status_code == 400 and "Operation 2" in bad_op.json()["detail"]
    assert get_user(http, user["id"]) == user


@pytest.mark.parametrize("dialect", DIALECTS)
def test_disable_keeps_the_user_findable_and_restore_enables_it(http: httpx.Client, dialect: str) -> None:
    user = create_user(http)
    for active in (False, True, False):
        response = send(
            http,
            "PATCH",
            url(dialect, f"/Users/{user['id']}"),
            patch(op(dialect, "replace", "active", boolean(dialect, active))),
        )
        assert response.status_code == 200 and response.json()["active"] is active
        assert get_user(http, user["id"])["active"] is active
        found = http.get(f"/Users?{eq_filter('userName', user['userName'].upper())}").json()
        assert [(r["id"], r["active"]) for r in found["Resources"]] == [(user["id"], active)]


@pytest.mark.parametrize("value", ["True", "TRUE", "true", True])
def test_boolean_strings_in_any_case(http: httpx.Client, value: object) -> None:
    user = create_user(http, active=False)
    response = send(http, "PATCH", f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": value}))
    assert response.status_code == 200 and response.json()["active"] is True


@pytest.mark.parametrize("name", ["Add", "add", "ADD", "Replace", "REPLACE", "replace"])
def test_op_names_in_any_case(http: httpx.Client, name: str) -> None:
    user = create_user(http)
    response = send(http, "PATCH", f"/Users/{user['id']}", patch({"op": name, "path": "title", "value": name}))
    assert response.status_code == 200 and response.json()["title"] == name


def test_delete_then_delete_again_is_404(http: httpx.Client) -> None:
    user = create_user(http)
    assert http.delete(f"/Users/{user['id']}").status_code == 204
    assert_scim_error(http.get(f"/Users/{user['id']}"), 404)
    assert_scim_error(http.delete(f"/Users/{user['id']}"), 404)
    assert http.get(f"/Users?{eq_filter('userName', user['userName'])}").json()["totalResults"] == 0
