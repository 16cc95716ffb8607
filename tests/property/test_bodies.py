"""Hostile request bodies and query strings: always a SCIM error (4xx) or a success, never a 5xx,
and a request that fails writes nothing.

Covers deep nesting, huge strings, a wrong JSON type in every attribute of every schema, numbers as
strings, invalid UTF-8, duplicate keys, arrays where objects belong, plus generated bodies and query
strings. Runs through the ASGI app (the `tenant` fixture).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from scim.errors import ERROR_SCHEMA, SCIM_TYPES
from scim.schemas import ENTERPRISE_USER, GROUP, SCHEMAS, USER, Attribute
from tests.conftest import GROUP_SCHEMA, PATCH_SCHEMA, Tenant, entra_user

EXAMPLES = int(os.environ.get("SCIMLET_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCIM_JSON = {"content-type": "application/scim+json"}
WRONG_TYPES = [1, 2**70, -1.5, True, "x", [], ["x"], [{}], {}, {"value": 1}]


def assert_scim_error(response) -> None:
    assert response.headers["content-type"].startswith("application/scim+json"), response.headers
    error = response.json()
    assert error["schemas"] == [ERROR_SCHEMA]
    assert error["status"] == str(response.status_code)
    assert isinstance(error["detail"], str) and error["detail"]
    assert error.get("scimType") is None or error["scimType"] in SCIM_TYPES


def assert_handled(response, context: str = "") -> None:
    """A 2xx, or a 4xx with a SCIM error body: never a 5xx."""
    assert response.status_code < 500, f"{context}: {response.text}"
    if response.status_code >= 400:
        assert_scim_error(response)


async def counts(tenant: Tenant) -> dict[str, int]:
    return await tenant.store.counts(tenant.idp_id)


async def snapshot(tenant: Tenant, url: str) -> bytes:
    response = await tenant.client.get(url)
    assert response.status_code == 200
    return response.content


# --- structural hostility ----------------------------------------------------------------------------


def nested(levels: int) -> str:
    """JSON text nested 2 * levels deep, just under orjson's limit of 1024: deep enough to exhaust
    Python's recursion limit in any code that walks it recursively."""
    return '{"a": [' * levels + '"x"' + "]}" * levels


HOSTILE_RAW = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"[{}]",
    b'"userName"',
    b"42",
    b"true",
    b"{",
    b'{"userName": }',
    b"{'a': 1}",
    b'{"userName": "a\xff\xfe"}',
    b"\xef\xbb\xbf{}",
    b'{"userName": "\\ud800"}',
    b'{"userName": NaN}',
    b'{"userName": 1e400}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 1100 + b"1" + b"}" * 1100,
    nested(500).encode(),
    ('{"userName": "u", "name": ' + nested(500) + "}").encode(),
    ('{"userName": "u", "emails": [' + nested(500) + "]}").encode(),
    (f'{{"schemas": ["{PATCH_SCHEMA}"], "Operations": [{{"op": "add", "value": ' + nested(500) + "}]}").encode(),
    (
        f'{{"schemas": ["{PATCH_SCHEMA}"], "Operations": [{{"op": "add", "path": "title", "value": '
        + nested(500)
        + "}]}"
    ).encode(),
    b'{"userName": "dup1", "userName": "dup2", "name": {"givenName": "a", "familyName": "b"}}',
    b'\x00{"userName": "x"}',
    b'{"userName": "x"}garbage',
    ('{"password": "p", "userName": "deep", "x": ' + nested(500) + "}").encode(),
]


@pytest.mark.parametrize("raw", HOSTILE_RAW, ids=lambda raw: repr(raw[:24]))
async def test_hostile_raw_bodies_never_500_and_write_nothing(tenant: Tenant, raw: bytes) -> None:
    user = (await tenant.client.post("/Users", json=entra_user("victim@x"))).json()
    group = (await tenant.client.post("/Groups", json={"displayName": "Victims"})).json()
    before = await counts(tenant)
    user_before = await snapshot(tenant, f"/Users/{user['id']}")
    group_before = await snapshot(tenant, f"/Groups/{group['id']}")
    for method, url in [
        ("POST", "/Users"),
        ("POST", "/Groups"),
        ("PUT", f"/Users/{user['id']}"),
        ("PUT", f"/Groups/{group['id']}"),
        ("PATCH", f"/Users/{user['id']}"),
        ("PATCH", f"/Groups/{group['id']}"),
        ("POST", "/Users/.search"),
    ]:
        response = await tenant.client.request(method, url, content=raw, headers=SCIM_JSON)
        assert_handled(response, f"{method} {url}")
        if response.status_code >= 300:
            assert response.status_code in (400, 409), f"{method} {url}: {response.text}"
    # Only the duplicate-key body is a valid create (the last key wins, as in every JSON parser here).
    expected_new = 1 if raw.startswith(b'{"userName": "dup1"') else 0
    assert await counts(tenant) == {"users": before["users"] + expected_new, "groups": before["groups"]}
    if not expected_new:
        assert await snapshot(tenant, f"/Users/{user['id']}") == user_before
        assert await snapshot(tenant, f"/Groups/{group['id']}") == group_before


async def test_duplicate_keys_last_one_wins(tenant: Tenant) -> None:
    raw = b'{"userName": "first@x", "userName": "second@x", "name": {"givenName": "a", "familyName": "b"}}'
    response = await tenant.client.post("/Users", content=raw, headers=SCIM_JSON)
    assert response.status_code == 201
    assert response.json()["userName"] == "second@x"


async def test_long_strings_are_stored_whole_or_refused_with_400_or_413(tenant: Tenant) -> None:
    """A string up to its attribute's limit is stored whole (counted in characters, not UTF-8 bytes);
    one past it is 400 naming the attribute and the limit; a body past max_body_bytes is 413."""
    limit = 1_048_576
    name, text = "é" * 512, "é" * 8192  # scim.max_name_length and scim.max_string_length
    response = await tenant.client.post("/Users", json=entra_user("big@x", displayName=name, title=text))
    assert response.status_code == 201
    stored = await tenant.client.get(f"/Users/{response.json()['id']}")
    assert stored.json()["displayName"] == name and stored.json()["title"] == text
    for attribute, value, allowed in (("displayName", name + "x", 512), ("title", text + "x", 8192)):
        refused = await tenant.client.post("/Users", json=entra_user("longer@x", **{attribute: value}))
        assert refused.status_code == 400
        assert refused.json()["scimType"] == "invalidValue"
        assert refused.json()["detail"] == (
            f"{attribute} is {allowed + 1} characters long; at most {allowed} are allowed"
        )
    over = await tenant.client.post("/Users", json=entra_user("bigger@x", displayName="x" * limit))
    assert over.status_code == 413
    assert_scim_error(over)
    assert (await counts(tenant))["users"] == 1


async def test_body_over_limit_without_content_length_is_413(tenant: Tenant) -> None:
    async def chunks():
        for _ in range(40):
            yield b"x" * 32_768

    response = await tenant.client.post("/Users", content=chunks(), headers=SCIM_JSON)
    assert response.status_code == 413
    assert_scim_error(response)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
async def test_non_json_media_types_get_415(tenant: Tenant, content_type: str) -> None:
    response = await tenant.client.post(
        "/Users", content=json.dumps(entra_user("a@x")), headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert_scim_error(response)
    assert (await counts(tenant))["users"] == 0


# --- a wrong JSON type in every attribute -----------------------------------------------------------


def every_attribute() -> list[tuple[str | None, Attribute, Attribute | None]]:
    out = []
    for urn in (USER, ENTERPRISE_USER, GROUP):
        for attr in SCHEMAS[urn].attributes:
            out.append((None if urn in (USER, GROUP) else urn, attr, None))
            out += [(None if urn in (USER, GROUP) else urn, attr, sub) for sub in attr.sub_attributes]
    return out


def place(urn: str | None, attr: Attribute, sub: Attribute | None, value: object) -> dict:
    if sub is not None:
        value = [{sub.name: value}] if attr.multi_valued else {sub.name: value}
    return {urn: {attr.name: value}} if urn else {attr.name: value}


@pytest.mark.parametrize(
    "urn,attr,sub", every_attribute(), ids=lambda item: getattr(item, "name", str(item).rsplit(":", 1)[-1])
)
async def test_wrong_json_type_in_every_attribute(tenant: Tenant, urn, attr, sub) -> None:
    is_group = any(attr is a for a in SCHEMAS[GROUP].attributes)
    endpoint = "/Groups" if is_group else "/Users"
    base = {"schemas": [GROUP_SCHEMA], "displayName": "G"} if is_group else entra_user("typed@x")
    existing = (await tenant.client.post(endpoint, json=base)).json()
    url = f"{endpoint}/{existing['id']}"
    before = await snapshot(tenant, url)
    path = f"{urn + ':' if urn else ''}{attr.name}{'.' + sub.name if sub else ''}"
    for value in WRONG_TYPES:
        body = {**base, **place(urn, attr, sub, value)}
        body["displayName" if is_group else "userName"] = "typed2@x"
        by_path = {"op": "replace", "path": path, "value": value}
        path_less = {"op": "add", "value": place(urn, attr, sub, value)}
        for method, target, payload in [
            ("POST", endpoint, body),
            ("PUT", url, body),
            ("PATCH", url, {"schemas": [PATCH_SCHEMA], "Operations": [by_path]}),
            ("PATCH", url, {"schemas": [PATCH_SCHEMA], "Operations": [path_less]}),
        ]:
            response = await tenant.client.request(method, target, json=payload)
            context = f"{method} {path}={value!r}"
            assert_handled(response, context)
            if response.status_code >= 400:
                assert response.status_code == 400, f"{context}: {response.text}"
                if method != "POST":
                    assert await snapshot(tenant, url) == before, context
            elif method == "POST":
                await tenant.client.delete(f"{endpoint}/{response.json()['id']}")
            else:
                # Tolerated (e.g. a lone object for a list, a string "true"): put the original back.
                restore = await tenant.client.put(url, json=base)
                assert restore.status_code == 200
                before = await snapshot(tenant, url)
    # Failed creates left nothing behind (successful ones were deleted above).
    assert await counts(tenant) == {"users": int(not is_group), "groups": int(is_group)}


# --- query strings -------------------------------------------------------------------------------

HOSTILE_NUMBERS = [
    "",
    "0",
    "-1",
    "-99999999999999999999999",
    "99999999999999999999999",
    "1e3",
    "1.5",
    "0x10",
    "NaN",
    " 5",
    "5 ",
    "١٢",
    "+5",
    "9" * 5000,
    "\u0000",
]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
async def test_paging_numbers_never_500(tenant: Tenant, value: str) -> None:
    await tenant.client.post("/Users", json=entra_user("page@x"))
    for name in ("startIndex", "count"):
        response = await tenant.client.get("/Users", params={name: value})
        assert_handled(response, f"{name}={value!r}")
        if response.status_code == 200:
            page = response.json()
            assert page["itemsPerPage"] == len(page["Resources"]) <= 1000
        else:
            assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
        search = await tenant.client.post("/Users/.search", json={name: value})
        assert_handled(search, f".search {name}={value!r}")
        as_number = await tenant.client.post("/Users/.search", content=f'{{"{name}": {value or 0}}}', headers=SCIM_JSON)
        assert_handled(as_number, f".search {name}={value or 0}")


async def test_count_is_clamped_to_max_results(tenant: Tenant) -> None:
    config = await tenant.client.get("/ServiceProviderConfig")
    max_results = config.json()["filter"]["maxResults"]
    response = await tenant.client.get("/Users", params={"count": str(max_results * 1000)})
    assert response.status_code == 200
    assert response.json()["itemsPerPage"] <= max_results


query_text = st.text(max_size=40) | st.sampled_from(
    [
        "userName",
        "emails.value",
        "members",
        "nosuch",
        "name.givenName,nosuch",
        f"{ENTERPRISE_USER}:manager",
        "ascending",
        "DESCENDING",
        "",
        "a" * 5000,
        'userName eq "x"',
        "\u0000",
        "1",
        "-1",
        "99999999999999999999",
    ]
)


@PROPERTY
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "filter",
                "startIndex",
                "count",
                "sortBy",
                "sortOrder",
                "attributes",
                "excludedAttributes",
                "cursor",
                "aadOptscim062020",
                "FILTER",
            ]
        ),
        query_text,
        max_size=5,
    ),
    endpoint=st.sampled_from(["/Users", "/Groups"]),
)
async def test_generated_query_strings_never_500(tenant: Tenant, params: dict, endpoint: str) -> None:
    if not getattr(tenant, "seeded", False):
        user = (await tenant.client.post("/Users", json=entra_user("query@x"))).json()
        await tenant.client.post("/Groups", json={"displayName": "Q", "members": [{"value": user["id"]}]})
        tenant.seeded = True
    response = await tenant.client.get(endpoint, params=params)
    note(f"{params} -> {response.status_code} {response.text[:300]}")
    assert_handled(response)
    search = await tenant.client.post(f"{endpoint}/.search", json=params)
    assert_handled(search)


# --- generated bodies ------------------------------------------------------------------------------


def attribute_names() -> list[str]:
    names = ["schemas", "id", "meta", "externalId", "members", "x", USER, ENTERPRISE_USER, "urn:bogus"]
    for schema in SCHEMAS.values():
        for attr in schema.attributes:
            names += [attr.name, attr.name.upper(), *(sub.name for sub in attr.sub_attributes)]
    return names


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["True", "false", "+16175551212", "12345", "2026-01-01T00:00:00Z", "work", "\ud800", ""])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(attribute_names()) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
resource_bodies = st.dictionaries(st.sampled_from(attribute_names()), values, max_size=8)


@PROPERTY
@given(body=resource_bodies, endpoint=st.sampled_from(["/Users", "/Groups"]))
async def test_generated_create_bodies_never_500_and_write_only_on_success(
    tenant: Tenant, body: dict, endpoint: str
) -> None:
    before = await counts(tenant)
    response = await tenant.client.post(endpoint, content=json.dumps(body), headers=SCIM_JSON)
    note(f"{response.status_code} {response.text[:300]}")
    assert_handled(response)
    after = await counts(tenant)
    key = "users" if endpoint == "/Users" else "groups"
    if response.status_code == 201:
        assert after[key] == before[key] + 1
        stored = await tenant.client.get(f"{endpoint}/{response.json()['id']}")
        assert stored.status_code == 200
        assert stored.json() == response.json()
        await tenant.client.delete(f"{endpoint}/{response.json()['id']}")
    else:
        assert response.status_code in (400, 409)
        assert after == before


@PROPERTY
@given(body=resource_bodies)
async def test_generated_replace_bodies_never_500_and_change_nothing_on_failure(tenant: Tenant, body: dict) -> None:
    user_id = getattr(tenant, "user_id", None)
    if user_id is None:
        user_id = tenant.user_id = (await tenant.client.post("/Users", json=entra_user("replace@x"))).json()["id"]
    url = f"/Users/{user_id}"
    before = await snapshot(tenant, url)
    response = await tenant.client.put(url, content=json.dumps(body), headers=SCIM_JSON)
    assert_handled(response)
    if response.status_code >= 400:
        assert await snapshot(tenant, url) == before
    else:
        assert response.json() == (await tenant.client.get(url)).json()
        assert (await tenant.client.put(url, json=entra_user("replace@x"))).status_code == 200
