"""/metrics after Entra-shaped traffic: every counter moves by exactly what was sent."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from scim.operations import classify
from scim.routes import ROUTES
from tests.conftest import GROUP_SCHEMA, entra_user, patch_body
from tests.ops.conftest import Ops, open_ops, parse_metrics, settings_for, value
from web.access_log import RequestMiddleware
from web.metrics import OPERATIONS, Metrics

USERS = "/v1/scim/{idp}/Users"
ONE_USER = "/v1/scim/{idp}/Users/{id}"
GROUPS = "/v1/scim/{idp}/Groups"
ONE_GROUP = "/v1/scim/{idp}/Groups/{id}"


async def scrape(ops: Ops) -> dict:
    response = await ops.root.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse_metrics(response.text)


async def entra_cycle(ops: Ops) -> None:
    """Test Connection, three users created after a lookup each, a duplicate, a disable, a group
    with members, a delete, a wrong token and a request for an IdP that does not exist."""
    http = ops.scim
    assert (await http.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")).status_code == 200
    probe = f"/Groups?excludedAttributes=members&filter=displayName+eq+%22{uuid.uuid4()}%22"
    assert (await http.get(probe)).status_code == 200
    ids = []
    for i in range(3):
        assert (await http.get(f"/Users?filter=userName+eq+%22user{i}%40contoso.com%22")).status_code == 200
        created = await http.post("/Users", json=entra_user(f"user{i}@contoso.com"))
        assert created.status_code == 201
        ids.append(created.json()["id"])
    assert (await http.post("/Users", json=entra_user("USER0@contoso.com"))).status_code == 409
    disable = patch_body({"op": "Replace", "path": "active", "value": "False"})
    assert (await http.patch(f"/Users/{ids[0]}", json=disable)).status_code == 200
    group = await http.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Sales"})
    assert group.status_code == 201
    add = patch_body({"op": "Add", "path": "members", "value": [{"value": i} for i in ids]})
    assert (await http.patch(f"/Groups/{group.json()['id']}", json=add)).status_code == 204
    assert (await http.delete(f"/Users/{ids[2]}")).status_code == 204
    assert (await http.get("/Users", headers={"Authorization": "Bearer wrong"})).status_code == 401
    stranger = f"/v1/scim/{uuid.uuid4().hex}/Users"
    assert (await ops.root.get(stranger, headers={"Authorization": "Bearer x"})).status_code == 401


async def test_scim_operations_by_idp_operation_and_outcome(ops: Ops) -> None:
    before = await scrape(ops)
    assert (
        value(before, "scimlet_scim_operations_total", idp=ops.idp_id, operation="Create User", outcome="success") == 0
    )
    await entra_cycle(ops)
    after = await scrape(ops)

    def ops_count(operation: str, outcome: str = "success", idp: str = ops.idp_id) -> float:
        return value(after, "scimlet_scim_operations_total", idp=idp, operation=operation, outcome=outcome)

    assert ops_count("Test connection") == 2
    assert ops_count("Find User") == 3
    assert ops_count("Create User") == 3
    assert ops_count("Create User", "failure") == 1  # the 409
    assert ops_count("Disable User") == 1
    assert ops_count("Create Group") == 1
    assert ops_count("Add members") == 1
    assert ops_count("Delete User") == 1
    assert ops_count("List Users", "failure") == 1  # the wrong token, counted under the real IdP
    assert ops_count("List Users", "failure", idp="unknown") == 1
    operations = {dict(labels)["idp"] for name, labels in after if name == "scimlet_scim_operations_total"}
    assert operations == {ops.idp_id, "unknown"}  # an IdP ID made up by a client never becomes a label
    total = sum(v for (name, _), v in after.items() if name == "scimlet_scim_operations_total")
    assert total == 2 + 3 + 3 + 1 + 1 + 1 + 1 + 1 + 1 + 1


async def test_requests_by_route_method_and_status_with_latency(ops: Ops) -> None:
    await entra_cycle(ops)
    assert (await ops.root.get("/healthz")).status_code == 200
    assert (await ops.root.get("/no/such/page")).status_code == 404
    samples = await scrape(ops)
    requests = "scimlet_http_requests_total"
    assert value(samples, requests, route=USERS, method="POST", status="201") == 3
    assert value(samples, requests, route=USERS, method="POST", status="409") == 1
    assert value(samples, requests, route=USERS, method="GET", status="200") == 4
    assert value(samples, requests, route=USERS, method="GET", status="401") == 2
    assert value(samples, requests, route=ONE_USER, method="PATCH", status="200") == 1
    assert value(samples, requests, route=ONE_USER, method="DELETE", status="204") == 1
    assert value(samples, requests, route=GROUPS, method="GET", status="200") == 1
    assert value(samples, requests, route=ONE_GROUP, method="PATCH", status="204") == 1
    assert value(samples, requests, route="/healthz", method="GET", status="200") == 1
    assert value(samples, requests, route="unmatched", method="GET", status="404") == 1
    assert not any("/no/such/page" in dict(labels).values() for _, labels in samples)

    duration = "scimlet_http_request_duration_seconds"
    count = value(samples, f"{duration}_count", route=USERS, method="POST")
    assert count == 4
    assert value(samples, f"{duration}_bucket", route=USERS, method="POST", le="+Inf") == count
    assert 0 < value(samples, f"{duration}_sum", route=USERS, method="POST") < 10
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == f"{duration}_bucket" and dict(labels)["route"] == USERS and dict(labels)["method"] == "POST"
    )
    cumulative = [v for _, v in buckets]
    assert len(cumulative) == 15 and cumulative == sorted(cumulative) and cumulative[-1] == count


async def test_a_scrape_is_counted_by_the_next_one(ops: Ops) -> None:
    first = await scrape(ops)
    assert value(first, "scimlet_http_requests_total", route="/metrics", method="GET", status="200") == 0
    second = await scrape(ops)
    assert value(second, "scimlet_http_requests_total", route="/metrics", method="GET", status="200") == 1


async def test_store_gauges_are_read_at_scrape_time(ops: Ops) -> None:
    await entra_cycle(ops)
    samples = await scrape(ops)
    assert value(samples, "scimlet_users", idp=ops.idp_id) == 2  # three created, one deleted
    assert value(samples, "scimlet_groups", idp=ops.idp_id) == 1
    assert value(samples, "scimlet_idp_info", idp=ops.idp_id, name="Entra") == 1
    assert value(samples, "scimlet_database_up") == 1
    on_disk = Path(ops.store.path).stat().st_size
    assert value(samples, "scimlet_database_size_bytes", file="database") == on_disk > 0
    assert value(samples, "scimlet_database_size_bytes", file="wal") == Path(ops.store.path + "-wal").stat().st_size
    assert value(samples, "scimlet_write_queue_depth") == 0
    assert value(samples, "scimlet_write_batches_total") >= 8  # the cycle's 8 writes, one after the other
    # Without the lifespan (ASGI transport) the log writer is not running: all 15 records wait.
    assert value(samples, "scimlet_provisioning_log_buffered_records") == 15
    assert value(samples, "process_resident_memory_bytes") > 0

    await ops.scim.delete(f"/Users/{(await ops.scim.get('/Users')).json()['Resources'][0]['id']}")
    assert value(await scrape(ops), "scimlet_users", idp=ops.idp_id) == 1


async def test_metrics_token_guards_the_endpoint_only(tmp_path: Path) -> None:
    token = "metrics-" + uuid.uuid4().hex
    async with open_ops(settings_for(tmp_path, SCIMLET_METRICS_TOKEN=token)) as ops:
        missing = await ops.root.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "scimlet_" not in missing.text
        assert (await ops.root.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await ops.root.get("/metrics", headers={"Authorization": f"Basic {token}"})).status_code == 401
        allowed = await ops.root.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and "scimlet_http_requests_total" in allowed.text
        assert (await ops.root.get("/healthz")).status_code == 200
        assert (await ops.root.get("/readyz")).status_code == 200
        # Refused scrapes are still counted, by status.
        samples = parse_metrics((await ops.root.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text)
        assert value(samples, "scimlet_http_requests_total", route="/metrics", method="GET", status="401") == 3


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with open_ops(settings_for(tmp_path / "a")) as first, open_ops(settings_for(tmp_path / "b")) as second:
        for _ in range(2):
            assert (await first.scim.post("/Users", json=entra_user(f"u{uuid.uuid4().hex}"))).status_code == 201
        one, two = (
            parse_metrics((await first.root.get("/metrics")).text),
            parse_metrics((await second.root.get("/metrics")).text),
        )
        assert (
            value(one, "scimlet_scim_operations_total", idp=first.idp_id, operation="Create User", outcome="success")
            == 2
        )
        assert value(one, "scimlet_users", idp=first.idp_id) == 2
        assert not any(name == "scimlet_scim_operations_total" for name, _ in two)
        assert value(two, "scimlet_users", idp=second.idp_id) == 0


async def test_mounted_apps_are_labelled_by_their_full_template(ops: Ops) -> None:
    """Routes of a mounted Starlette app (the admin console is one) keep their mount's prefix."""

    async def hello(request: Request) -> Response:
        return Response("hi")

    inner = Starlette(routes=[Route("/items/{id}", hello)])
    metrics = Metrics(ops.store, "")
    outer = Starlette(
        routes=[Mount("/sub/{tenant}", app=inner)], middleware=[Middleware(RequestMiddleware, metrics=metrics)]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as client:
        assert (await client.get("/sub/t1/items/1")).status_code == 200
        assert (await client.get("/sub/t2/items/2")).status_code == 200
        assert (await client.get("/sub/t1/other")).status_code == 404
        assert (await client.get("/elsewhere")).status_code == 404
    samples = parse_metrics(generate_latest(metrics.registry).decode())
    requests = {
        (dict(labels)["route"], dict(labels)["status"]): v
        for (name, labels), v in samples.items()
        if name == "scimlet_http_requests_total"
    }
    assert requests == {
        ("/sub/{tenant}/items/{id}", "200"): 2,
        ("/sub/{tenant}/{path}", "404"): 1,
        ("unmatched", "404"): 1,
    }


async def test_every_route_of_the_table_is_its_own_label_and_refuses_other_methods_with_allow(ops: Ops) -> None:
    """A request to each route of scim/routes.py, one with a method it lacks (HEAD included), and
    a path no route matches: labels are the templates, "unmatched" only for the last."""
    filler = {"id": "x", "name": "User", "urn": "urn:ietf:params:scim:schemas:core:2.0:User"}
    expected: Counter[tuple[str, str, str]] = Counter()
    for spec in ROUTES:
        path = spec.template.removeprefix("/v1/scim/{idp}").replace("{id}", filler["id"])
        path = path.replace("{name}", filler["name"]).replace("{urn}", filler["urn"])
        method = spec.methods[0]
        answer = await ops.scim.request(method, path, json={} if method == "POST" else None)
        assert answer.status_code not in (404, 405) or spec.param is not None, (spec.template, answer.text)
        expected[(spec.template, method, str(answer.status_code))] += 1
        for refused in ("HEAD", "PUT", "DELETE", "POST", "OPTIONS"):
            if refused not in spec.methods:
                break
        answer = await ops.scim.request(refused, path)
        assert answer.status_code == 405, (refused, spec.template)
        assert answer.headers["allow"] == ", ".join(spec.methods), spec.template
        expected[(spec.template, refused, "405")] += 1
    assert (await ops.scim.get("/Users/x/y")).status_code == 404
    assert (await ops.scim.get("/Bogus")).status_code == 404
    samples = await scrape(ops)
    for (route, method, status), count in expected.items():
        assert value(samples, "scimlet_http_requests_total", route=route, method=method, status=status) == count
    assert value(samples, "scimlet_http_requests_total", route="unmatched", method="GET", status="404") == 2


def test_every_operation_a_valid_request_gets_is_a_label_of_its_own() -> None:
    """scim/operations.py names operations; a name missing from OPERATIONS would be counted as Other."""
    probe = {"filter": 'userName eq "7d420df3-9995-4831-a406-ecf8166f5f6a"'}
    patches = [
        None,
        patch_body({"op": "Replace", "path": "active", "value": "False"}),
        patch_body({"op": "replace", "value": {"active": True}}),
        patch_body({"op": "Add", "path": "members", "value": [{"value": "x"}]}),
        patch_body({"op": "Remove", "path": "members", "value": [{"value": "x"}]}),
        patch_body({"op": "add", "path": "members", "value": []}, {"op": "remove", "path": "members"}),
        patch_body({"op": "replace", "path": "displayName", "value": "x"}),
    ]
    route = {spec.template.removeprefix("/v1/scim/{idp}/"): spec for spec in ROUTES}
    requests = [("GET", route[name], {}, None) for name in ("Schemas", "ResourceTypes", "ServiceProviderConfig")]
    requests.append(("POST", route["Bulk"], {}, None))
    requests.append(("POST", route[".search"], {}, None))
    for endpoint in ("Users", "Groups"):
        requests += [
            ("GET", route[endpoint], {}, None),
            ("GET", route[endpoint], {"filter": 'x eq "y"'}, None),
            ("GET", route[endpoint], probe, None),
            ("POST", route[endpoint], {}, None),
            ("POST", route[f"{endpoint}/.search"], {}, None),
            ("GET", route[f"{endpoint}/{{id}}"], {}, None),
            ("PUT", route[f"{endpoint}/{{id}}"], {}, None),
            ("DELETE", route[f"{endpoint}/{{id}}"], {}, None),
        ]
        requests += [("PATCH", route[f"{endpoint}/{{id}}"], {}, body) for body in patches]
    names = {classify(*request)[0] for request in requests}
    assert names == OPERATIONS  # each label is reachable, and nothing reachable is missing
    assert classify("GET", None, {}, None, "Bogus")[0] not in OPERATIONS  # made-up endpoints become "Other"


def test_durations_fall_in_the_first_bucket_whose_bound_is_not_below_them() -> None:
    metrics = Metrics(None, "")  # the store is read only by a scrape through the endpoint
    for seconds in (0.0005, 0.0006, 10.0, 11.0):
        metrics.observe_request("/r", "POST", 200, seconds)
    metrics.observe_request("/r", "BREW", 418, 0.001)
    samples = parse_metrics(generate_latest(metrics.registry).decode())
    name = "scimlet_http_request_duration_seconds"
    assert value(samples, f"{name}_bucket", route="/r", method="POST", le="0.0005") == 1  # le: bound included
    assert value(samples, f"{name}_bucket", route="/r", method="POST", le="0.001") == 2
    assert value(samples, f"{name}_bucket", route="/r", method="POST", le="10.0") == 3
    assert value(samples, f"{name}_bucket", route="/r", method="POST", le="+Inf") == 4
    assert value(samples, f"{name}_count", route="/r", method="POST") == 4
    assert abs(value(samples, f"{name}_sum", route="/r", method="POST") - 21.0011) < 1e-9
    assert value(samples, "scimlet_http_requests_total", route="/r", method="other", status="418") == 1
