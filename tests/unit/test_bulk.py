"""Bulk requests read, ordered and resolved (scim/bulk.py): forward and backward bulkId references,
references nested in members and PATCH paths, circular ones refused, unknown and failed ones."""

from __future__ import annotations

import pytest

from scim.bulk import BULK_REQUEST, order, read_request, resolve
from scim.errors import ScimError


def request(*operations: dict, **extra: object) -> dict:
    return {"schemas": [BULK_REQUEST], "Operations": list(operations), **extra}


def user(bulk_id: str, name: str) -> dict:
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": {"userName": name}}


def group(bulk_id: str, *member_ids: str) -> dict:
    members = [{"type": "Group" if m.startswith("g") else "User", "value": f"bulkId:{m}"} for m in member_ids]
    return {
        "method": "POST",
        "path": "/Groups",
        "bulkId": bulk_id,
        "data": {"displayName": bulk_id, "members": members},
    }


def ran(body: dict) -> list[str]:
    operations, _ = read_request(body, 100)
    return [op.bulk_id or f"{op.method} {op.path}" for op in order(operations)]


def test_backward_references_keep_the_request_order() -> None:
    assert ran(request(user("u1", "a"), user("u2", "b"), group("g1", "u1", "u2"))) == ["u1", "u2", "g1"]


def test_a_forward_reference_runs_the_create_it_names_first() -> None:
    # RFC 7644 §3.7.2: the group names a user created later in the request.
    assert ran(request(group("g1", "u1"), user("u1", "a"), user("u2", "b"))) == ["u1", "g1", "u2"]


def test_forward_references_through_nested_groups_and_patch_paths() -> None:
    patch = {
        "method": "PATCH",
        "path": "/Groups/bulkId:g2",
        "data": {"Operations": [{"op": "remove", "path": 'members[value eq "bulkId:u1"]'}]},
    }
    # The PATCH names g2 in its path and u1 in its operation's path; g2 names g1, which names u1.
    assert ran(request(patch, group("g2", "g1"), group("g1", "u1"), user("u1", "a"))) == [
        "u1",
        "g1",
        "g2",
        "PATCH /Groups/bulkId:g2",
    ]


def test_resolve_replaces_every_reference_with_the_created_id() -> None:
    operations, _ = read_request(
        request(
            {
                "method": "PATCH",
                "path": "/Groups/bulkId:g1",
                "data": {
                    "Operations": [
                        {"op": "add", "path": "members", "value": [{"value": "bulkId:u1"}]},
                        {"op": "remove", "path": 'members[value eq "bulkId:u2"]'},
                    ]
                },
            },
            {
                "method": "PUT",
                "path": "/Users/bulkId:u1",
                "data": {"userName": "bulkId:u1", "manager": {"value": "bulkId:u2"}},
            },
        ),
        100,
    )
    created: dict[str, str | None] = {"g1": "G-1", "u1": "U-1", "u2": "U-2"}
    path, data = resolve(operations[0], created)
    assert path == "/Groups/G-1"
    assert data == {
        "Operations": [
            {"op": "add", "path": "members", "value": [{"value": "U-1"}]},
            {"op": "remove", "path": 'members[value eq "U-2"]'},
        ]
    }
    path, data = resolve(operations[1], created)
    # A userName is a name, not a reference: only "value" members and paths are resolved.
    assert (path, data) == ("/Users/U-1", {"userName": "bulkId:u1", "manager": {"value": "U-2"}})


def test_circular_references_get_409_and_the_rest_still_runs() -> None:
    operations, _ = read_request(request(group("g1", "g2"), group("g2", "g1"), user("u1", "a")), 100)
    ordered = order(operations)
    assert [op.bulk_id for op in ordered] == ["g2", "g1", "u1"]
    problems = {op.bulk_id: op.problem for op in ordered}
    for bulk_id in ("g1", "g2"):
        problem = problems[bulk_id]
        assert problem is not None and problem.status == 409
        assert "Circular" in problem.detail and "'g1'" in problem.detail and "'g2'" in problem.detail
    assert problems["u1"] is None


def test_a_group_that_names_itself_is_circular() -> None:
    operations, _ = read_request(request(group("g1", "g1")), 100)
    (op,) = order(operations)
    assert op.problem is not None and op.problem.status == 409


def test_an_unknown_or_failed_bulk_id_fails_only_its_operation() -> None:
    operations, _ = read_request(request(group("g1", "nobody"), group("g2", "u1")), 100)
    with pytest.raises(ScimError) as unknown:
        resolve(operations[0], {})
    assert (unknown.value.status, unknown.value.scim_type) == (400, "invalidValue")
    assert "bulkId:nobody" in unknown.value.detail
    with pytest.raises(ScimError) as failed:
        resolve(operations[1], {"u1": None})
    assert failed.value.status == 409 and "failed" in failed.value.detail


@pytest.mark.parametrize(
    ("operation", "status", "scim_type", "words"),
    [
        ({"method": "GET", "path": "/Users"}, 400, "invalidValue", "method must be one of"),
        ({"method": "POST", "path": "/Users", "data": {}}, 400, "invalidValue", "needs a bulkId"),
        ({"method": "DELETE", "path": "Users/1"}, 400, "invalidValue", "path must be"),
        ({"method": "DELETE", "path": "/Users/1?x=1"}, 400, "invalidValue", "query"),
        ({"method": "PUT", "path": "/Users/1", "version": 3}, 400, "invalidValue", "version must be"),
        ("not an object", 400, "invalidSyntax", "must be an object"),
    ],
)
def test_an_operation_that_cannot_run_keeps_its_problem(
    operation: object, status: int, scim_type: str, words: str
) -> None:
    (op,), _ = read_request(request(operation), 100)  # type: ignore[arg-type]
    assert op.problem is not None
    assert (op.problem.status, op.problem.scim_type) == (status, scim_type)
    assert words in op.problem.detail


def test_a_request_that_is_not_a_bulk_request_is_refused_whole() -> None:
    with pytest.raises(ScimError) as no_schema:
        read_request({"Operations": []}, 10)
    assert (no_schema.value.status, no_schema.value.scim_type) == (400, "invalidSyntax")
    with pytest.raises(ScimError) as too_many:
        read_request(request(*[user(f"u{n}", f"n{n}") for n in range(11)]), 10)
    assert too_many.value.status == 413 and "at most 10" in too_many.value.detail
    with pytest.raises(ScimError) as duplicate:
        read_request(request(user("u1", "a"), user("u1", "b")), 10)
    assert duplicate.value.scim_type == "invalidValue" and "'u1'" in duplicate.value.detail
    for bad in (0, -1, "2", True):
        with pytest.raises(ScimError) as fail_on_errors:
            read_request(request(failOnErrors=bad), 10)
        assert "failOnErrors" in fail_on_errors.value.detail
    assert read_request(request(failOnErrors=2), 10)[1] == 2
