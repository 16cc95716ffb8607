"""apply_patch on both of Entra's PATCH dialects and RFC 7644 §3.5.2 (see docs/entra.md)."""

import copy
import json

import pytest

from scim.errors import ScimError
from scim.patch import MAX_OPERATIONS, Member, MemberOp, apply_patch
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, PATCH_OP, USER_TYPE

ALICE = {
    "externalId": "0a21f0f2",
    "userName": "alice@contoso.com",
    "name": {"familyName": "Smith", "givenName": "Alice"},
    "active": True,
    "emails": [{"value": "alice@contoso.com", "type": "work", "primary": True}],
    "phoneNumbers": [{"value": "+16175551212", "type": "work"}, {"value": "+16175559999", "type": "mobile"}],
    ENTERPRISE_USER: {"employeeNumber": "7", "manager": {"value": "m1", "$ref": "../Users/m1"}},
}
BARE = {"userName": "bob@contoso.com", "name": {"familyName": "Jones", "givenName": "Bob"}}
SALES = {"externalId": "8aa1a0c0", "displayName": "Sales"}


def patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def user_patch(doc: dict, *operations: dict) -> dict:
    new_doc, member_ops = apply_patch(USER_TYPE, doc, patch(*operations))
    assert member_ops == []
    return new_doc


def group_patch(*operations: dict) -> list[MemberOp]:
    new_doc, member_ops = apply_patch(GROUP_TYPE, SALES, patch(*operations))
    assert new_doc == SALES
    return member_ops


def rejected(rtype, doc: dict, body: dict) -> ScimError:
    before = copy.deepcopy(doc)
    with pytest.raises(ScimError) as info:
        apply_patch(rtype, doc, body)
    assert info.value.status == 400
    assert doc == before
    return info.value


# --- Entra's two dialects, verbatim ----------------------------------------------------------


LEGACY_DIALECT = r"""
    {"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
      {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updated@contoso.com"},
      {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
      {"op":"Replace","path":"phoneNumbers[type eq \"work\"].value","value":"+16175550000"},
      {"op":"Replace","path":"active","value":"False"},
      {"op":"Add","path":"nickName","value":"Babs"}]}
"""

AAD_OPT_SCIM_062020_DIALECT = r"""
    {"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
      {"op":"replace","path":"emails[type eq \"work\"].value","value":"x@contoso.com"},
      {"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
        "active":false,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}
"""


def test_legacy_dialect():
    doc, member_ops = apply_patch(USER_TYPE, ALICE, json.loads(LEGACY_DIALECT))
    assert member_ops == []
    assert doc == {
        **ALICE,
        "emails": [{"value": "updated@contoso.com", "type": "work", "primary": True}],
        "name": {"familyName": "updatedFamilyName", "givenName": "Alice"},
        "phoneNumbers": [{"value": "+16175550000", "type": "work"}, {"value": "+16175559999", "type": "mobile"}],
        "active": False,
        "nickName": "Babs",
    }


def test_legacy_dialect_on_a_user_without_work_email_or_phone():
    doc, _ = apply_patch(USER_TYPE, BARE, json.loads(LEGACY_DIALECT))
    assert doc["emails"] == [{"value": "updated@contoso.com", "type": "work"}]
    assert doc["phoneNumbers"] == [{"value": "+16175550000", "type": "work"}]


def test_aad_opt_scim_062020_dialect():
    doc, member_ops = apply_patch(USER_TYPE, ALICE, json.loads(AAD_OPT_SCIM_062020_DIALECT))
    assert member_ops == []
    assert doc == {
        **ALICE,
        "emails": [{"value": "x@contoso.com", "type": "work", "primary": True}],
        "displayName": "Bjfe",
        "name": {"familyName": "Unua", "givenName": "Kkom"},
        "active": False,
        ENTERPRISE_USER: {**ALICE[ENTERPRISE_USER], "employeeNumber": "Aklq"},
    }
    assert "name.givenName" not in doc


def test_pathless_add_with_dotted_and_urn_keys():
    doc = user_patch(
        BARE,
        {
            "op": "add",
            "value": {
                "name.middleName": "Q",
                "nickName": "Bobby",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
                "urn:ietf:params:scim:schemas:core:2.0:User:title": "Boss",
            },
        },
    )
    assert doc == {
        **BARE,
        "name": {**BARE["name"], "middleName": "Q"},
        "nickName": "Bobby",
        "title": "Boss",
        ENTERPRISE_USER: {"department": "Sales"},
    }


def test_filtered_upsert_creates_the_work_phone_and_work_email():
    doc = user_patch(
        BARE,
        {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+16175550000"},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "bob@contoso.com"},
    )
    assert doc["phoneNumbers"] == [{"value": "+16175550000", "type": "work"}]
    assert doc["emails"] == [{"value": "bob@contoso.com", "type": "work"}]


def test_filtered_upsert_takes_every_eq_term_of_the_filter():
    doc = user_patch(
        BARE, {"op": "add", "path": 'emails[type eq "work" and primary eq true].value', "value": "bob@contoso.com"}
    )
    assert doc["emails"] == [{"value": "bob@contoso.com", "type": "work", "primary": True}]


def test_filtered_path_without_eq_terms_and_no_match_is_no_target():
    error = rejected(
        USER_TYPE, BARE, patch({"op": "replace", "path": 'emails[value co "contoso"].type', "value": "work"})
    )
    assert error.scim_type == "noTarget"


def test_filter_matches_case_insensitively_and_keeps_the_stored_type():
    doc = dict(BARE, phoneNumbers=[{"value": "+16175551212", "type": "Work"}])
    doc = user_patch(doc, {"op": "replace", "path": 'phonenumbers[TYPE eq "work"].VALUE', "value": "+16175550000"})
    assert doc["phoneNumbers"] == [{"value": "+16175550000", "type": "Work"}]


def test_filtered_path_without_sub_attribute_merges_the_object():
    doc = user_patch(ALICE, {"op": "replace", "path": 'emails[type eq "work"]', "value": {"value": "new@contoso.com"}})
    assert doc["emails"] == [{"value": "new@contoso.com", "type": "work", "primary": True}]


# --- "" and null clear -----------------------------------------------------------------------


def test_empty_string_clears_attributes():
    doc = user_patch(
        dict(ALICE, nickName="Al"),
        {"op": "Replace", "path": "nickName", "value": ""},
        {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": ""},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": ""},
        {"op": "Replace", "path": "externalId", "value": ""},
    )
    assert "nickName" not in doc
    assert "externalId" not in doc
    assert "emails" not in doc
    assert doc["phoneNumbers"] == [{"value": "+16175559999", "type": "mobile"}]


def test_empty_work_phone_on_a_user_without_one_is_a_no_op():
    assert user_patch(BARE, {"op": "Add", "path": 'phoneNumbers[type eq "work"].value', "value": ""}) == BARE


def test_entra_validator_sends_empty_strings_for_every_optional_attribute():
    doc = user_patch(
        ALICE,
        {
            "op": "replace",
            "value": {
                "displayName": "",
                "title": "",
                "name.formatted": "",
                "active": "False",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "",
            },
        },
    )
    assert doc["active"] is False
    assert "employeeNumber" not in doc[ENTERPRISE_USER]


def test_null_value_clears():
    doc = user_patch(
        dict(ALICE, nickName="Al"),
        {"op": "replace", "path": "nickName", "value": None},
        {"op": "replace", "value": {"externalId": None}},
    )
    assert "nickName" not in doc
    assert "externalId" not in doc


# --- booleans, unknown and read-only attributes ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [("False", False), ("false", False), (False, False), ("True", True), ("TRUE", True), (True, True)],
)
def test_active_accepts_booleans_and_strings(value, stored):
    assert user_patch(ALICE, {"op": "Replace", "path": "active", "value": value})["active"] is stored


def test_bad_boolean_is_rejected():
    error = rejected(USER_TYPE, ALICE, patch({"op": "Replace", "path": "active", "value": "maybe"}))
    assert error.scim_type == "invalidValue"
    assert "active" in error.detail


def test_unknown_attribute_next_to_active_false_still_disables():
    doc = user_patch(
        ALICE,
        {"op": "Replace", "path": "extensionAttribute1", "value": "x"},
        {"op": "Add", "path": "urn:example:custom:2.0:User:shoeSize", "value": "42"},
        {"op": "Replace", "path": "name.nickname", "value": "x"},
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "replace", "value": {"someUnmappedThing": "x", "active": False}},
    )
    assert doc == {**ALICE, "active": False}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "id", "value": "other"},
        {"op": "add", "path": "id", "value": "other"},
        {"op": "remove", "path": "id"},
        {"op": "replace", "path": "meta", "value": {"resourceType": "Group"}},
        {"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"},
        {"op": "remove", "path": "meta.version"},
        {"op": "add", "path": "groups", "value": [{"value": "g1"}]},
        {"op": "remove", "path": 'groups[value eq "g1"]'},
        {"op": "replace", "path": f"{ENTERPRISE_USER}:manager.displayName", "value": "Boss"},
        {"op": "replace", "value": {"id": "other"}},
        {"op": "replace", "value": {"meta": {"resourceType": "User"}}},
        {"op": "add", "value": {"groups": [{"value": "g1"}], "title": "CEO"}},
        {"op": "replace", "value": {"meta.created": "2020-01-01T00:00:00Z"}},
    ],
)
def test_read_only_attributes_are_a_mutability_error(operation):
    """RFC 7644 §3.5.2: an operation incompatible with the attribute's mutability is an error, not a
    200 that silently changed nothing."""
    error = rejected(USER_TYPE, ALICE, patch({"op": "replace", "path": "title", "value": "CEO"}, operation))
    assert error.scim_type == "mutability"
    assert error.detail.startswith("Operation 2 (")
    assert "read-only" in error.detail


def test_the_resource_s_own_id_echoed_changes_nothing():
    doc, _ = apply_patch(
        USER_TYPE,
        ALICE,
        patch(
            {"op": "replace", "value": {"id": "u1", "schemas": ["x"], "title": "CEO"}},
            {"op": "replace", "path": "id", "value": "u1"},
        ),
        resource_id="u1",
    )
    assert doc == {**ALICE, "title": "CEO"}
    error = rejected(USER_TYPE, ALICE, patch({"op": "replace", "value": {"id": "u2"}}))
    assert error.scim_type == "mutability"


def test_read_only_group_attributes_are_a_mutability_error():
    error = rejected(GROUP_TYPE, SALES, patch({"op": "replace", "path": "meta.resourceType", "value": "User"}))
    assert error.scim_type == "mutability"


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("members.value", "members.value is immutable"),
        ('members[value eq "u1"].type', "members.type is immutable"),
        ('members[value eq "u1"].$ref', "members.$ref is immutable"),
        ('members[value eq "u1"].display', "members.display is read-only"),
    ],
)
def test_a_member_s_sub_attributes_are_a_mutability_error(path, said):
    error = rejected(GROUP_TYPE, SALES, patch({"op": "replace", "path": path, "value": "x"}))
    assert error.scim_type == "mutability"
    assert said in error.detail


# --- ops, paths and the request envelope -------------------------------------------------------


@pytest.mark.parametrize("op", ["add", "Add", "ADD", "replace", "Replace", "REPLACE"])
def test_op_is_case_insensitive(op):
    assert user_patch(ALICE, {"op": op, "path": "title", "value": "CEO"})["title"] == "CEO"


def test_remove_op_is_case_insensitive():
    assert "title" not in user_patch(dict(ALICE, title="CEO"), {"op": "REMOVE", "path": "title"})


def test_unknown_op_is_invalid_syntax():
    error = rejected(USER_TYPE, ALICE, patch({"op": "merge", "path": "title", "value": "CEO"}))
    assert error.scim_type == "invalidSyntax"
    assert "Operation 1" in error.detail
    assert "merge" in error.detail


@pytest.mark.parametrize(
    "body",
    [
        {"Operations": [{"op": "add", "path": "title", "value": "x"}]},
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "Operations": []},
        {"schemas": PATCH_OP, "Operations": [{"op": "add", "path": "title", "value": "x"}]},
    ],
)
def test_missing_patch_op_schema_is_invalid_syntax(body):
    error = rejected(USER_TYPE, ALICE, body)
    assert error.scim_type == "invalidSyntax"
    assert PATCH_OP in error.detail


@pytest.mark.parametrize("operations", [None, [], {"op": "add"}, ["add title"]])
def test_operations_must_be_a_non_empty_list_of_objects(operations):
    error = rejected(USER_TYPE, ALICE, {"schemas": [PATCH_OP], "Operations": operations})
    assert error.scim_type == "invalidSyntax"
    assert "Operation" in error.detail


def test_envelope_keys_are_case_insensitive():
    body = {"SCHEMAS": [PATCH_OP.upper()], "operations": [{"OP": "Replace", "Path": "title", "Value": "CEO"}]}
    assert apply_patch(USER_TYPE, ALICE, body)[0]["title"] == "CEO"


def test_too_many_operations():
    body = patch(*[{"op": "add", "path": "title", "value": str(i)} for i in range(MAX_OPERATIONS + 1)])
    error = rejected(USER_TYPE, ALICE, body)
    assert error.scim_type == "invalidValue"
    assert str(MAX_OPERATIONS) in error.detail


def test_the_operation_limit_itself_is_accepted():
    body = patch(*[{"op": "add", "path": "title", "value": str(i)} for i in range(MAX_OPERATIONS)])
    assert apply_patch(USER_TYPE, ALICE, body)[0]["title"] == str(MAX_OPERATIONS - 1)


@pytest.mark.parametrize(
    "path",
    [
        'emails[type eq "work"',
        "emails]",
        'emails[type eq "work"]]value',
        "name..givenName",
        "name.givenName.x",
        "emails[type eq]",
        'emails[nosuchsub eq "x"].value',
        'manager[value eq "x"]',
    ],
)
def test_malformed_path_is_invalid_path(path):
    error = rejected(USER_TYPE, ALICE, patch({"op": "replace", "path": path, "value": "x"}))
    assert error.scim_type == "invalidPath"
    assert "Operation 1" in error.detail


def test_path_less_value_must_be_an_object():
    error = rejected(USER_TYPE, ALICE, patch({"op": "replace", "value": "x"}))
    assert error.scim_type == "invalidValue"


def test_remove_without_path_is_no_target():
    error = rejected(USER_TYPE, ALICE, patch({"op": "remove"}))
    assert error.scim_type == "noTarget"


# --- atomicity -------------------------------------------------------------------------------


def test_one_invalid_op_changes_nothing_and_names_the_op():
    doc = copy.deepcopy(ALICE)
    error = rejected(
        USER_TYPE,
        doc,
        patch(
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": "nickName", "value": "Babs"},
            {"op": "Replace", "path": "name.familyName", "value": 42},
        ),
    )
    assert error.scim_type == "invalidValue"
    assert error.detail.startswith("Operation 3 (replace name.familyName): ")
    assert "name.familyName" in error.detail
    assert doc == ALICE


def test_valid_patch_does_not_modify_the_input_document():
    doc = copy.deepcopy(ALICE)
    user_patch(
        doc,
        {"op": "replace", "path": "name.givenName", "value": "Al"},
        {"op": "add", "path": "emails", "value": [{"value": "b@contoso.com", "primary": True}]},
        {"op": "remove", "path": 'phoneNumbers[type eq "mobile"]'},
        {"op": "replace", "path": "manager", "value": "m2"},
    )
    assert doc == ALICE


def test_work_phone_not_in_e164_fails_its_op():
    error = rejected(
        USER_TYPE,
        ALICE,
        patch(
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "617-555-1212"},
        ),
    )
    assert error.scim_type == "invalidValue"
    assert error.detail.startswith('Operation 2 (replace phoneNumbers[type eq "work"].value): ')
    assert "617-555-1212" in error.detail
    assert "+16175551212" in error.detail


def test_unchanged_resource_equals_input():
    doc = user_patch(
        ALICE,
        {"op": "replace", "path": "userName", "value": "alice@contoso.com"},
        {"op": "add", "path": "emails", "value": [{"value": "alice@contoso.com", "type": "work", "primary": True}]},
        {"op": "remove", "path": 'emails[type eq "home"]'},
        {"op": "remove", "path": "nickName"},
    )
    assert doc == ALICE


# --- remove ----------------------------------------------------------------------------------


def test_remove_attribute_sub_attribute_and_matching_elements():
    doc = user_patch(
        dict(ALICE, name={**ALICE["name"], "middleName": "Q"}),
        {"op": "remove", "path": "name.middleName"},
        {"op": "remove", "path": 'phoneNumbers[type eq "mobile"]'},
        {"op": "remove", "path": 'emails[type eq "work"].primary'},
        {"op": "remove", "path": "externalId"},
    )
    assert doc["name"] == ALICE["name"]
    assert doc["phoneNumbers"] == [{"value": "+16175551212", "type": "work"}]
    assert doc["emails"] == [{"value": "alice@contoso.com", "type": "work"}]
    assert "externalId" not in doc


def test_remove_with_no_match_succeeds():
    assert (
        user_patch(
            ALICE,
            {"op": "remove", "path": 'emails[type eq "home"]'},
            {"op": "remove", "path": "addresses"},
            {"op": "remove", "path": "title"},
        )
        == ALICE
    )


def test_remove_with_a_value_array_removes_only_those_values():
    doc = dict(BARE, emails=[{"value": "a@x.com"}, {"value": "b@x.com", "type": "home"}])
    doc = user_patch(doc, {"op": "remove", "path": "emails", "value": [{"value": "b@x.com"}]})
    assert doc["emails"] == [{"value": "a@x.com"}]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("userName", "userName"),
        ("name.givenName", "name.givenName"),
        ("name", "name.familyName"),
    ],
)
def test_removing_a_required_attribute_fails(path, named):
    error = rejected(USER_TYPE, ALICE, patch({"op": "remove", "path": path}))
    assert error.scim_type == "invalidValue"
    assert f"{named} is required" in error.detail


def test_clearing_a_required_attribute_with_empty_string_fails():
    error = rejected(USER_TYPE, ALICE, patch({"op": "replace", "value": {"name.givenName": ""}}))
    assert "name.givenName is required" in error.detail


def test_remove_whole_extension():
    doc = user_patch(ALICE, {"op": "remove", "path": ENTERPRISE_USER})
    assert ENTERPRISE_USER not in doc


# --- complex and multi-valued attributes -------------------------------------------------------


def test_replace_complex_attribute_merges_sub_attributes():
    doc = user_patch(ALICE, {"op": "replace", "path": "name", "value": {"GivenName": "Al", "formatted": "Al S"}})
    assert doc["name"] == {"formatted": "Al S", "familyName": "Smith", "givenName": "Al"}


def test_replace_multi_valued_attribute_replaces_the_list():
    doc = user_patch(ALICE, {"op": "replace", "path": "phoneNumbers", "value": [{"type": "home", "value": "1"}]})
    assert doc["phoneNumbers"] == [{"value": "1", "type": "home"}]


def test_add_multi_valued_appends_without_duplicates():
    doc = user_patch(
        ALICE,
        {
            "op": "add",
            "path": "emails",
            "value": [
                {"value": "alice@contoso.com", "type": "work", "primary": True},
                {"value": "al@home.com", "type": "home"},
            ],
        },
    )
    assert doc["emails"] == [
        {"value": "alice@contoso.com", "type": "work", "primary": True},
        {"value": "al@home.com", "type": "home"},
    ]


def test_new_primary_value_takes_the_flag_from_the_others():
    doc = user_patch(ALICE, {"op": "add", "path": "emails", "value": [{"value": "al@home.com", "primary": "True"}]})
    assert [(e["value"], e["primary"]) for e in doc["emails"]] == [("alice@contoso.com", False), ("al@home.com", True)]


def test_two_primaries_in_one_value_are_rejected():
    error = rejected(
        USER_TYPE,
        BARE,
        patch(
            {
                "op": "add",
                "path": "emails",
                "value": [{"value": "a@x.com", "primary": True}, {"value": "b@x.com", "primary": True}],
            }
        ),
    )
    assert "primary" in error.detail


def test_path_less_add_with_a_multi_valued_attribute_appends():
    doc = user_patch(ALICE, {"op": "add", "value": {"emails": [{"value": "al@home.com", "type": "home"}]}})
    assert len(doc["emails"]) == 2


# --- manager and extension paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Manager",
    ],
)
@pytest.mark.parametrize("value", ["m2", {"value": "m2"}, [{"value": "m2"}]])
def test_set_manager(path, value):
    doc = user_patch(ALICE, {"op": "Replace", "path": path, "value": value})
    assert doc[ENTERPRISE_USER]["manager"] == {"value": "m2"}  # the old $ref does not survive
    assert doc[ENTERPRISE_USER]["employeeNumber"] == "7"


@pytest.mark.parametrize("value", ["", {"value": ""}, None, [{"value": ""}]])
def test_clear_manager(value):
    doc = user_patch(ALICE, {"op": "Replace", "path": "manager", "value": value})
    assert doc[ENTERPRISE_USER] == {"employeeNumber": "7"}


def test_manager_on_a_user_without_extension():
    doc = user_patch(BARE, {"op": "add", "path": "manager", "value": {"value": "m1", "$ref": "../Users/m1"}})
    assert doc[ENTERPRISE_USER] == {"manager": {"value": "m1", "$ref": "../Users/m1"}}


def test_manager_value_sub_path():
    doc = user_patch(BARE, {"op": "add", "path": "manager.value", "value": "m1"})
    assert doc[ENTERPRISE_USER] == {"manager": {"value": "m1"}}


def test_urn_qualified_attribute_path():
    doc = user_patch(
        ALICE,
        {
            "op": "replace",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            "value": "8",
        },
    )
    assert doc[ENTERPRISE_USER]["employeeNumber"] == "8"


def test_bare_extension_urn_path_with_an_object():
    doc = user_patch(
        BARE,
        {"op": "add", "path": ENTERPRISE_USER, "value": {"department": "Sales", "manager": "m1", "unknownThing": "x"}},
    )
    assert doc[ENTERPRISE_USER] == {"department": "Sales", "manager": {"value": "m1"}}


def test_extension_urn_key_in_a_path_less_value():
    doc = user_patch(
        ALICE,
        {
            "op": "replace",
            "value": {
                ENTERPRISE_USER: {"costCenter": "CC1"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"costCenter": "ignored"},
            },
        },
    )
    assert doc[ENTERPRISE_USER] == {**ALICE[ENTERPRISE_USER], "costCenter": "CC1"}


# --- groups ----------------------------------------------------------------------------------


def test_legacy_add_members():
    assert group_patch(
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": "f648f8d5ea4e4cd38e9c"}]}
    ) == [MemberOp("add", (Member("f648f8d5ea4e4cd38e9c"),))]


def test_legacy_remove_with_value_array_removes_only_the_listed_members():
    assert group_patch(
        {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": "f648f8d5ea4e4cd38e9c"}]}
    ) == [MemberOp("remove", (Member("f648f8d5ea4e4cd38e9c"),))]


def test_rfc_remove_by_filter():
    assert group_patch({"op": "remove", "path": 'members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]'}) == [
        MemberOp("remove", (Member("7f4bc1a3-285e-48ae-8202-5accb43efb0e"),))
    ]


def test_remove_by_filter_with_or():
    assert group_patch({"op": "remove", "path": 'members[value eq "a" or value eq "b"]'}) == [
        MemberOp("remove", (Member("a"), Member("b")))
    ]


def test_remove_members_without_value_clears_the_group():
    assert group_patch({"op": "remove", "path": "members"}) == [MemberOp("clear")]


def test_replace_members():
    members = [{"value": "u1"}, {"value": "g1", "type": "Group"}]
    assert group_patch({"op": "replace", "path": "members", "value": members}) == [
        MemberOp("replace", (Member("u1"), Member("g1", "Group")))
    ]


def test_several_members_and_ops_in_order():
    assert group_patch(
        {"op": "Add", "path": "members", "value": [{"value": "u1", "type": "user"}, {"value": "u2"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
        {"op": "add", "path": "members", "value": [{"value": "u1"}]},
    ) == [
        MemberOp("add", (Member("u1", "User"), Member("u2"))),
        MemberOp("remove", (Member("u1"),)),
        MemberOp("add", (Member("u1"),)),
    ]


def test_path_less_group_replace():
    doc, member_ops = apply_patch(
        GROUP_TYPE,
        SALES,
        patch(
            {"op": "replace", "value": {"displayName": "Sales EMEA"}},
            {"op": "replace", "value": {"externalId": "new-external-id"}},
            {"op": "add", "value": {"members": [{"value": "u1"}]}},
        ),
    )
    assert doc == {"externalId": "new-external-id", "displayName": "Sales EMEA"}
    assert member_ops == [MemberOp("add", (Member("u1"),))]


def test_members_filter_other_than_value_eq_is_invalid_path():
    error = rejected(GROUP_TYPE, SALES, patch({"op": "remove", "path": 'members[type eq "User"]'}))
    assert error.scim_type == "invalidPath"


def test_member_without_value_is_invalid():
    error = rejected(GROUP_TYPE, SALES, patch({"op": "add", "path": "members", "value": [{"display": "Bob"}]}))
    assert error.scim_type == "invalidValue"
    assert error.detail.startswith("Operation 1 (add members): ")


def test_group_display_name_cannot_be_cleared():
    error = rejected(GROUP_TYPE, SALES, patch({"op": "replace", "path": "displayName", "value": ""}))
    assert error.scim_type == "invalidValue"
    assert "displayName" in error.detail


def test_error_found_by_validation_names_the_op_that_caused_it():
    error = rejected(
        USER_TYPE,
        ALICE,
        patch(
            {"op": "replace", "path": "title", "value": "CEO"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "replace", "path": "nickName", "value": "Al"},
        ),
    )
    assert error.detail.startswith("Operation 2 (remove name.givenName): name.givenName is required")


def test_only_the_final_state_must_be_valid():
    doc = user_patch(
        ALICE, {"op": "remove", "path": "name.givenName"}, {"op": "add", "path": "name.givenName", "value": "Alicia"}
    )
    assert doc["name"] == {"familyName": "Smith", "givenName": "Alicia"}
