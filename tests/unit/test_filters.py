"""scim.filters: filter text -> typed AST (RFC 7644 §3.4.2.2), and the errors for bad filters."""

from __future__ import annotations

import pytest

from scim.errors import ScimError
from scim.filters import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    And,
    Compare,
    Node,
    Not,
    Or,
    Present,
    ValuePath,
    matches,
    parse_filter,
    parse_path_filter,
)
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, USER, USER_TYPE


def parse(text: str) -> Node:
    return parse_filter(text, USER_TYPE)


def show(node: Node) -> str:
    """A compact, fully parenthesised rendering of the AST, to assert structure and precedence."""
    if isinstance(node, And):
        return f"({show(node.left)} and {show(node.right)})"
    if isinstance(node, Or):
        return f"({show(node.left)} or {show(node.right)})"
    if isinstance(node, Not):
        return f"not {show(node.expr)}"
    if isinstance(node, ValuePath):
        return f"{node.ref.attr.name}[{show(node.filter)}]"
    name = node.ref.leaf.name if node.ref.element else node.ref.name
    if isinstance(node, Present):
        return f"{name} pr"
    return f"{name} {node.op} {node.value!r}"


def error_of(text: str, rtype=USER_TYPE) -> ScimError:
    with pytest.raises(ScimError) as info:
        parse_filter(text, rtype)
    err = info.value
    assert err.status == 400
    assert err.scim_type == "invalidFilter"
    assert err.to_dict()["scimType"] == "invalidFilter"
    return err


# --- attribute operators -------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
def test_every_comparison_operator(op: str) -> None:
    node = parse(f'userName {op} "bjensen"')
    assert isinstance(node, Compare)
    assert node.ref.name == "userName"
    assert node.op == op
    assert node.value == "bjensen"


def test_present() -> None:
    node = parse("title pr")
    assert isinstance(node, Present)
    assert node.ref.name == "title"


@pytest.mark.parametrize("op", ["EQ", "Eq", "eQ"])
def test_operators_are_case_insensitive(op: str) -> None:
    assert show(parse(f'userName {op} "a"')) == "userName eq 'a'"


def test_pr_and_logical_operators_are_case_insensitive() -> None:
    assert (
        show(parse('title PR AND NOT (userName Eq "a") Or title Pr'))
        == "((title pr and not userName eq 'a') or title pr)"
    )


@pytest.mark.parametrize("text", ['USERNAME eq "a"', 'username eq "a"', 'UserName eq "a"'])
def test_attribute_names_are_case_insensitive(text: str) -> None:
    node = parse(text)
    assert isinstance(node, Compare)
    assert node.ref.name == "userName"  # resolved to the schema's spelling


def test_sub_attribute_names_are_case_insensitive() -> None:
    node = parse('NAME.GIVENNAME eq "Barbara"')
    assert isinstance(node, Compare)
    assert node.ref.name == "name.givenName"


# --- logical operators and precedence --------------------------------------------------------


def test_and_or_not() -> None:
    assert show(parse('userName eq "a" and title eq "b"')) == "(userName eq 'a' and title eq 'b')"
    assert show(parse('userName eq "a" or title eq "b"')) == "(userName eq 'a' or title eq 'b')"
    assert show(parse('not (userName eq "a")')) == "not userName eq 'a'"


def test_and_binds_tighter_than_or() -> None:
    a, b, c = 'userName eq "a"', 'title eq "b"', 'displayName eq "c"'
    expected = "(userName eq 'a' or (title eq 'b' and displayName eq 'c'))"
    assert show(parse(f"{a} or {b} and {c}")) == expected
    assert show(parse(f"{a} or ({b} and {c})")) == expected
    assert show(parse(f"{b} and {c} or {a}")) == "((title eq 'b' and displayName eq 'c') or userName eq 'a')"


def test_longer_chains_reassociate() -> None:
    text = 'title eq "1" or title eq "2" and title eq "3" and title eq "4" or title eq "5"'
    assert show(parse(text)) == "((title eq '1' or ((title eq '2' and title eq '3') and title eq '4')) or title eq '5')"


def test_parentheses_override_precedence() -> None:
    assert (
        show(parse('(userName eq "a" or title eq "b") and displayName eq "c"'))
        == "((userName eq 'a' or title eq 'b') and displayName eq 'c')"
    )
    assert (
        show(parse('userName eq "a" and (title eq "b" or displayName eq "c")'))
        == "(userName eq 'a' and (title eq 'b' or displayName eq 'c'))"
    )
    assert show(parse('((userName eq "a"))')) == "userName eq 'a'"


def test_not_applies_to_its_group_only() -> None:
    assert (
        show(parse('not (userName eq "a" or title eq "b") and displayName eq "c"'))
        == "(not (userName eq 'a' or title eq 'b') and displayName eq 'c')"
    )
    assert show(parse('not (not (userName eq "a"))')) == "not not userName eq 'a'"


def test_precedence_is_what_matches_evaluates() -> None:
    user = {"userName": "a", "title": "x", "displayName": "y"}
    # a or (b and c): true because of "a" alone; (a or b) and c would be false.
    assert matches(parse('userName eq "a" or title eq "b" and displayName eq "c"'), user)
    assert not matches(parse('(userName eq "a" or title eq "b") and displayName eq "c"'), user)


# --- value paths and complex attributes ------------------------------------------------------


def test_value_filter_with_logical_expression() -> None:
    node = parse('emails[type eq "work" and value co "@contoso.com"]')
    assert isinstance(node, ValuePath)
    assert node.ref.attr.name == "emails"
    assert show(node) == "emails[(type eq 'work' and value co '@contoso.com')]"
    assert all(ref.element for ref in (node.filter.left.ref, node.filter.right.ref))


def test_value_filter_followed_by_sub_attribute_comparison() -> None:
    node = parse('emails[type eq "work"].value eq "x@contoso.com"')
    assert show(node) == "emails[(type eq 'work' and value eq 'x@contoso.com')]"
    assert matches(
        node, {"emails": [{"type": "home", "value": "x@contoso.com"}, {"type": "work", "value": "X@Contoso.com"}]}
    )
    assert not matches(
        node, {"emails": [{"type": "home", "value": "x@contoso.com"}, {"type": "work", "value": "y@contoso.com"}]}
    )


def test_value_filter_combined_with_other_clauses() -> None:
    assert show(parse('emails[type eq "work"] and userName sw "a"')) == "(emails[type eq 'work'] and userName sw 'a')"
    assert show(parse('not (emails[not (type eq "work")])')) == "not emails[not type eq 'work']"


def test_value_filter_element_semantics() -> None:
    node = parse('emails[type eq "work" and value co "@contoso.com"]')
    # Both conditions must hold for the same element.
    assert not matches(
        node, {"emails": [{"type": "work", "value": "a@x.com"}, {"type": "home", "value": "a@contoso.com"}]}
    )
    assert matches(node, {"emails": [{"type": "work", "value": "a@CONTOSO.com"}]})


def test_sub_attributes() -> None:
    node = parse('name.familyName eq "Jensen"')
    assert isinstance(node, Compare)
    assert node.ref.name == "name.familyName"
    assert node.ref.attr.name == "name"
    assert node.ref.sub.name == "familyName"
    assert parse('emails.type eq "work"').ref.name == "emails.type"


def test_multi_valued_complex_without_sub_attribute_means_value() -> None:
    assert parse('emails eq "a@x.com"').ref.name == "emails.value"
    assert parse('emails co "x"').ref.name == "emails.value"


def test_urn_qualified_core_attributes() -> None:
    node = parse(f'{USER}:userName eq "a"')
    assert isinstance(node, Compare)
    assert node.ref.name == "userName"
    assert node.ref.urn is None
    assert parse(f'{USER}:name.givenName eq "B"').ref.name == "name.givenName"
    assert show(parse(f'{USER}:emails[type eq "work"]')) == "emails[type eq 'work']"


def test_urn_qualified_enterprise_attributes() -> None:
    node = parse(f'{ENTERPRISE_USER}:department eq "Sales"')
    assert node.ref.urn == ENTERPRISE_USER
    assert node.ref.name == f"{ENTERPRISE_USER}:department"
    manager = parse(f'{ENTERPRISE_USER}:manager.value eq "m1"')
    assert manager.ref.name == f"{ENTERPRISE_USER}:manager.value"


def test_urns_are_case_insensitive() -> None:
    node = parse(f'{ENTERPRISE_USER.upper()}:DEPARTMENT eq "Sales"')
    assert node.ref.urn == ENTERPRISE_USER
    assert parse(f'{USER.lower()}:username eq "a"').ref.name == "userName"


def test_unqualified_enterprise_names_resolve_in_the_extension() -> None:
    # Entra sends manager eq "<id>" without the enterprise URN.
    node = parse('manager eq "m1"')
    assert node.ref.urn == ENTERPRISE_USER
    assert node.ref.name == f"{ENTERPRISE_USER}:manager.value"
    assert parse('department eq "Sales"').ref.urn == ENTERPRISE_USER
    assert parse('manager.value eq "m1"').ref.name == f"{ENTERPRISE_USER}:manager.value"
    resource = {ENTERPRISE_USER: {"manager": {"value": "m1"}, "department": "Sales"}}
    assert matches(node, resource)
    assert not matches(parse('manager eq "m2"'), resource)


def test_group_member_filters() -> None:
    node = parse_filter('members eq "u1"', GROUP_TYPE)
    assert isinstance(node, Compare)
    assert node.ref.name == "members.value"
    assert parse_filter('members.value eq "u1"', GROUP_TYPE) == node
    assert parse_filter('displayName eq "Sales"', GROUP_TYPE).ref.name == "displayName"
    assert show(parse_filter('members[value eq "u1"]', GROUP_TYPE)) == "members[value eq 'u1']"


def test_user_groups_filter() -> None:
    assert parse('groups eq "g1"').ref.name == "groups.value"
    assert parse('groups.value eq "g1"').ref.name == "groups.value"


def test_parse_path_filter() -> None:
    node = parse_path_filter("emails", 'type eq "work"', USER_TYPE)
    assert show(node) == "emails[type eq 'work']"
    node = parse_path_filter(f"{USER}:emails", 'TYPE eq "work"', USER_TYPE)
    assert show(node) == "emails[type eq 'work']"


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'userName eq "a\"b"', 'a"b'),
        (r'userName eq "back\\slash"', "back\\slash"),
        (r'userName eq "\"\""', '""'),
        (r'userName eq "tab\there"', "tab\there"),
        (r'userName eq "\/"', "/"),
        (r'userName eq "caf\u00e9"', "café"),
        (r'userName eq "\ud83d\ude00"', "\U0001f600"),  # a JSON surrogate pair is one character
        ('userName eq "日本語 ü"', "日本語 ü"),
        ('userName eq ""', ""),
        ('userName eq "a or b and c ) ("', "a or b and c ) ("),
        ('userName eq "x\' OR 1=1 --"', "x' OR 1=1 --"),
    ],
)
def test_string_values_and_escapes(text: str, value: str) -> None:
    node = parse(text)
    assert isinstance(node, Compare)
    assert node.value == value


def test_booleans() -> None:
    assert parse("active eq true").value is True
    assert parse("active eq FALSE").value is False
    assert parse("active ne True").value is True
    assert show(parse("emails[primary eq true]")) == "emails[primary eq True]"
    # Lenient: a quoted "true" for a boolean attribute is read as the boolean.
    assert parse('active eq "true"').value is True


def test_null() -> None:
    node = parse("title eq null")
    assert isinstance(node, Compare)
    assert node.value is None
    assert parse("active ne NULL").value is None
    assert not matches(node, {"title": "x"})
    assert matches(node, {})
    assert matches(node, {"title": ""})


def test_numbers_are_tokenised() -> None:
    # No integer attribute in User, so a number is a well-formed value of the wrong type, not a syntax error.
    for number in ("42", "-1", "3.14", "1e10", "123456789"):
        err = error_of(f"userName eq {number}")
        assert "double quotes" in err.detail


def test_datetime_values_are_normalised() -> None:
    node = parse('meta.created gt "2026-01-31T12:00:00Z"')
    assert node.value == "2026-01-31T12:00:00.000Z"
    assert parse('meta.lastModified le "2026-01-31T13:00:00.5+01:00"').value == "2026-01-31T12:00:00.500Z"
    assert parse('meta.created ge "2026-01-31"').value == "2026-01-31T00:00:00.000Z"
    # Years before 1000 keep four digits, so text order stays time order.
    assert parse('meta.created gt "0999-01-01T00:00:00Z"').value == "0999-01-01T00:00:00.000Z"


def test_cached_filter_shapes_take_each_requests_values() -> None:
    assert parse('displayName eq "x"') == parse('displayName eq "x"')
    assert parse('userName eq "a"').value == "a" and parse('userName eq "b"').value == "b"
    assert parse('meta.created gt "2026-01-01T00:00:00Z"').value == "2026-01-01T00:00:00.000Z"
    assert parse_filter('displayName eq "x"', GROUP_TYPE).ref.attr is not parse('displayName eq "x"').ref.attr


@pytest.mark.parametrize(
    ("text", "other"),
    [
        ('userName eq "a@x"', 'userName eq "b@x"'),
        (' name.givenName  SW "Al" ', 'name.givenName SW "Bo"'),
        ('active eq "true"', 'active eq "false"'),
        ('meta.created gt "2026-01-01"', 'meta.created gt "2027-01-01"'),
        ('title co ""', 'title co "x"'),
        ('emails.value ew "@x.com"', 'emails.value ew "@y.com"'),
    ],
)
def test_a_simple_comparison_reads_the_same_before_and_after_its_shape_is_cached(text: str, other: str) -> None:
    first = parse(text)
    assert parse(text) == first
    assert parse(other) != first  # another value is not the cached one


@pytest.mark.parametrize("text", ['userName eo "a"', 'and eq "a"', 'userName eq "a" "b"', 'userName eq "\u0000"'])
def test_a_simple_looking_filter_that_is_not_valid_stays_invalid(text: str) -> None:
    for _ in range(2):
        assert error_of(text).scim_type == "invalidFilter"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('nickname2 eq "a"', "Unknown attribute 'nickname2'"),
        ('name.nickName eq "a"', "Unknown sub-attribute 'nickName'"),
        ('emails[foo eq "a"]', "Unknown sub-attribute 'foo'"),
        ('urn:example:schemas:Thing:userName eq "a"', "Unknown schema"),
        (f'{ENTERPRISE_USER}:userName eq "a"', "Unknown attribute 'userName'"),
    ],
)
def test_unknown_attributes(text: str, fragment: str) -> None:
    assert fragment in error_of(text).detail


def test_group_attributes_are_not_user_attributes() -> None:
    assert "Unknown attribute 'members'" in error_of('members eq "x"').detail
    assert "Unknown attribute 'userName'" in error_of('userName eq "x"', GROUP_TYPE).detail
    assert "Unknown attribute 'manager'" in error_of('manager eq "x"', GROUP_TYPE).detail


@pytest.mark.parametrize(
    "text",
    [
        "userName eq",
        'userName "a"',
        'userName eq "a" and',
        'and userName eq "a"',
        'userName eq "a" userName eq "b"',
        'userName eq "a")',
        '(userName eq "a"',
        'not userName eq "a"',
        'emails[type eq "work"',
        'emails type eq "work"]',
        "userName pr pr",
        'userName regex "a"',
        "userName eq alice",
        "userName eq 'a'",
        'userName == "a"',
        'userName eq "a" && title pr',
        "()",
        "[]",
    ],
)
def test_bad_syntax(text: str) -> None:
    err = error_of(text)
    assert err.detail


def test_syntax_error_points_at_the_problem() -> None:
    err = error_of('userName eq "a" title eq "b"')
    assert "position 17" in err.detail
    assert "ends too early" in error_of("userName eq").detail
    assert 'Unexpected character "\'"' in error_of("userName eq 'a'").detail


def test_unknown_operator_is_named() -> None:
    assert "regex" in error_of('userName regex "a"').detail


@pytest.mark.parametrize(
    "text", ['userName eq "abc', 'userName eq "abc\\"', 'userName eq "a\x01b"', 'userName eq "bad \\x escape"']
)
def test_unterminated_or_malformed_string(text: str) -> None:
    err = error_of(text)
    assert "string starting at position 13" in err.detail


def test_unpaired_surrogate_and_nul_escapes_are_rejected() -> None:
    assert "surrogate" in error_of(r'userName eq "\ud800"').detail
    assert "NUL" in error_of(r'userName eq "a\u0000b"').detail


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le", "co", "sw", "ew"])
def test_ordering_and_substring_on_boolean(op: str) -> None:
    err = error_of(f"active {op} true")
    assert "boolean" in err.detail
    assert op in err.detail


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('active eq "yes"', "true or false"),
        ("active eq 1", "true or false"),
        ("userName eq true", "not a boolean"),
        ("title gt null", "null"),
        ("title co null", "null"),
        ('meta.created co "2026"', "dateTime"),
        ('meta.created gt "yesterday"', "dateTime"),
        ('meta.created gt "0001-01-01T00:00:00+01:00"', "dateTime"),  # before year 1 in UTC
        ('x509Certificates.value gt "AA=="', "binary"),
        ('name eq "Barbara"', "complex attribute"),
        ('name[givenName eq "B"]', "complex attribute"),
        ('userName[value eq "B"]', "not a multi-valued complex attribute"),
        ('emails[value eq "a" and phoneNumbers[value eq "b"]]', "nested"),
        ('emails[name.givenName eq "a"]', "sub-attribute names"),
        ('emails.value[type eq "work"].value eq "x"', "value filter"),
    ],
)
def test_semantic_errors(text: str, fragment: str) -> None:
    assert fragment in error_of(text).detail


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_empty_filter(text: str) -> None:
    assert "empty" in error_of(text).detail


def test_over_long_filter() -> None:
    text = " or ".join(['userName eq "a"'] * 1000)
    assert len(text) > MAX_FILTER_LENGTH
    err = error_of(text)
    assert str(MAX_FILTER_LENGTH) in err.detail
    # Just under the limit is fine, and evaluates without hitting recursion limits.
    clause = 'title eq "a"'
    text = " or ".join([clause] * ((MAX_FILTER_LENGTH + 4) // (len(clause) + 4)))
    assert len(text) <= MAX_FILTER_LENGTH
    node = parse(text)
    assert not matches(node, {"title": "b"})
    assert matches(node, {"title": "A"})


def test_over_deep_filter() -> None:
    depth = MAX_FILTER_DEPTH + 1
    err = error_of("(" * depth + 'userName eq "a"' + ")" * depth)
    assert str(MAX_FILTER_DEPTH) in err.detail
    err = error_of("not (" * depth + 'userName eq "a"' + ")" * depth)
    assert str(MAX_FILTER_DEPTH) in err.detail
    # At the limit it parses.
    ok = "(" * MAX_FILTER_DEPTH + 'userName eq "a"' + ")" * MAX_FILTER_DEPTH
    assert show(parse(ok)) == "userName eq 'a'"


def test_error_body_shape() -> None:
    body = error_of('nope eq "a"').to_dict()
    assert body["status"] == "400"
    assert body["scimType"] == "invalidFilter"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "nope" in body["detail"]
