"""The command line runs the same admin service as the console and the admin API."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

from tests.conftest import run_cli
from web.admin.security import verify_password
from web.admin.service import PASSWORD_SETTING


def cli_env(tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "SCIMLET_DATABASE_PATH": str(tmp_path / "cli.db"),
        "SCIMLET_SERVER_BASE_URL": "https://scim.example.com",
        "SCIMLET_LOGGING_LEVEL": "warning",
    }
    env.pop("SCIMLET_ADMIN_PASSWORD", None)
    return env


def test_cli_keys_and_idps_go_through_the_service(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    key = json.loads(run_cli(env, "apikey", "create", "--name", "Entra", "--write", "users,groups", "--json").stdout)
    idp = json.loads(
        run_cli(env, "idp", "create", "--name", "Contoso", "--icon", "windows", "--apikey", "entra", "--json").stdout
    )
    assert idp["tenant_url"] == f"https://scim.example.com/v1/scim/{idp['id']}"
    listed = json.loads(run_cli(env, "idp", "list", "--json").stdout)
    assert listed == [
        {
            "id": idp["id"],
            "name": "Contoso",
            "icon": "windows",
            "api_key_id": key["id"],
            "second_api_key_id": None,
            "created": listed[0]["created"],
            "tenant_url": idp["tenant_url"],
            "schema": listed[0]["schema"],
        }
    ]
    assert (listed[0]["schema"]["profile"], listed[0]["schema"]["strict"]) == ("meta-networks", False)
    keys = json.loads(run_cli(env, "apikey", "list", "--json").stdout)
    assert [(k["name"], k["privileges"], k["revoked"]) for k in keys] == [("Entra", ["users", "groups"], None)]
    assert "secret" not in keys[0]
    bad_icon = run_cli(env, "idp", "create", "--name", "Other", "--icon", "skull", "--apikey", "entra")
    assert bad_icon.returncode == 2 and "Unknown icon 'skull'" in bad_icon.stderr
    duplicate = run_cli(env, "apikey", "create", "--name", "ENTRA")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    deleted = run_cli(env, "idp", "delete", idp["id"], "--yes")
    assert deleted.returncode == 0 and json.loads(run_cli(env, "idp", "list", "--json").stdout) == []


def test_cli_sets_an_idps_profile_strictness_and_extensions_and_says_what_changed(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_cli(env, "apikey", "create", "--name", "k", "--write", "users,groups")
    idp = json.loads(
        run_cli(env, "idp", "create", "--name", "Demo", "--apikey", "k", "--profile", "rfc7643", "--json").stdout
    )
    assert (idp["schema"]["profile"], idp["schema"]["strict"], idp["schema"]["extensions"]) == ("rfc7643", False, [])
    declarations = tmp_path / "acme.json"
    declarations.write_text(
        json.dumps(
            [
                {
                    "id": "urn:ietf:params:scim:schemas:extension:Acme:2.0:User",
                    "attributes": [
                        {"name": "costCenter"},
                        {"name": "badge", "type": "integer", "uniqueness": "server"},
                    ],
                }
            ]
        )
    )
    updated = run_cli(env, "idp", "update", idp["id"], "--extensions", str(declarations), "--strict")
    assert updated.returncode == 0, updated.stderr
    assert "Declared urn:ietf:params:scim:schemas:extension:Acme:2.0:User (User): costCenter, badge." in updated.stdout
    assert "Strict on" in updated.stdout and "0 of 0 stored users checked" in updated.stdout
    shown = run_cli(env, "idp", "show", idp["id"])
    assert "schema profile rfc7643 (strict)" in shown.stdout and "    badge: integer" in shown.stdout
    assert "userPrincipalName -> userName" in shown.stdout
    report = json.loads(run_cli(env, "idp", "show", idp["id"], "--json").stdout)
    assert [a["name"] for a in report["schema"]["extensions"][0]["attributes"]] == ["costCenter", "badge"]
    assert report["schema"]["extensions"][0]["attributes"][1]["uniqueness"] == "server"
    again = run_cli(env, "idp", "update", idp["id"], "--extensions", str(declarations), "--strict")
    assert "Nothing changed." in again.stdout
    declarations.write_text('[{"id": "not a urn", "attributes": [{"name": "x"}]}]')
    refused = run_cli(env, "idp", "update", idp["id"], "--extensions", str(declarations))
    assert refused.returncode == 2 and "'not a urn' is not a schema URN" in refused.stderr
    missing = run_cli(env, "idp", "update", idp["id"], "--extensions", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read the extension schemas" in missing.stderr
    bad_profile = run_cli(env, "idp", "update", idp["id"], "--profile", "okta")
    assert bad_profile.returncode == 2 and "invalid choice: 'okta'" in bad_profile.stderr
    assert json.loads(run_cli(env, "idp", "show", idp["id"], "--json").stdout)["schema"] == report["schema"]


def test_cli_admin_password_replaces_the_hash_and_ends_sessions(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_cli(env, "migrate")
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        conn.execute(
            "INSERT INTO admin_sessions VALUES ('h', 'c', '2025-01-01T00:00:00.000Z', "
            "'2999-01-01T00:00:00.000Z', '127.0.0.1')"
        )
    result = run_cli(env, "admin", "password")
    assert result.returncode == 0, result.stderr
    password = re.search(r"New admin password \(shown only now\): (\S+)", result.stdout).group(1)
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        stored = conn.execute("SELECT value FROM settings WHERE key = ?", (PASSWORD_SETTING,)).fetchone()[0]
        sessions = conn.execute("SELECT count(*) FROM admin_sessions").fetchone()[0]
    assert verify_password(password, stored) and password not in stored
    assert not verify_password(password + "x", stored)
    assert sessions == 0
    configured = run_cli({**env, "SCIMLET_ADMIN_PASSWORD": "from the environment"}, "admin", "password")
    assert configured.returncode == 0 and "wins over this one" in configured.stderr
