"""What the provisioning log keeps of names that are gone (a deleted resource's, in its delete's record), and
which of its records are Test Connection's probes rather than failures."""

from __future__ import annotations

import uuid

from storage import LogQuery
from tests.conftest import entra_user
from tests.hardening.asgi import configured_tenant


async def test_a_delete_is_recorded_with_the_name_and_found_by_it(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        user = (await tenant.client.post("/Users", json=entra_user("dora@contoso.com"))).json()
        group = (await tenant.client.post("/Groups", json={"displayName": "Night Shift"})).json()
        assert (await tenant.client.delete(f"/Users/{user['id']}")).status_code == 204
        assert (await tenant.client.delete(f"/Groups/{group['id']}")).status_code == 204
        stale = await tenant.client.delete(f"/Users/{user['id']}")
        assert stale.status_code == 404
        await tenant.app.state.provisioning_log.flush()

        found, _ = await tenant.store.query_logs(LogQuery(text="dora@contoso"))
        assert [(r.operation, r.target, r.resource_id, r.status) for r in found] == [
            ("Delete User", "dora@contoso.com", user["id"], 204),
            ("Create User", "dora@contoso.com", user["id"], 201),
        ]
        assert found[0].label == "dora@contoso.com"
        found, _ = await tenant.store.query_logs(LogQuery(text="night shift"))
        assert [(r.operation, r.target) for r in found] == [
            ("Delete Group", "Night Shift"),
            ("Create Group", "Night Shift"),
        ]
        # A delete of what is no longer there names only the id it was asked for.
        gone, _ = await tenant.store.query_logs(LogQuery(failures=True))
        assert [(r.operation, r.target, r.status) for r in gone] == [("Delete User", user["id"], 404)]


async def test_a_refused_delete_names_the_resource_too(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        user = (await tenant.client.post("/Users", json=entra_user("eve@contoso.com"))).json()
        refused = await tenant.client.delete(f"/Users/{user['id']}", headers={"If-Match": 'W/"999"'})
        assert refused.status_code == 412
        assert (await tenant.client.get(f"/Users/{user['id']}")).status_code == 200
        await tenant.app.state.provisioning_log.flush()
        records, _ = await tenant.store.query_logs(LogQuery(failures=True))
        assert [(r.operation, r.target, r.status) for r in records] == [("Delete User", "eve@contoso.com", 412)]


async def test_test_connection_probes_are_not_failures(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        probe = {"filter": f'userName eq "{uuid.uuid4()}"'}
        assert (await tenant.client.get("/Users", params=probe)).status_code == 200
        wrong = await tenant.client.get(
            "/Users", params=probe, headers={"Authorization": f"Bearer wrong-{uuid.uuid4().hex}"}
        )
        assert wrong.status_code == 401
        mistyped = f"https://scim.test/v1/scim/{uuid.uuid4().hex}/Users"
        assert (await tenant.client.get(mistyped, params=probe)).status_code == 401
        assert (await tenant.client.get("/Users/no-such-id")).status_code == 404
        await tenant.app.state.provisioning_log.flush()

        records, _ = await tenant.store.query_logs(LogQuery())
        assert [(r.operation, r.status, bool(r.probe), r.failed) for r in records] == [
            ("Get User", 404, False, True),
            ("Test connection", 401, False, True),  # a mistyped tenant URL is a failure, probe or not
            ("Test connection", 401, True, False),
            ("Test connection", 200, True, False),
        ]
        failures, _ = await tenant.store.query_logs(LogQuery(failures=True))
        assert [(r.operation, r.status) for r in failures] == [("Get User", 404), ("Test connection", 401)]
        counters = await tenant.store.log_counters([tenant.idp_id], "2000-01-01T00:00:00Z")
        assert (counters[tenant.idp_id].operations, counters[tenant.idp_id].failures) == (3, 1)


async def test_a_deleted_idps_name_is_kept(database_url: str) -> None:
    async with configured_tenant(database_url) as tenant:
        key, _ = await tenant.store.create_api_key("gone key", "", True, True)
        gone = await tenant.store.create_idp("Fabrikam", "key", key.id)
        assert await tenant.store.deleted_idp_names() == {}
        await tenant.store.delete_idp(gone.id)
        assert await tenant.store.deleted_idp_names() == {gone.id: "Fabrikam"}
        # A new IdP may take the name: the deleted one keeps it under its own ID.
        again = await tenant.store.create_idp("Fabrikam", "key", None)
        assert (await tenant.store.deleted_idp_names())[gone.id] == "Fabrikam" and again.id != gone.id
