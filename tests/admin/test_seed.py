"""`python app.py seed`: an IdP filled with a made-up company, as SCIM clients then read it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.live_server import Server, running, server_at
from web.admin.seed import DEPARTMENTS

E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def _all(scim: httpx.Client, path: str, **params: str) -> list[dict]:
    page = scim.get(path, params={"count": "1000", **params})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["totalResults"] == len(body["Resources"])
    return body["Resources"]


def test_seed_fills_an_idp_with_a_company(database_url: str, tmp_path: Path) -> None:
    server = server_at(database_url, tmp_path / "seed.out")
    done = server.cli("seed", "--idp", server.idp_id, "--users", "230", "--groups", "14")
    assert done.returncode == 0, done.stderr
    assert "230 users and 14 groups created" in done.stdout
    assert "users 230/230" in done.stderr  # the progress, on standard error

    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=30) as scim:
        users = {user["id"]: user for user in _all(scim, "/Users")}
        assert len(users) == 230
        enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        heads = [u for u in users.values() if "manager" not in u[enterprise]]
        assert len(heads) == 10 and all(u["title"].startswith("Head of ") for u in heads)
        for user in users.values():
            assert user["name"]["givenName"] and user["name"]["familyName"]
            assert user["userName"].endswith("@contoso.example")
            assert E164.fullmatch(user["phoneNumbers"][0]["value"])
            manager = user[enterprise].get("manager")
            if manager:  # a manager is a user of the same department
                assert users[manager["value"]][enterprise]["department"] == user[enterprise]["department"]
        reports: dict[str, int] = {}
        for user in users.values():
            if "manager" in user[enterprise]:
                boss = user[enterprise]["manager"]["value"]
                reports[boss] = reports.get(boss, 0) + 1
        assert max(reports.values()) <= 5

        groups = {group["displayName"]: group for group in _all(scim, "/Groups")}
        assert len(groups) == 14
        engineering = groups["Engineering"]
        people = [m for m in engineering["members"] if m["type"] == "User"]
        assert len(people) == 23  # 230 people in 10 departments
        assert all(users[m["value"]][enterprise]["department"] == "Engineering" for m in people)
        team = groups["Engineering Team 1"]
        assert {"value": team["id"], "type": "Group"} in [
            {"value": m["value"], "type": m["type"]} for m in engineering["members"]
        ]
        departments = {name for name, _ in DEPARTMENTS}
        assert {m["value"] for m in groups["All employees"]["members"]} == {groups[d]["id"] for d in departments}
        assert set(groups) == departments | {"All employees"} | {
            f"{d} Team 1" for d in ("Engineering", "Sales", "Marketing")
        }
        # Nested groups: a team member is in All employees through Engineering.
        member = team["members"][0]["value"]
        nested = scim.get("/Groups", params={"filter": f'members.value eq "{member}"'}).json()
        assert {"Engineering", "Engineering Team 1"} <= {g["displayName"] for g in nested["Resources"]}


def test_the_same_seed_makes_the_same_directory_and_a_second_run_is_refused(tmp_path: Path) -> None:
    names = []
    for run in ("a", "b"):
        server = server_at(tmp_path / f"{run}.db", tmp_path / f"{run}.out")
        assert (
            server.cli("seed", "--idp", server.idp_id, "--users", "20", "--groups", "0", "--seed", "7").returncode == 0
        )
        with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=30) as scim:
            names.append(sorted(u["userName"] for u in _all(scim, "/Users")))
    assert names[0] == names[1] and len(names[0]) == 20
    again = server.cli("seed", "--idp", server.idp_id, "--users", "20", "--groups", "0", "--seed", "7")
    assert again.returncode == 2
    assert "seeding stopped" in again.stderr and "already taken" in again.stderr


def test_seed_names_what_is_wrong(tmp_path: Path) -> None:
    server: Server = server_at(tmp_path / "s.db", tmp_path / "s.out")
    unknown = server.cli("seed", "--idp", "no-such-idp", "--users", "5")
    assert unknown.returncode == 2 and "no-such-idp" in unknown.stderr
    negative = server.cli("seed", "--idp", server.idp_id, "--users", "-1")
    assert negative.returncode == 2 and "at least 0" in negative.stderr
