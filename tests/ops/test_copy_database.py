"""copy-database as an operator runs it: a populated database (real SQLite file or real PostgreSQL)
copied into an empty one of the other backend, then a server on the copy answers as the original."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import entra_user
from tests.live_server import Server, free_port, run_cli, running, server_at

GETS = (
    "/Users",
    "/Users?startIndex=2&count=3",
    "/Groups",
    '/Groups?filter=displayName eq "Outer"',
    '/Users?filter=userName sw "u"&sortBy=userName',
)


def _server(tmp_path: Path, name: str, url: str, provision: bool = True) -> Server:
    return server_at(tmp_path / f"{name}.db", tmp_path / f"{name}.out", provision=provision, SCIMLET_DATABASE_URL=url)


def _populate(server: Server) -> None:
    """Users, groups nested in a group, a revoked key, an admin password and a console session, logs."""
    assert server.cli("apikey", "create", "--name", "old", "--write", "users").returncode == 0
    assert server.cli("apikey", "revoke", "old").returncode == 0
    password = re.search(r"shown only now\): (\S+)", server.cli("admin", "password").stdout)
    assert password
    with running(server), httpx.Client(base_url=server.tenant_url, headers=server.auth, timeout=10) as scim:
        users = []
        for n in range(7):
            body = entra_user(f"u{6 - n}@x.test", active=n % 2 == 0, displayName=f"Ünïcode {n}")
            created = scim.post("/Users", json=body)
            assert created.status_code == 201, created.text
            users.append(created.json()["id"])
        inner = scim.post(
            "/Groups",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Inner",
                "members": [{"value": u} for u in users[:3]],
            },
        ).json()["id"]
        scim.post(
            "/Groups",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Outer",
                "members": [{"value": inner}, {"value": users[5]}],
            },
        )
        patched = scim.patch(
            f"/Users/{users[1]}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": True}],
            },
        )
        assert patched.status_code == 200, patched.text
        with httpx.Client(base_url=server.base, timeout=10) as browser:
            page = browser.get("/admin/login")
            csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
            assert csrf
            signed_in = browser.post(
                "/admin/login", data={"csrf_token": csrf.group(1), "password": password.group(1), "next": "/admin/"}
            )
            assert signed_in.status_code in (200, 303), signed_in.text


def _answers(server: Server, tenant_url: str, secret: str) -> object:
    """The GETs' bodies, the server's own address (in meta.location) written as BASE."""
    with running(server), httpx.Client(base_url=tenant_url, headers={"Authorization": f"Bearer {secret}"}) as scim:
        answers: dict[str, object] = {}
        for path in GETS:
            response = scim.get(path)
            assert response.status_code == 200, response.text
            answers[path] = response.json()
        for resource in answers["/Users"]["Resources"] + answers["/Groups"]["Resources"]:  # type: ignore[index]
            kind = "Users" if "userName" in resource else "Groups"
            answers[resource["id"]] = scim.get(f"/{kind}/{resource['id']}").json()
        new = scim.post("/Users", json=entra_user("new"))
        assert new.status_code == 201, new.text
        listed = scim.get("/Users").json()["Resources"]
        assert listed[-1]["userName"] == "new"  # new rows continue after the copied ones
    return json.loads(json.dumps(answers).replace(server.base, "BASE"))


def _copy(source: Server, to: str) -> str:
    done = run_cli(source.env, "copy-database", "--to", to)
    assert done.returncode == 0, done.stdout + done.stderr
    for table in (
        "api_keys",
        "idps",
        "users",
        "groups",
        "group_members",
        "provisioning_log",
        "settings",
        "admin_sessions",
    ):
        line = next(line for line in done.stdout.splitlines() if line.startswith(table + " "))
        assert line.endswith("match"), done.stdout
        assert int(line.split()[1]) > 0, done.stdout  # every table had rows to copy
    return done.stdout


@pytest.mark.parametrize("direction", ["sqlite_to_postgresql", "postgresql_to_sqlite"])
def test_copy_keeps_every_answer(tmp_path: Path, postgresql_database: str, direction: str) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'scimlet.db'}"
    source_url, target_url = (
        (sqlite_url, postgresql_database) if direction == "sqlite_to_postgresql" else (postgresql_database, sqlite_url)
    )
    source = _server(tmp_path, "source", source_url)
    _populate(source)
    _copy(source, target_url)
    target = _server(tmp_path, "target", target_url, provision=False)
    # Same tenant URL path, same bearer secret: what Entra holds keeps working on the copy.
    target_tenant = source.tenant_url.replace(source.base, target.base)
    copied, original = (
        _answers(target, target_tenant, source.secret),
        _answers(source, source.tenant_url, source.secret),
    )
    assert copied == original  # a group's members too: both backends list them in member id order
    keys = {key["name"]: key for key in target.cli_json("apikey", "list")}
    assert keys["old"]["revoked"] and not keys["entra"]["revoked"]
    # Entra's next cycle against the moved tenant, with the secret it already holds: no failure.
    with running(target):
        cycle = run_cli(target.env, "entra-sim", f"--url={target_tenant}", f"--token={source.secret}", "--users=3")
    assert cycle.returncode == 0 and "Result: PASSED" in cycle.stdout, cycle.stdout[-2000:] + cycle.stderr


def _sqlite_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("users", "api_keys", "idps"))


def test_non_empty_target_is_refused_and_left_as_it_was(tmp_path: Path, postgresql_database: str) -> None:
    source = _server(tmp_path, "source", postgresql_database)
    target = _server(tmp_path, "target", f"sqlite:///{tmp_path / 'target.db'}")  # holds a key and an IdP
    before = _sqlite_rows(tmp_path / "target.db")
    done = run_cli(source.env, "copy-database", "--to", f"sqlite:///{tmp_path / 'target.db'}")
    assert done.returncode == 2
    assert "is not empty" in done.stderr and "api_keys: 1" in done.stderr
    assert "Traceback" not in done.stderr
    assert _sqlite_rows(tmp_path / "target.db") == before
    back = run_cli(target.env, "copy-database", "--to", postgresql_database)
    assert back.returncode == 2 and "is not empty" in back.stderr and "Traceback" not in back.stderr


@pytest.mark.parametrize(
    "target", [lambda port: f"postgresql://nobody:secret@127.0.0.1:{port}/scimlet", lambda _: "mysql://x/y"]
)
def test_unreachable_target_is_a_clear_error(tmp_path: Path, target: Callable[[int], str]) -> None:
    source = _server(tmp_path, "source", f"sqlite:///{tmp_path / 'source.db'}")
    done = run_cli(source.env, "copy-database", "--to", target(free_port()))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(("error: ", "config error: ")) and "Traceback" not in done.stderr
    assert "secret" not in done.stderr  # the password is masked
