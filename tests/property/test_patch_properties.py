"""Properties of PATCH over HTTP: random operation sequences never get a 5xx, and a PATCH that fails
leaves the resource exactly as it was (the GET after is byte-for-byte the GET before, ETag included).

Operations are drawn from the schema (every attribute, sub-attribute, URN-qualified and filtered
path, in both Entra dialects) mixed with hostile ones: unknown paths, broken filters, wrong JSON
types, lone surrogates, NaN, deep values. Runs through the ASGI app (the `tenant` fixture) for speed.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from scim.errors import ERROR_SCHEMA, SCIM_TYPES
from scim.schemas import ENTERPRISE_USER, GROUP_TYPE, SCHEMAS, USER_TYPE, Attribute, ResourceType
from tests.conftest import PATCH_SCHEMA, Tenant, entra_user

EXAMPLES = int(os.environ.get("SCIMLET_PROPERTY_EXAMPLES", "250"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Stand-ins replaced per test by real ids: two users, another group, the patched resource, and an id
# that exists nowhere (so that failing member operations mix with ones that would succeed).
USER_ID, USER2_ID, GROUP_ID, SELF_ID, UNKNOWN_ID = "@user", "@user2", "@group", "@self", "@unknown"


def schema_paths(rtype: ResourceType) -> list[str]:
    """Every attribute and sub-attribute path of a resource type, plain and URN-qualified."""
    paths = []
    for urn in (rtype.schema, *rtype.extensions):
        for attr in SCHEMAS[urn].attributes:
            names = [attr.name, *(f"{attr.name}.{sub.name}" for sub in attr.sub_attributes)]
            paths += names
            paths += [f"{urn}:{name}" for name in names]
            if attr.multi_valued and attr.is_complex:
                paths += [
                    f'{attr.name}[type eq "work"]',
                    f'{attr.name}[type eq "work"].value',
                    f'{attr.name}[value eq "{USER_ID}"]',
                    f"{attr.name}[primary eq true].display",
                ]
    return paths + ["id", "externalId", "meta", "meta.created", "schemas"]


HOSTILE_PATHS = [
    "",
    " ",
    "nosuch",
    "name.nosuch",
    "urn:bogus:1.0:attr",
    f"{ENTERPRISE_USER}:nosuch",
    "emails[",
    "emails]",
    'emails[type eq "work"',
    "emails[type eq work].value",
    'emails[nosuch eq "x"]',
    "emails[]",
    'name[givenName eq "x"]',
    'members[value eq "x"].nosuch',
    "members[value pr]",
    "a.b.c.d",
    "$ref",
    'emails[type eq "work"][type eq "home"]',
    "\u0000",
    "\ud800",
    "é",
    "members.value",
    "members[value eq 1]",
]
strings = st.text(max_size=12) | st.sampled_from(
    [
        "",
        "x",
        "True",
        "false",
        "FALSE",
        "+16175551212",
        "0161 555 1212",
        "not a phone",
        "2026-01-31T12:00:00Z",
        "yesterday",
        "work",
        "home",
        "other@x",
        "OTHER@X",
        "\u0000",
        "\ud800",
        "\U0001f600",
        "a" * 300,
        'work"]',
        USER_ID,
        GROUP_ID,
        SELF_ID,
    ]
)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | strings
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["value", "type", "primary", "display", "givenName", "familyName", "$ref", "x"]) | strings,
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def member_values() -> st.SearchStrategy:
    one = st.fixed_dictionaries(
        {"value": st.sampled_from([USER_ID, GROUP_ID, SELF_ID, "unknown", ""]) | scalars},
        optional={"type": st.sampled_from(["User", "Group", "user", "robot"]), "$ref": st.none() | strings},
    )
    return st.lists(one, max_size=4) | one


def pathless_values(rtype: ResourceType) -> st.SearchStrategy:
    keys = st.sampled_from([p for p in schema_paths(rtype) if "[" not in p] + ["nosuch", "name.nosuch"])
    return st.dictionaries(keys, json_values, max_size=4)


def typed_values(attr: Attribute, path: str) -> st.SearchStrategy:
    """Values a client would legitimately send for a simple attribute (both Entra dialects)."""
    if attr.name == "userName":
        return st.sampled_from(["patched@x", "Renamed@X", "other@x", ""])
    if attr.name == "displayName" and path.startswith("displayName"):
        return st.sampled_from(["Patched", "Renamed", "Other group", "other GROUP", ""])
    if attr.type == "boolean":
        return st.booleans() | st.sampled_from(["True", "False", "true", "FALSE", ""])
    if attr.type == "dateTime":
        return st.sampled_from(["2026-01-31T12:00:00Z", "2026-01-31T12:00:00+02:00"])
    if "phoneNumbers" in path:
        return st.sampled_from(["+16175551212", "+442071234567", ""])
    if attr.name in ("value", "manager") and ("members" in path or "manager" in path):
        return st.sampled_from([USER_ID, GROUP_ID, ""])
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)


def valid_operations(rtype: ResourceType) -> st.SearchStrategy:
    """Operations shaped as Entra and RFC 7644 clients send them, on every writable attribute."""
    choices = []
    for urn in (rtype.schema, *rtype.extensions):
        prefix = "" if urn == rtype.schema else f"{urn}:"
        for attr in SCHEMAS[urn].attributes:
            if attr.mutability == "readOnly":
                continue
            path = f"{prefix}{attr.name}"
            verbs = st.sampled_from(["add", "replace", "Add", "Replace"])
            removal = st.fixed_dictionaries({"op": st.sampled_from(["remove", "Remove"]), "path": st.just(path)})
            if attr.name == "members":
                ids = st.sampled_from([USER_ID, USER2_ID, GROUP_ID, USER_ID, USER2_ID, GROUP_ID, UNKNOWN_ID, SELF_ID])
                members = st.lists(
                    st.fixed_dictionaries({"value": ids}, optional={"type": st.sampled_from(["User", "Group"])}),
                    min_size=1,
                    max_size=2,
                )
                choices += [
                    st.fixed_dictionaries(
                        {
                            "op": verbs | st.sampled_from(["remove", "Remove"]),
                            "path": st.just("members"),
                            "value": members,
                        }
                    ),
                    removal,
                    st.fixed_dictionaries(
                        {"op": st.just("remove"), "path": ids.map(lambda member: f'members[value eq "{member}"]')}
                    ),
                ]
                continue
            if not attr.is_complex:
                value = typed_values(attr, path)
                choices += [
                    st.fixed_dictionaries({"op": verbs, "path": st.just(path), "value": value}),
                    removal,
                    st.fixed_dictionaries({"op": verbs, "value": st.dictionaries(st.just(path), value, min_size=1)}),
                ]
                continue
            subs = [sub for sub in attr.sub_attributes if sub.mutability != "readOnly"]
            element = st.fixed_dictionaries(
                {sub.name: typed_values(sub, f"{path}.{sub.name}") for sub in subs[:1]},
                optional={
                    sub.name: typed_values(sub, f"{path}.{sub.name}") for sub in subs[1:] if sub.type != "boolean"
                },
            )
            whole = st.lists(element, max_size=2) if attr.multi_valued else element
            choices += [st.fixed_dictionaries({"op": verbs, "path": st.just(path), "value": whole}), removal]
            sub_path = st.sampled_from([f"{path}.{sub.name}" for sub in subs])
            if attr.multi_valued:
                sub_path = st.sampled_from([f'{path}[type eq "work"].value', f'{path}[type eq "home"].value'])
            choices.append(
                st.fixed_dictionaries(
                    {"op": verbs, "path": sub_path, "value": typed_values(subs[0], f"{path}.{subs[0].name}")}
                )
            )
            if not attr.multi_valued:
                choices.append(
                    st.fixed_dictionaries(
                        {
                            "op": verbs,
                            "value": st.dictionaries(
                                st.sampled_from([f"{path}.{sub.name}" for sub in subs]),
                                typed_values(subs[0], f"{path}.{subs[0].name}"),
                                min_size=1,
                            ),
                        }
                    )
                )
    return st.one_of(choices)


def hostile_operations(rtype: ResourceType) -> st.SearchStrategy:
    op_names = (
        st.sampled_from(
            ["add", "Add", "ADD", "remove", "Remove", "replace", "Replace", "REPLACE", "delete", "", "move"]
        )
        | st.integers()
        | st.none()
    )
    paths = st.sampled_from(schema_paths(rtype) + HOSTILE_PATHS) | st.text(max_size=20) | st.integers() | st.none()
    value = json_values | member_values() | pathless_values(rtype)
    op = st.fixed_dictionaries({"op": op_names}, optional={"path": paths, "value": value})
    return op | st.sampled_from([None, "op", 5, [], {"path": "userName"}])


def operations(rtype: ResourceType) -> st.SearchStrategy:
    valid = valid_operations(rtype)
    return st.lists(st.one_of(valid, valid, valid, valid, hostile_operations(rtype)), max_size=4)


def bodies(rtype: ResourceType) -> st.SearchStrategy:
    valid = st.fixed_dictionaries({"schemas": st.just([PATCH_SCHEMA]), "Operations": operations(rtype)})
    odd = st.fixed_dictionaries(
        {},
        optional={
            "schemas": st.sampled_from([[PATCH_SCHEMA], [], ["urn:bogus"], PATCH_SCHEMA, None]),
            "Operations": operations(rtype) | json_values,
            "operations": operations(rtype),
        },
    )
    return st.one_of(valid, valid, odd)


def resolve(value: object, ids: dict[str, str]) -> object:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [resolve(item, ids) for item in value]
    if isinstance(value, dict):
        return {resolve(key, ids): resolve(item, ids) for key, item in value.items()}
    return value


def encode(body: object) -> bytes:
    # json (not orjson) so that NaN and lone surrogates reach the server as the hostile text they are.
    return json.dumps(body).encode()


def assert_scim_error(response) -> None:
    assert response.headers["content-type"].startswith("application/scim+json")
    error = response.json()
    assert error["schemas"] == [ERROR_SCHEMA]
    assert error["status"] == str(response.status_code)
    assert error["detail"]
    assert error.get("scimType") is None or error["scimType"] in SCIM_TYPES


async def check_patch(tenant: Tenant, url: str, body: object, ids: dict[str, str]) -> None:
    before = await tenant.client.get(url)
    assert before.status_code == 200
    content = encode(resolve(body, ids))
    note(f"PATCH {content[:2000]!r}")
    response = await tenant.client.patch(url, content=content, headers={"content-type": "application/scim+json"})
    after = await tenant.client.get(url)
    note(f"-> {response.status_code} {response.text[:500]}")
    event(f"status {response.status_code}")
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.status_code in (400, 409, 413), response.text
        assert_scim_error(response)
        assert after.content == before.content
        assert after.headers["etag"] == before.headers["etag"]
    else:
        assert response.status_code in (200, 204)
        assert response.headers["etag"] == after.headers["etag"]
        if response.status_code == 200:
            assert response.json() == after.json()
        if after.content != before.content:
            assert after.headers["etag"] != before.headers["etag"]


async def make_ids(tenant: Tenant) -> dict[str, str]:
    user = await tenant.client.post("/Users", json=entra_user("member@x"))
    other = await tenant.client.post("/Users", json=entra_user("other@x"))
    group = await tenant.client.post("/Groups", json={"displayName": "Other group"})
    assert (user.status_code, other.status_code, group.status_code) == (201, 201, 201)
    return {
        USER_ID: user.json()["id"],
        USER2_ID: other.json()["id"],
        GROUP_ID: group.json()["id"],
        UNKNOWN_ID: "2819c223-7f76-453a-919d-413861904646",
    }


@PROPERTY
@given(body=bodies(USER_TYPE))
async def test_user_patch_never_500_and_failures_change_nothing(tenant: Tenant, body: object) -> None:
    ids = getattr(tenant, "ids", None)
    if ids is None:
        ids = tenant.ids = await make_ids(tenant)
        created = await tenant.client.post("/Users", json=entra_user("patched@x"))
        ids[SELF_ID] = created.json()["id"]
    await check_patch(tenant, f"/Users/{ids[SELF_ID]}", body, ids)


@PROPERTY
@given(body=bodies(GROUP_TYPE))
async def test_group_patch_never_500_and_failures_change_nothing(tenant: Tenant, body: object) -> None:
    ids = getattr(tenant, "ids", None)
    if ids is None:
        ids = tenant.ids = await make_ids(tenant)
        created = await tenant.client.post("/Groups", json={"displayName": "Patched"})
        ids[SELF_ID] = created.json()["id"]
    await check_patch(tenant, f"/Groups/{ids[SELF_ID]}", body, ids)
