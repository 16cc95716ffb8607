"""POST /Bulk (RFC 7644 §3.7) from the outside: bulkId references, per-operation answers, failOnErrors,
versions, privileges, the limits, and one provisioning log record per operation."""

from __future__ import annotations

from scim.bulk import BULK_REQUEST, BULK_RESPONSE
from storage import LogQuery
from tests.conftest import PATCH_SCHEMA, Tenant, entra_user
from tests.hardening.asgi import configured_tenant


def bulk(*operations: dict, **extra: object) -> dict:
    return {"schemas": [BULK_REQUEST], "Operations": list(operations), **extra}


def create_user(bulk_id: str, name: str) -> dict:
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": entra_user(name)}


async def test_a_group_refers_to_users_created_later_in_the_request(tenant: Tenant) -> None:
    body = bulk(
        {
            "method": "POST",
            "path": "/Groups",
            "bulkId": "team",
            "data": {"displayName": "Team", "members": [{"value": "bulkId:ada"}, {"value": "bulkId:bob"}]},
        },
        create_user("ada", "ada@contoso.com"),
        create_user("bob", "bob@contoso.com"),
    )
    answer = await tenant.client.post("/Bulk", json=body)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/scim+json"
    result = answer.json()
    assert result["schemas"] == [BULK_RESPONSE]
    # The users run first: the group names them (RFC 7644 §3.7.2).
    assert [(op["bulkId"], op["status"]) for op in result["Operations"]] == [
        ("ada", "201"),
        ("bob", "201"),
        ("team", "201"),
    ]
    ids = {}
    for op in result["Operations"]:
        assert op["method"] == "POST"
        assert op["location"].startswith(f"{tenant.url}/")
        read = await tenant.client.get(op["location"].removeprefix(tenant.url))
        assert read.status_code == 200
        assert read.headers["etag"] == op["version"]
        ids[op["bulkId"]] = read.json()["id"]
    group = (await tenant.client.get(f"/Groups/{ids['team']}")).json()
    assert sorted(m["value"] for m in group["members"]) == sorted([ids["ada"], ids["bob"]])


async def test_put_patch_and_delete_with_versions(tenant: Tenant) -> None:
    user = (await tenant.client.post("/Users", json=entra_user("cy@contoso.com"))).json()
    etag = user["meta"]["version"]
    gone = (await tenant.client.post("/Users", json=entra_user("dee@contoso.com"))).json()
    body = bulk(
        {
            "method": "PATCH",
            "path": f"/Users/{user['id']}",
            "version": etag,
            "data": {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": False}]},
        },
        {
            # The same version again: the PATCH above changed the user, so this one is refused.
            "method": "PUT",
            "path": f"/Users/{user['id']}",
            "version": etag,
            "data": entra_user("cy@contoso.com", displayName="Cy"),
        },
        {"method": "DELETE", "path": f"/Users/{gone['id']}"},
        {"method": "DELETE", "path": "/Users/no-such-user"},
    )
    result = (await tenant.client.post("/Bulk", json=body)).json()
    patched, replaced, deleted, missing = result["Operations"]
    assert (patched["method"], patched["status"]) == ("PATCH", "200")
    assert patched["location"] == f"{tenant.url}/Users/{user['id']}"
    assert patched["version"] != etag
    assert replaced["status"] == "412" and replaced["response"]["status"] == "412"
    assert "version" not in replaced
    assert deleted["status"] == "204" and deleted["location"] == f"{tenant.url}/Users/{gone['id']}"
    assert missing["status"] == "404" and "not found" in missing["response"]["detail"]
    now = (await tenant.client.get(f"/Users/{user['id']}")).json()
    assert now["active"] is False and "displayName" not in now
    assert (await tenant.client.get(f"/Users/{gone['id']}")).status_code == 404


async def test_fail_on_errors_stops_after_that_many_errors(tenant: Tenant) -> None:
    invalid = {"method": "POST", "path": "/Users", "bulkId": "bad", "data": {"userName": "no-name"}}
    body = bulk(
        create_user("u1", "one@contoso.com"),
        invalid,
        {**invalid, "bulkId": "bad2"},
        create_user("u3", "three@contoso.com"),
        failOnErrors=2,
    )
    result = (await tenant.client.post("/Bulk", json=body)).json()
    assert [(op["bulkId"], op["status"]) for op in result["Operations"]] == [
        ("u1", "201"),
        ("bad", "400"),
        ("bad2", "400"),
    ]
    assert result["Operations"][1]["response"]["scimType"] == "invalidValue"
    listed = (await tenant.client.get("/Users", params={"filter": 'userName eq "three@contoso.com"'})).json()
    assert listed["totalResults"] == 0  # never run


async def test_circular_and_unknown_references_fail_their_operations(tenant: Tenant) -> None:
    body = bulk(
        {
            "method": "POST",
            "path": "/Groups",
            "bulkId": "a",
            "data": {"displayName": "A", "members": [{"value": "bulkId:b"}]},
        },
        {
            "method": "POST",
            "path": "/Groups",
            "bulkId": "b",
            "data": {"displayName": "B", "members": [{"value": "bulkId:a"}]},
        },
        {
            "method": "POST",
            "path": "/Groups",
            "bulkId": "c",
            "data": {"displayName": "C", "members": [{"value": "bulkId:zz"}]},
        },
        {"method": "POST", "path": "/Groups", "bulkId": "d", "data": {"displayName": "D"}},
    )
    result = (await tenant.client.post("/Bulk", json=body)).json()
    by_id = {op["bulkId"]: op for op in result["Operations"]}
    assert by_id["a"]["status"] == by_id["b"]["status"] == "409"
    assert "Circular" in by_id["a"]["response"]["detail"]
    assert by_id["c"]["status"] == "400" and "bulkId:zz" in by_id["c"]["response"]["detail"]
    assert by_id["d"]["status"] == "201"
    names = [g["displayName"] for g in (await tenant.client.get("/Groups")).json()["Resources"]]
    assert names == ["D"]


async def test_each_operation_needs_its_own_privilege(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        key, secret = await tenant.store.create_api_key("users only", "", True, False)
        await tenant.store.set_idp_api_key(tenant.idp_id, key.id)
        headers = {"Authorization": f"Bearer {secret}"}
        body = bulk(
            create_user("u1", "erin@contoso.com"),
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"displayName": "G"}},
        )
        result = (await tenant.client.post("/Bulk", json=body, headers=headers)).json()
        assert [op["status"] for op in result["Operations"]] == ["201", "403"]
        assert "Groups" in result["Operations"][1]["response"]["detail"]


async def test_bulk_limits_answer_413_with_a_scim_error(database_url: str) -> None:
    async with configured_tenant(database_url, scim_bulk_max_operations=2, scim_bulk_max_payload_bytes=4096) as tenant:
        config = (await tenant.client.get("/ServiceProviderConfig")).json()
        assert config["bulk"] == {"supported": True, "maxOperations": 2, "maxPayloadSize": 4096}
        many = await tenant.client.post("/Bulk", json=bulk(*[create_user(f"u{n}", f"n{n}@x.com") for n in range(3)]))
        assert many.status_code == 413
        assert many.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert many.json()["status"] == "413" and "at most 2" in many.json()["detail"]
        big = await tenant.client.post("/Bulk", json=bulk(create_user("u1", "x" * 5000)))
        assert big.status_code == 413 and "4096" in big.json()["detail"]
        assert (await tenant.client.get("/Users")).json()["totalResults"] == 0


async def test_malformed_bulk_requests_change_nothing(tenant: Tenant) -> None:
    client = tenant.client
    no_schema = await client.post("/Bulk", json={"Operations": [create_user("u1", "f@contoso.com")]})
    assert (no_schema.status_code, no_schema.json()["scimType"]) == (400, "invalidSyntax")
    not_json = await client.post("/Bulk", content=b"{", headers={"Content-Type": "application/scim+json"})
    assert not_json.status_code == 400
    nested = (
        await client.post("/Bulk", json=bulk({"method": "POST", "path": "/Bulk", "bulkId": "x", "data": {}}))
    ).json()
    assert nested["Operations"][0]["status"] == "400"
    assert "cannot be a Bulk request" in nested["Operations"][0]["response"]["detail"]
    discovery = (await client.post("/Bulk", json=bulk({"method": "DELETE", "path": "/Schemas"}))).json()
    assert discovery["Operations"][0]["status"] == "405"
    assert (await client.get("/Users")).json()["totalResults"] == 0
    assert (await client.get("/Bulk")).status_code == 405


async def test_unauthenticated_bulk_is_refused(tenant: Tenant) -> None:
    answer = await tenant.client.post(
        "/Bulk", json=bulk(create_user("u1", "g@contoso.com")), headers={"Authorization": "Bearer wrong"}
    )
    assert answer.status_code == 401
    assert (await tenant.client.get("/Users")).json()["totalResults"] == 0


async def test_each_operation_is_recorded_as_if_sent_alone(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        body = bulk(
            create_user("u1", "hal@contoso.com"),
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g1",
                "data": {"displayName": "Ops", "members": [{"value": "bulkId:u1"}]},
            },
            {"method": "DELETE", "path": "/Groups/nope"},
        )
        assert (await tenant.client.post("/Bulk", json=body)).status_code == 200
        refused = await tenant.client.post("/Bulk", json={"Operations": []})
        assert refused.status_code == 400
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery())
        assert [(r.operation, r.status, r.method, r.target) for r in reversed(records)] == [
            ("Create User", 201, "POST", "hal@contoso.com"),
            ("Create Group", 201, "POST", "Ops"),
            ("Delete Group", 404, "DELETE", "nope"),
            ("Bulk request", 400, "POST", None),  # failed whole: recorded as itself
        ]
        group = records[-1].bulk_request
        assert group is not None
        assert {r.bulk_request for r in records[1:]} == {group}
        assert records[0].bulk_request is None
        assert records[-2].path == f"/v1/scim/{tenant.idp_id}/Groups"
        assert records[-2].request_body is not None and records[-2].resource_id in (records[-2].response_body or "")
        one_bulk, _ = await tenant.store.query_logs(LogQuery(bulk_request=group))
        assert len(one_bulk) == 3
        metrics = tenant.app.state.metrics
        assert metrics.operations[(tenant.idp_id, "Create User", True)] == 1
        assert metrics.operations[(tenant.idp_id, "Delete Group", False)] == 1


async def test_me_is_not_implemented(tenant: Tenant) -> None:
    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        answer = await tenant.client.request(method, "/Me")
        assert answer.status_code == 501
        assert "API keys" in answer.json()["detail"]
    unauthenticated = await tenant.client.get("/Me", headers={"Authorization": "Bearer wrong"})
    assert unauthenticated.status_code == 401


async def test_creates_that_run_together_keep_the_rules_of_requests_sent_alone(tenant: Tenant) -> None:
    group = (await tenant.client.post("/Groups", json={"displayName": "Existing"})).json()
    body = bulk(
        *[create_user(f"u{n}", f"many{n}@contoso.com") for n in range(60)],
        create_user("twin", "MANY7@contoso.com"),  # the same userName as u7, in another case
        {
            "method": "PATCH",
            "path": f"/Groups/{group['id']}",
            "data": {
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u59"}]}],
            },
        },
        create_user("after", "after@contoso.com"),
    )
    result = (await tenant.client.post("/Bulk", json=body)).json()
    statuses = {op.get("bulkId", op["method"]): op["status"] for op in result["Operations"]}
    assert [op.get("bulkId", op["method"]) for op in result["Operations"]] == [
        *[f"u{n}" for n in range(60)],
        "twin",
        "PATCH",
        "after",
    ]
    assert sorted([statuses["u7"], statuses["twin"]]) == ["201", "409"]  # one of the two, never both
    assert statuses["PATCH"] == "204" and statuses["after"] == "201"
    assert (await tenant.client.get("/Users", params={"count": 0})).json()["totalResults"] == 61
    members = (await tenant.client.get(f"/Groups/{group['id']}")).json()["members"]
    created = {op["bulkId"]: op["location"].rsplit("/", 1)[1] for op in result["Operations"] if op["status"] == "201"}
    assert [m["value"] for m in members] == [created["u59"]]
