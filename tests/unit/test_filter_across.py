"""Filters over several resource types (scim.filters.parse_filter_across): an attribute a type lacks is
unassigned there, so the filter folds for that type; one no type has is invalidFilter."""

from __future__ import annotations

import pytest

from scim.errors import ScimError
from scim.filters import And, Compare, Not, Present, ValuePath, matches, parse_filter_across
from scim.schemas import GROUP_TYPE, USER_TYPE

TYPES = [USER_TYPE, GROUP_TYPE]


def across(text: str) -> dict:
    return parse_filter_across(text, TYPES)


def test_an_attribute_of_one_type_folds_the_other_to_a_constant() -> None:
    found = across('userName eq "a"')
    assert isinstance(found["User"], Compare) and found["Group"] is False
    found = across("not (title pr)")
    assert found["User"] == Not(Present(found["User"].expr.ref)) and found["Group"] is True
    found = across('title eq "x" or displayName sw "A"')
    assert isinstance(found["Group"], Compare) and found["Group"].ref.name == "displayName"
    found = across('userName eq "a" and displayName eq "b"')
    assert isinstance(found["User"], And) and found["Group"] is False


def test_value_filters_fold_on_the_type_without_the_attribute() -> None:
    found = across('emails[type eq "work"].value co "@x"')
    assert isinstance(found["User"], ValuePath) and found["Group"] is False
    found = across('members[type eq "User"]')
    assert found["User"] is False and isinstance(found["Group"], ValuePath)


def test_the_folded_filter_agrees_with_evaluating_unassigned_attributes() -> None:
    group = {"displayName": "Night Shift"}
    for text, expected in (
        ('displayName co "night" and not (userName pr)', True),
        ('userName eq "x" or displayName eq "Night Shift"', True),
        ('title eq "x"', False),
        ('not (title eq "x")', True),
    ):
        node = across(text)["Group"]
        assert (node if isinstance(node, bool) else matches(node, group)) is expected, text


@pytest.mark.parametrize(
    "text", ["shoeSize eq 3", 'userName eq "a" or shoeSize pr', "emails[kind eq 1]", 'members[nope eq "x"]']
)
def test_an_attribute_no_type_has_is_invalid_filter(text: str) -> None:
    with pytest.raises(ScimError) as refused:
        across(text)
    assert refused.value.scim_type == "invalidFilter"
    assert "no resource type searched (User, Group) has it" in refused.value.detail


def test_other_faults_are_refused_as_for_one_type() -> None:
    for text in ('active eq "yes"', "userName eq", ""):
        with pytest.raises(ScimError) as refused:
            across(text)
        assert refused.value.scim_type == "invalidFilter"
    with pytest.raises(ScimError):
        parse_filter_across("x" * 5000, TYPES, max_length=4096)
