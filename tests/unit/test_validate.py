"""validate_resource, parse_members and coerce_bool, on the bodies Entra sends (see docs/entra.md)."""

import json

import pytest

from scim.errors import ScimError
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, USER_TYPE, Attribute
from scim.validate import Member, clean_value, coerce_bool, parse_members, validate_resource

ENTRA_CREATE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "Test_User_11bb@testuser.com"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "phoneNumbers": [{"type": "work", "value": "+16175551212"}],
    "roles": [],
}


def user(**extra: object) -> dict:
    return {"userName": "alice@contoso.com", "name": {"givenName": "Alice", "familyName": "Smith"}, **extra}


def rejected(rtype, body) -> ScimError:
    with pytest.raises(ScimError) as info:
        validate_resource(rtype, body)
    assert info.value.status == 400
    return info.value


def test_entra_create_body_becomes_the_canonical_document():
    doc = validate_resource(USER_TYPE, ENTRA_CREATE)
    assert doc == {
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "active": True,
        "emails": [{"value": "Test_User_11bb@testuser.com", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+16175551212", "type": "work"}],
    }
    json.dumps(doc)


def test_the_input_body_is_not_modified():
    body = json.loads(json.dumps(ENTRA_CREATE))
    validate_resource(USER_TYPE, body)
    assert body == ENTRA_CREATE


def test_canonical_document_is_stable():
    doc = validate_resource(USER_TYPE, ENTRA_CREATE)
    assert validate_resource(USER_TYPE, doc) == doc


def test_nulls_are_absent_everywhere():
    doc = validate_resource(
        USER_TYPE,
        user(
            displayName=None,
            nickName=None,
            active=None,
            emails=None,
            phoneNumbers=[{"type": "work", "value": None}],
            addresses=[{"locality": None, "type": None}],
            name={"givenName": "Alice", "familyName": "Smith", "middleName": None},
            **{ENTERPRISE_USER: None},
        ),
    )
    assert doc == {"userName": "alice@contoso.com", "name": {"familyName": "Smith", "givenName": "Alice"}}


def test_empty_strings_lists_and_objects_are_dropped():
    doc = validate_resource(
        USER_TYPE,
        user(
            displayName="",
            title="",
            roles=[],
            addresses=[{}],
            emails=[{"type": "work", "value": ""}],
            **{ENTERPRISE_USER: {"department": "", "manager": {"value": ""}}},
        ),
    )
    assert doc == {"userName": "alice@contoso.com", "name": {"familyName": "Smith", "givenName": "Alice"}}


def test_attribute_names_are_matched_case_insensitively_and_stored_canonically():
    doc = validate_resource(
        USER_TYPE,
        {
            "USERNAME": "alice@contoso.com",
            "Name": {"GIVENNAME": "Alice", "familyname": "Smith"},
            "phonenumbers": [{"Type": "work", "VALUE": "+16175551212"}],
            ENTERPRISE_USER.upper(): {"EmployeeNumber": "42"},
        },
    )
    assert doc == {
        "userName": "alice@contoso.com",
        "name": {"familyName": "Smith", "givenName": "Alice"},
        "phoneNumbers": [{"value": "+16175551212", "type": "work"}],
        ENTERPRISE_USER: {"employeeNumber": "42"},
    }


def test_unknown_and_misspelled_urns_and_attributes_are_ignored():
    doc = validate_resource(
        USER_TYPE,
        user(
            favouriteColour="blue",
            emails=[{"value": "a@contoso.com", "label": "mine"}],
            **{
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"employeeNumber": "1"},
                "urn:example:custom:2.0:User": {"shoeSize": "42"},
            },
        ),
    )
    assert doc == {
        "userName": "alice@contoso.com",
        "name": {"familyName": "Smith", "givenName": "Alice"},
        "emails": [{"value": "a@contoso.com"}],
    }


def test_read_only_and_write_only_attributes_are_not_stored():
    doc = validate_resource(
        USER_TYPE,
        user(
            id="client-chosen",
            meta={"resourceType": "User", "created": "not even a date"},
            groups=[{"value": "g1"}],
            password="S3cret!",
            schemas=["whatever"],
            **{ENTERPRISE_USER: {"manager": {"value": "m1", "displayName": "Boss"}}},
        ),
    )
    assert doc == {
        "userName": "alice@contoso.com",
        "name": {"familyName": "Smith", "givenName": "Alice"},
        ENTERPRISE_USER: {"manager": {"value": "m1"}},
    }


def test_password_must_still_be_a_string():
    error = rejected(USER_TYPE, user(password=12345))
    assert error.scim_type == "invalidValue"
    assert "password" in error.detail


def test_core_urn_as_a_key_merges_into_the_top_level():
    doc = validate_resource(
        USER_TYPE,
        {
            "urn:ietf:params:scim:schemas:core:2.0:User": {"userName": "alice@contoso.com", "nickName": "Al"},
            "name": {"givenName": "Alice", "familyName": "Smith"},
        },
    )
    assert doc["userName"] == "alice@contoso.com"
    assert doc["nickName"] == "Al"


def test_extension_urn_key_must_hold_an_object():
    error = rejected(USER_TYPE, user(**{ENTERPRISE_USER: "sales"}))
    assert error.scim_type == "invalidValue"
    assert ENTERPRISE_USER in error.detail


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("False", False),
        ("TRUE", True),
        ("false", False),
    ],
)
def test_boolean_accepts_json_booleans_and_true_false_strings(given, stored):
    doc = validate_resource(USER_TYPE, user(active=given, emails=[{"value": "a@x.com", "primary": given}]))
    assert doc["active"] is stored
    assert doc["emails"][0]["primary"] is stored


@pytest.mark.parametrize("given", ["yes", 1, 0, "1", [True], {"value": True}])
def test_boolean_rejects_anything_else(given):
    error = rejected(USER_TYPE, user(active=given))
    assert error.scim_type == "invalidValue"
    assert "active" in error.detail


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (user(displayName=42), "displayName"),
        (user(nickName=True), "nickName"),
        (user(name={"givenName": 7, "familyName": "Smith"}), "name.givenName"),
        (user(emails=[{"value": 3.5}]), "emails.value"),
        (user(**{ENTERPRISE_USER: {"employeeNumber": 42}}), "employeeNumber"),
    ],
)
def test_string_attributes_reject_numbers_and_booleans(body, named):
    error = rejected(USER_TYPE, body)
    assert error.scim_type == "invalidValue"
    assert named in error.detail
    assert "string" in error.detail


def test_complex_attribute_must_be_an_object():
    error = rejected(USER_TYPE, user(name="Alice Smith"))
    assert error.scim_type == "invalidValue"
    assert "name" in error.detail


def test_multi_valued_attribute_must_be_a_list():
    error = rejected(USER_TYPE, user(emails="a@contoso.com"))
    assert error.scim_type == "invalidValue"
    assert "emails" in error.detail


def test_elements_of_a_multi_valued_complex_attribute_must_be_objects():
    error = rejected(USER_TYPE, user(emails=["a@contoso.com"]))
    assert error.scim_type == "invalidValue"
    assert "emails" in error.detail


def test_a_single_object_for_a_multi_valued_attribute_is_wrapped():
    doc = validate_resource(USER_TYPE, user(emails={"value": "a@contoso.com", "type": "work"}))
    assert doc["emails"] == [{"value": "a@contoso.com", "type": "work"}]


def test_at_most_one_primary_value():
    error = rejected(
        USER_TYPE,
        user(
            emails=[
                {"value": "a@contoso.com", "primary": True},
                {"value": "b@contoso.com", "primary": "True"},
            ]
        ),
    )
    assert error.scim_type == "invalidValue"
    assert "emails" in error.detail
    assert "primary" in error.detail


def test_one_primary_among_several_is_fine():
    doc = validate_resource(
        USER_TYPE,
        user(
            emails=[
                {"value": "a@contoso.com", "primary": True},
                {"value": "b@contoso.com", "primary": False},
            ]
        ),
    )
    assert [e["primary"] for e in doc["emails"]] == [True, False]


def test_date_time_must_parse_and_is_stored_in_the_form_filters_compare():
    # A declared extension's dateTime is stored as UTC with milliseconds, so text order is time order.
    when = Attribute("when", "dateTime")
    assert clean_value(when, "2026-01-31T12:00:00Z", "when") == "2026-01-31T12:00:00.000Z"
    assert clean_value(when, "2026-01-31T13:00:00+01:00", "when") == "2026-01-31T12:00:00.000Z"
    assert clean_value(when, "2026-01-31", "when") == "2026-01-31T00:00:00.000Z"
    with pytest.raises(ScimError) as info:
        clean_value(when, "yesterday", "when")
    assert info.value.scim_type == "invalidValue"
    assert "when" in info.value.detail


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"name": {"givenName": "Alice", "familyName": "Smith"}}, "userName"),
        ({"userName": "", "name": {"givenName": "Alice", "familyName": "Smith"}}, "userName"),
        ({"userName": "alice@contoso.com", "name": {"familyName": "Smith"}}, "name.givenName"),
        ({"userName": "alice@contoso.com", "name": {"givenName": "Alice", "familyName": None}}, "name.familyName"),
        ({"userName": "alice@contoso.com"}, "name.familyName"),
    ],
)
def test_required_user_attributes(body, missing):
    error = rejected(USER_TYPE, body)
    assert error.scim_type == "invalidValue"
    assert error.detail.startswith(f"{missing} is required")


def test_group_requires_display_name():
    error = rejected(GROUP_TYPE, {"externalId": "x"})
    assert error.scim_type == "invalidValue"
    assert "displayName" in error.detail


def test_entra_group_create_body():
    body = {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
        ],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Sales",
        "meta": {"resourceType": "Group"},
    }
    assert validate_resource(GROUP_TYPE, body) == {
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Sales",
    }


def test_group_members_are_not_part_of_the_document():
    doc = validate_resource(GROUP_TYPE, {"displayName": "Sales", "members": [{"value": "u1"}]})
    assert doc == {"displayName": "Sales"}


def test_body_must_be_an_object():
    error = rejected(USER_TYPE, ["not", "an", "object"])
    assert error.scim_type == "invalidSyntax"


# --- work phone ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["+16175551212", "+4915112345678", "+442071838750"])
def test_work_phone_in_e164_is_stored_exactly_as_sent(number):
    doc = validate_resource(USER_TYPE, user(phoneNumbers=[{"type": "Work", "value": number}]))
    assert doc["phoneNumbers"] == [{"value": number, "type": "Work"}]


@pytest.mark.parametrize(
    "number",
    [
        "6175551212",
        "+1 617 555 1212",
        "+1-617-555-1212",
        "(617) 555-1212",
        "+06175551212",
        "+1617555121299",
        "+999123456",
        "tel:+16175551212",
    ],
)
def test_work_phone_not_in_e164_is_rejected_with_an_actionable_detail(number):
    error = rejected(USER_TYPE, user(phoneNumbers=[{"type": "work", "value": number}]))
    assert error.scim_type == "invalidValue"
    assert "phoneNumbers" in error.detail
    assert number in error.detail
    assert "+16175551212" in error.detail


def test_other_phone_types_are_not_checked():
    doc = validate_resource(USER_TYPE, user(phoneNumbers=[{"type": "mobile", "value": "(617) 555-1212"}]))
    assert doc["phoneNumbers"] == [{"value": "(617) 555-1212", "type": "mobile"}]


def test_empty_work_phone_is_removed_not_rejected():
    doc = validate_resource(
        USER_TYPE,
        user(
            phoneNumbers=[
                {"type": "work", "value": ""},
                {"type": "mobile", "value": "+16175550000"},
            ]
        ),
    )
    assert doc["phoneNumbers"] == [{"value": "+16175550000", "type": "mobile"}]


# --- enterprise manager ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("m1", {"value": "m1"}),
        ({"value": "m1"}, {"value": "m1"}),
        ({"value": "m1", "$ref": "../Users/m1", "displayName": "Boss"}, {"value": "m1", "$ref": "../Users/m1"}),
        ([{"$ref": "../Users/m1", "value": "m1"}], {"value": "m1", "$ref": "../Users/m1"}),
        ([{"$ref": None, "value": "m1"}], {"value": "m1"}),
    ],
)
def test_manager_forms(given, stored):
    doc = validate_resource(USER_TYPE, user(**{ENTERPRISE_USER: {"manager": given, "department": "Sales"}}))
    assert doc[ENTERPRISE_USER] == {"department": "Sales", "manager": stored}


@pytest.mark.parametrize("given", ["", {"value": ""}, None, [], [{"value": ""}], {"$ref": "../Users/m1"}])
def test_no_manager(given):
    doc = validate_resource(USER_TYPE, user(**{ENTERPRISE_USER: {"manager": given}}))
    assert ENTERPRISE_USER not in doc


def test_manager_list_of_several_is_rejected():
    error = rejected(USER_TYPE, user(**{ENTERPRISE_USER: {"manager": [{"value": "a"}, {"value": "b"}]}}))
    assert error.scim_type == "invalidValue"
    assert "manager" in error.detail


def test_manager_id_must_be_a_string():
    error = rejected(USER_TYPE, user(**{ENTERPRISE_USER: {"manager": {"value": 7}}}))
    assert "manager.value" in error.detail


# --- coerce_bool and parse_members -------------------------------------------------------------


def test_coerce_bool():
    assert coerce_bool("True", "active") is True
    assert coerce_bool("fAlSe", "active") is False
    assert coerce_bool(False, "active") is False
    with pytest.raises(ScimError) as info:
        coerce_bool(None, "active")
    assert info.value.scim_type == "invalidValue"
    assert "active" in info.value.detail


def test_parse_members_shapes():
    assert parse_members(
        [
            {"$ref": None, "value": "f648f8d5ea4e4cd38e9c"},
            {"value": "u2", "type": "user", "display": "Bob"},
            {"Value": "g1", "TYPE": "GROUP", "$ref": "https://example.com/Groups/g1"},
            {"value": "u3", "type": ""},
        ]
    ) == [Member("f648f8d5ea4e4cd38e9c"), Member("u2", "User"), Member("g1", "Group"), Member("u3")]


def test_parse_members_tolerates_null_and_a_lone_object():
    assert parse_members(None) == []
    assert parse_members({"value": "u1"}) == [Member("u1")]


@pytest.mark.parametrize(
    "value",
    [
        "u1",
        [{"value": ""}],
        [{"value": 5}],
        [{"display": "Bob"}],
        ["u1"],
        [{"value": "u1", "type": "Device"}],
    ],
)
def test_parse_members_rejects_bad_shapes(value):
    with pytest.raises(ScimError) as info:
        parse_members(value)
    assert info.value.status == 400
    assert info.value.scim_type == "invalidValue"
    assert "member" in info.value.detail.lower()
