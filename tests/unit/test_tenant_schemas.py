"""Per-IdP schema profiles and declared extension schemas (scim.profiles, scim.extensions,
scim.tenant): what each tenant validates, PATCHes, filters and advertises."""

import orjson
import pytest

from scim.errors import ScimError
from scim.extensions import parse_declarations
from scim.filters import matches, parse_filter
from scim.patch import apply_patch
from scim.profiles import PROFILES, profile_named
from scim.resources import to_resource
from scim.schemas import ENTERPRISE_USER, PATCH_OP, USER
from scim.tenant import DEFAULT, tenant
from scim.validate import validate_resource

ACME = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
ACME_GROUP = "urn:ietf:params:scim:schemas:extension:Acme:2.0:Group"
DECLARATIONS = [
    {
        "id": ACME,
        "name": "Acme",
        "description": "Acme's HR attributes",
        "attributes": [
            {"name": "costCenter", "type": "string"},
            {"name": "badge", "type": "integer", "uniqueness": "server"},
            {"name": "remote", "type": "boolean"},
            {"name": "rate", "type": "decimal"},
            {"name": "hired", "type": "dateTime"},
            {"name": "skills", "type": "string", "multiValued": True},
            {
                "name": "office",
                "type": "complex",
                "subAttributes": [{"name": "building"}, {"name": "floor", "type": "integer"}],
            },
        ],
    },
    {"id": ACME_GROUP, "resourceType": "Group", "attributes": [{"name": "budget", "type": "integer"}]},
]


def acme(*, strict: bool = False, profile: str = "rfc7643", declarations: list | None = None):
    declared = parse_declarations(DECLARATIONS if declarations is None else declarations)
    return tenant(profile, strict, orjson.dumps(declared).decode())


def refused(call, *args, **kwargs) -> ScimError:
    with pytest.raises(ScimError) as info:
        call(*args, **kwargs)
    return info.value


# --- profiles --------------------------------------------------------------------------------------


def test_the_default_tenant_is_the_meta_networks_connector() -> None:
    assert tenant() is DEFAULT and DEFAULT.user.profile == "meta-networks"
    assert DEFAULT.user.required == ("userName", "name.familyName", "name.givenName")
    error = refused(validate_resource, DEFAULT.user, {"userName": "a", "name": {"givenName": "A"}})
    assert error.scim_type == "invalidValue" and "name.familyName is required" in error.detail
    phone = {"userName": "a", "name": {"givenName": "A", "familyName": "B"}}
    phone["phoneNumbers"] = [{"type": "work", "value": "312-320-0932"}]
    assert "E.164" in refused(validate_resource, DEFAULT.user, phone).detail


def test_rfc7643_requires_only_user_name_and_takes_any_phone() -> None:
    rfc = tenant("rfc7643").user
    assert rfc.required == ("userName",)
    doc = validate_resource(rfc, {"userName": "a", "phoneNumbers": [{"type": "work", "value": "312-320-0932"}]})
    assert doc["phoneNumbers"] == [{"type": "work", "value": "312-320-0932"}]
    assert "userName is required" in refused(validate_resource, rfc, {"name": {"givenName": "A"}}).detail
    name = next(a for a in rfc.schemas[USER].attributes if a.name == "name")
    assert not name.required and not any(sub.required for sub in name.sub_attributes)
    # The advertised schema says so.
    advertised = {a["name"]: a for a in rfc.schemas[USER].to_dict("http://x")["attributes"]}
    assert advertised["name"]["required"] is False and advertised["userName"]["required"] is True
    assert "E.164" not in advertised["phoneNumbers"]["description"]


def test_an_unknown_profile_is_named() -> None:
    with pytest.raises(ValueError, match="known: meta-networks, rfc7643"):
        profile_named("okta")
    assert set(PROFILES) == {"meta-networks", "rfc7643"}


def test_each_tenant_is_its_own_resource_type_and_cached() -> None:
    assert tenant("rfc7643") is tenant("rfc7643")
    assert tenant("rfc7643").user is not DEFAULT.user
    assert tenant("rfc7643", True).user.strict and not tenant("rfc7643").user.strict


# --- what is ignored is said -----------------------------------------------------------------------


def test_unknown_attributes_are_ignored_and_named() -> None:
    ignored: list[str] = []
    body = {
        "schemas": [USER],
        "userName": "a",
        "nickName": "n",
        "favouriteColour": "blue",
        f"{ACME}:costCenter": "42",
        ACME: {"badge": 7},
    }
    doc = validate_resource(tenant("rfc7643").user, body, ignored=ignored)
    assert doc == {"userName": "a", "nickName": "n"}
    assert sorted(ignored) == sorted(["favouriteColour", f"{ACME}:costCenter", ACME])


def test_a_strict_tenant_refuses_what_it_does_not_keep() -> None:
    error = refused(validate_resource, tenant("rfc7643", True).user, {"userName": "a", "favouriteColour": "b"})
    assert error.status == 400 and error.scim_type == "invalidValue"
    assert "favouriteColour" in error.detail and "strict" in error.detail
    # schemas, id and meta are part of every body, never "unknown".
    doc = validate_resource(tenant("rfc7643", True).user, {"schemas": [USER], "userName": "a", "meta": {}, "id": "x"})
    assert doc == {"userName": "a"}


def test_patch_names_ignored_paths_and_strict_refuses_them() -> None:
    ignored: list[str] = []
    body = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "path": "favouriteColour", "value": "b"},
            {"op": "add", "value": {f"{ACME}:costCenter": "9", "title": "T"}},
        ],
    }
    doc, _ = apply_patch(tenant("rfc7643").user, {"userName": "a"}, body, ignored=ignored)
    assert doc == {"userName": "a", "title": "T"}
    assert ignored == ["favouriteColour", f"{ACME}:costCenter"]
    error = refused(apply_patch, tenant("rfc7643", True).user, {"userName": "a"}, body)
    assert "favouriteColour" in error.detail and error.scim_type == "invalidValue"


# --- declared extensions ---------------------------------------------------------------------------


def test_declared_attributes_are_validated_and_stored_in_canonical_form() -> None:
    user = acme().user
    body = {
        "userName": "a",
        ACME: {"costCenter": "42", "badge": "7", "remote": "True", "rate": 4, "hired": "2026-01-31T13:00:00+01:00"},
        f"{ACME}:skills": ["sql", "go"],
        f"{ACME}:office": {"building": "B1", "floor": "3"},
    }
    doc = validate_resource(user, body)
    assert doc[ACME] == {
        "costCenter": "42",
        "badge": 7,
        "remote": True,
        "rate": 4.0,
        "hired": "2026-01-31T12:00:00.000Z",
        "skills": ["sql", "go"],
        "office": {"building": "B1", "floor": 3},
    }
    for value, word in ((("x",), "integer"), ("seven", "integer"), (True, "integer"), (2**63, "64 bits")):
        assert word in refused(validate_resource, user, {"userName": "a", ACME: {"badge": value}}).detail
    assert "true or false" in refused(validate_resource, user, {"userName": "a", ACME: {"remote": "yes"}}).detail
    assert "dateTime" in refused(validate_resource, user, {"userName": "a", ACME: {"hired": "soon"}}).detail


def test_a_required_declared_attribute_makes_the_extension_required() -> None:
    declared = [{"id": ACME, "attributes": [{"name": "costCenter", "required": True}]}]
    user = acme(declarations=declared).user
    assert user.required == ("userName", f"{ACME}:costCenter")
    assert f"{ACME}:costCenter is required" in refused(validate_resource, user, {"userName": "a"}).detail
    assert validate_resource(user, {"userName": "a", ACME: {"costCenter": "1"}})[ACME] == {"costCenter": "1"}
    types = user.to_dict("http://x")
    assert types["schemaExtensions"] == [
        {"schema": ENTERPRISE_USER, "required": False},
        {"schema": ACME, "required": True},
    ]
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f"{ACME}:costCenter"}]}
    error = refused(apply_patch, user, {"userName": "a", ACME: {"costCenter": "1"}}, patch)
    assert "costCenter is required" in error.detail


def test_patch_reaches_declared_attributes_in_both_entra_dialects() -> None:
    user = acme().user
    stored = {"userName": "a"}
    path_form = {"schemas": [PATCH_OP], "Operations": [{"op": "Add", "path": f"{ACME}:costCenter", "value": "42"}]}
    pathless = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "value": {f"{ACME}:remote": "False", f"{ACME}:badge": 12}}],
    }
    doc, _ = apply_patch(user, stored, path_form)
    doc, _ = apply_patch(user, doc, pathless)
    assert doc[ACME] == {"costCenter": "42", "remote": False, "badge": 12}
    doc, _ = apply_patch(user, doc, {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f"{ACME}:badge"}]})
    assert doc[ACME] == {"costCenter": "42", "remote": False}


def test_filters_resolve_declared_attributes_and_refuse_undeclared() -> None:
    user = acme().user
    doc = {"userName": "a", ACME: {"costCenter": "42", "badge": 7}}
    assert matches(parse_filter(f'{ACME}:costCenter eq "42"', user), doc)
    assert matches(parse_filter("badge gt 5", user), doc)  # unqualified, as Entra writes manager
    assert not matches(parse_filter(f"{ACME}:badge lt 5", user), doc)
    error = refused(parse_filter, f'{ACME}:nope eq "x"', user)
    assert error.scim_type == "invalidFilter"
    assert refused(parse_filter, f'{ACME}:costCenter eq "42"', tenant("rfc7643").user).scim_type == "invalidFilter"


def test_group_extensions_are_the_groups_own() -> None:
    group = acme().group
    assert group.extensions == (ACME_GROUP,)
    assert validate_resource(group, {"displayName": "g", ACME_GROUP: {"budget": "100"}})[ACME_GROUP] == {"budget": 100}
    assert [schema.id for schema in acme().schemas][-2:] == [ACME, ACME_GROUP]


@pytest.mark.parametrize(
    ("declarations", "words"),
    [
        ({}, "JSON array"),
        ([{"attributes": [{"name": "a"}]}], 'needs an "id"'),
        ([{"id": "acme:costs", "attributes": [{"name": "a"}]}], "not a schema URN"),
        ([{"id": "urn:acme: spaced", "attributes": [{"name": "a"}]}], "not a schema URN"),
        ([{"id": USER, "attributes": [{"name": "a"}]}], "server's own schemas"),
        ([{"id": ACME, "attributes": []}], "non-empty array"),
        ([{"id": ACME, "attributes": [{"name": "9lives"}]}], "not an attribute name"),
        ([{"id": ACME, "attributes": [{"name": "a", "type": "blob"}]}], "type must be one of"),
        ([{"id": ACME, "attributes": [{"name": "a"}, {"name": "A"}]}], "declared twice"),
        ([{"id": ACME, "attributes": [{"name": "a", "type": "complex"}]}], 'needs "subAttributes"'),
        (
            [
                {
                    "id": ACME,
                    "attributes": [
                        {"name": "a", "type": "complex", "subAttributes": [{"name": "b", "type": "complex"}]}
                    ],
                }
            ],
            "cannot be complex",
        ),
        ([{"id": ACME, "attributes": [{"name": "a", "required": "yes"}]}], "true or false"),
        ([{"id": ACME, "attributes": [{"name": "a", "uniqueness": "global"}]}], "uniqueness must be one of"),
        ([{"id": ACME, "attributes": [{"name": "a", "multiValued": True, "uniqueness": "server"}]}], "single-valued"),
        ([{"id": ACME, "attributes": [{"name": "a", "type": "integer", "canonicalValues": ["1"]}]}], "strings only"),
        ([{"id": ACME, "attributes": [{"name": "a", "colour": "red"}]}], "unknown key"),
        ([{"id": ACME, "resourceType": "Device", "attributes": [{"name": "a"}]}], "resourceType"),
        ([{"id": ACME, "attributes": [{"name": "a"}]}, {"id": ACME.lower(), "attributes": [{"name": "b"}]}], "twice"),
    ],
)
def test_a_bad_declaration_is_refused_saying_what_to_fix(declarations: object, words: str) -> None:
    error = refused(parse_declarations, declarations)
    assert error.status == 400 and error.scim_type == "invalidValue"
    assert words in error.detail


def test_a_declaration_is_stored_in_canonical_form_as_schemas_lists_it() -> None:
    [declared] = parse_declarations([{"id": ACME, "attributes": [{"name": "site", "type": "reference"}]}])
    assert declared == {
        "id": ACME,
        "resourceType": "User",
        "name": "Acme",
        "description": "",
        "attributes": [
            {
                "name": "site",
                "type": "reference",
                "multiValued": False,
                "description": "",
                "required": False,
                "caseExact": False,
                "mutability": "readWrite",
                "returned": "default",
                "uniqueness": "none",
                "canonicalValues": [],
                "referenceTypes": ["external"],
                "subAttributes": [],
            }
        ],
    }
    schema = acme(declarations=[declared]).user.schemas[ACME].to_dict("http://x")
    assert schema["id"] == ACME and schema["attributes"][0]["referenceTypes"] == ["external"]
    # What /Schemas returns can be declared again as it is.
    assert parse_declarations([{**schema, "resourceType": "User"}])[0]["attributes"][0]["name"] == "site"


# --- a declaration changed under stored data -------------------------------------------------------


def test_answers_leave_out_what_the_tenant_no_longer_declares_or_never_returns() -> None:
    declared = [
        {"id": ACME, "attributes": [{"name": "costCenter"}, {"name": "pin", "returned": "never"}]},
    ]
    rtype = acme(declarations=declared).user
    stored = {
        "userName": "a",
        ACME: {"costCenter": "42", "pin": "1234", "dropped": "x"},
        "urn:example:gone:1.0": {"old": 1},
    }
    answer = to_resource(rtype, "id1", stored, version=1, created="t", modified="t", base_url="http://x")
    assert answer[ACME] == {"costCenter": "42"} and "urn:example:gone:1.0" not in answer
    assert answer["schemas"] == [USER, ACME]
    assert stored[ACME] == {"costCenter": "42", "pin": "1234", "dropped": "x"}  # the stored document is untouched
    plain = {"userName": "b", ENTERPRISE_USER: {"department": "D"}}
    assert rtype.answered_doc(plain) is plain  # nothing to leave out: no copy
    only_hidden = {"userName": "c", ACME: {"pin": "1"}}
    assert rtype.answered_doc(only_hidden) == {"userName": "c"}


def test_a_patch_keeps_stored_values_the_tenant_no_longer_declares_even_when_strict() -> None:
    stored = {"userName": "a", "urn:example:gone:1.0": {"old": 1}, ACME: {"costCenter": "42", "dropped": "x"}}
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "T"}]}
    for strict in (False, True):
        ignored: list[str] = []
        doc, _ = apply_patch(acme(strict=strict).user, stored, body, ignored=ignored)
        assert doc == {**stored, "title": "T"} and ignored == []
    # A replace of the whole document (PUT) is checked as sent: what is not declared is not kept.
    ignored = []
    assert validate_resource(acme().user, stored, ignored=ignored) == {"userName": "a", ACME: {"costCenter": "42"}}
    assert ignored == ["urn:example:gone:1.0", f"{ACME}:dropped"]


def test_unknown_sub_attributes_of_known_complex_attributes_are_named_or_refused() -> None:
    ignored: list[str] = []
    body = {"userName": "a", "name": {"givenName": "G", "nickname": "N"}, "emails": [{"value": "a@x", "label": "home"}]}
    doc = validate_resource(tenant("rfc7643").user, body, ignored=ignored)
    assert doc["name"] == {"givenName": "G"} and doc["emails"] == [{"value": "a@x"}]
    assert ignored == ["name.nickname", "emails.label"]
    error = refused(validate_resource, tenant("rfc7643", True).user, body)
    assert error.scim_type == "invalidValue" and "name.nickname" in error.detail
    ignored = []
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "name", "value": {"middle": "M"}}]}
    apply_patch(tenant("rfc7643").user, {"userName": "a"}, patch, ignored=ignored)
    assert ignored == ["name.middle"]
    assert refused(apply_patch, tenant("rfc7643", True).user, {"userName": "a"}, patch).scim_type == "invalidValue"
