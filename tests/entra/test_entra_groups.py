"""Groups: Microsoft's create body, membership in both dialects, renames, reference filters."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GROUP_SCHEMA
from tests.entra.shapes import (
    FLAG,
    MS_GROUP_SCHEMA,
    assert_scim_error,
    create_group,
    create_user,
    eq_filter,
    group_body,
    member_ids,
    patch,
    send,
    unique,
)


def users(http: httpx.Client, count: int) -> list[str]:
    return [create_user(http)["id"] for _ in range(count)]


def test_create_with_microsofts_schema_urn_is_201_and_empty(http: httpx.Client) -> None:
    name = unique("Sales")
    response = send(http, "POST", "/Groups", group_body(name))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["schemas"] == [GROUP_SCHEMA] and MS_GROUP_SCHEMA not in response.text
    assert body["displayName"] == name and body["members"] == [] and body["id"]
    assert response.headers["location"] == body["meta"]["location"]
    assert body["meta"]["resourceType"] == "Group" and body["meta"]["version"]


def test_duplicate_display_name_in_another_case_is_409(http: httpx.Client) -> None:
    name = unique("Finance")
    group = create_group(http, name)
    error = assert_scim_error(send(http, "POST", "/Groups", group_body(name.upper())), 409, "uniqueness")
    assert name.upper() in error["detail"]
    found = http.get(f"/Groups?excludedAttributes=members&{eq_filter('displayName', name.lower())}").json()
    assert [r["id"] for r in found["Resources"]] == [group["id"]]


def test_legacy_membership_add_and_remove_with_a_value_array(http: httpx.Client) -> None:
    ids = users(http, 4)
    group = create_group(http)
    added = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "Add", "path": "members", "value": [{"$ref": None, "value": member} for member in ids]}),
    )
    assert added.status_code == 204 and added.content == b""
    assert member_ids(http, group["id"]) == set(ids)
    removed = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": ids[0]}]}),
    )
    assert removed.status_code == 204
    # Only the listed member goes: reading the value array as "remove all" would wipe the group.
    assert member_ids(http, group["id"]) == set(ids[1:])


def test_modern_membership_remove_uses_the_rfc_filter(http: httpx.Client) -> None:
    ids = users(http, 3)
    group = create_group(http)
    send(
        http,
        "PATCH",
        f"/Groups/{group['id']}?{FLAG}",
        patch({"op": "add", "path": "members", "value": [{"value": member} for member in ids]}),
    )
    removed = send(
        http, "PATCH", f"/Groups/{group['id']}?{FLAG}", patch({"op": "remove", "path": f'members[value eq "{ids[1]}"]'})
    )
    assert removed.status_code == 204, removed.text
    assert member_ids(http, group["id"]) == {ids[0], ids[2]}


@pytest.mark.parametrize("query", ["", f"?{FLAG}"])
def test_several_members_and_ops_in_one_patch_apply_in_order(http: httpx.Client, query: str) -> None:
    ids = users(http, 3)
    group = create_group(http)
    response = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}{query}",
        patch(
            {"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]},
            {"op": "add", "path": "members", "value": [{"value": ids[2]}]},
            {"op": "remove", "path": "members", "value": [{"value": ids[2]}]},
            {"op": "add", "path": "members", "value": [{"value": ids[1]}]},
        ),
    )
    assert response.status_code == 204, response.text
    assert member_ids(http, group["id"]) == {ids[0], ids[1]}


def test_membership_is_idempotent(http: httpx.Client) -> None:
    ids = users(http, 2)
    group = create_group(http)
    for _ in range(2):
        response = send(
            http,
            "PATCH",
            f"/Groups/{group['id']}",
            patch({"op": "Add", "path": "members", "value": [{"value": ids[0]}]}),
        )
        assert response.status_code == 204
    assert member_ids(http, group["id"]) == {ids[0]}
    for _ in range(2):
        response = send(
            http,
            "PATCH",
            f"/Groups/{group['id']}",
            patch({"op": "Remove", "path": "members", "value": [{"value": ids[1]}]}),
        )
        assert response.status_code == 204
    assert member_ids(http, group["id"]) == {ids[0]}


def test_replace_members_and_remove_all(http: httpx.Client) -> None:
    ids = users(http, 3)
    group = create_group(http)
    send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}),
    )
    replaced = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "replace", "path": "members", "value": [{"value": ids[1]}, {"value": ids[2]}]}),
    )
    assert replaced.status_code == 204
    assert member_ids(http, group["id"]) == {ids[1], ids[2]}
    cleared = send(http, "PATCH", f"/Groups/{group['id']}", patch({"op": "remove", "path": "members"}))
    assert cleared.status_code == 204
    assert member_ids(http, group["id"]) == set()


@pytest.mark.parametrize("dialect_op", ["Replace", "replace"])
def test_pathless_rename_and_external_id(http: httpx.Client, dialect_op: str) -> None:
    group = create_group(http)
    name = unique("Renamed")
    renamed = send(http, "PATCH", f"/Groups/{group['id']}", patch({"op": dialect_op, "value": {"displayName": name}}))
    assert renamed.status_code == 204, renamed.text
    relabelled = send(
        http, "PATCH", f"/Groups/{group['id']}", patch({"op": dialect_op, "value": {"externalId": "ext-42"}})
    )
    assert relabelled.status_code == 204
    read = http.get(f"/Groups/{group['id']}?excludedAttributes=members").json()
    assert read["displayName"] == name and read["externalId"] == "ext-42"
    assert http.get(f"/Groups?{eq_filter('displayName', group['displayName'])}").json()["totalResults"] == 0


def test_patch_asked_with_excluded_members_answers_200_without_members(http: httpx.Client) -> None:
    member = create_user(http)["id"]
    group = create_group(http)
    response = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}?excludedAttributes=members",
        patch({"op": "add", "path": "members", "value": [{"value": member}]}),
    )
    assert response.status_code == 200, response.text
    assert "members" not in response.json() and response.json()["id"] == group["id"]


def test_rename_to_a_taken_name_is_409_and_changes_nothing(http: httpx.Client) -> None:
    first, second = create_group(http), create_group(http)
    response = send(
        http,
        "PATCH",
        f"/Groups/{second['id']}",
        patch({"op": "replace", "value": {"displayName": first["displayName"].swapcase()}}),
    )
    assert_scim_error(response, 409, "uniqueness")
    assert http.get(f"/Groups/{second['id']}").json()["displayName"] == second["displayName"]


def test_adding_an_unknown_member_is_400_and_changes_nothing(http: httpx.Client) -> None:
    member = create_user(http)["id"]
    group = create_group(http)
    response = send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "Add", "path": "members", "value": [{"value": member}, {"value": "no-such-user"}]}),
    )
    error = assert_scim_error(response, 400, "invalidValue")
    assert "no-such-user" in error["detail"]
    assert member_ids(http, group["id"]) == set()


def test_compound_membership_reference_filter(http: httpx.Client) -> None:
    member, outsider = create_user(http)["id"], create_user(http)["id"]
    group = create_group(http)
    send(http, "PATCH", f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": [{"value": member}]}))
    for attribute in ("members", "members.value"):
        hit = http.get(
            "/Groups?excludedAttributes=members&filter="
            + f'id eq "{group["id"]}" and {attribute} eq "{member}"'.replace(" ", "+").replace('"', "%22")
        )
        assert hit.status_code == 200, hit.text
        assert [r["id"] for r in hit.json()["Resources"]] == [group["id"]]
        miss = http.get("/Groups", params={"filter": f'id eq "{group["id"]}" and {attribute} eq "{outsider}"'})
        assert miss.status_code == 200 and miss.json()["totalResults"] == 0


def test_deleting_a_member_user_removes_it_from_its_groups(http: httpx.Client) -> None:
    ids = users(http, 2)
    group = create_group(http)
    send(
        http,
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "Add", "path": "members", "value": [{"value": member} for member in ids]}),
    )
    assert http.delete(f"/Users/{ids[0]}").status_code == 204
    assert member_ids(http, group["id"]) == {ids[1]}


def test_delete_group_then_again_is_404(http: httpx.Client) -> None:
    group = create_group(http)
    assert http.delete(f"/Groups/{group['id']}").status_code == 204
    assert_scim_error(http.get(f"/Groups/{group['id']}?excludedAttributes=members"), 404)
    assert_scim_error(http.delete(f"/Groups/{group['id']}"), 404)
