"""Redaction of request bodies before they are logged (scim.operations.redact), decided on the parsed body."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from scim.operations import REDACTED, may_hold_secrets, redact
from tests.conftest import PATCH_SCHEMA, entra_user
from tests.hardening.asgi import configured_tenant
from tests.live_server import sqlite_url
from web.observe import _logged_request_body

ENTERPRISE_PASSWORD = "urn:ietf:params:scim:schemas:core:2.0:User:password"


def test_patch_values_aimed_at_a_sensitive_path_are_redacted() -> None:
    body = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [
            {"op": "replace", "path": "password", "value": "s1"},
            {"op": "Replace", "Path": "PASSWORD", "Value": "s2"},
            {"op": "add", "path": ENTERPRISE_PASSWORD, "value": "s3"},
            {"op": "replace", "value": {"password": "s4", ENTERPRISE_PASSWORD: "s5", "title": "kept"}},
            {"op": "replace", "path": "title", "value": "also kept"},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@y"},
        ],
    }
    text = orjson.dumps(redact(body)).decode()
    for secret in ("s1", "s2", "s3", "s4", "s5"):
        assert f'"{secret}"' not in text
    assert text.count(REDACTED) == 5
    assert "kept" in text and "also kept" in text and "x@y" in text


def test_a_hostile_depth_is_cut_instead_of_exhausting_the_stack() -> None:
    deep: object = {"password": "hidden"}
    for _ in range(5000):
        deep = {"a": [deep]}
    text = orjson.dumps(redact({"token": "t", "nested": deep})).decode()
    assert '"t"' not in text and "hidden" not in text and "nested too deep" in text


# What a client may send, as raw bytes, with the secret each one holds. The server reads names
# decoded and case-insensitively, so the log must too: a raw-bytes check misses every one of these.
DISGUISED_SECRETS = [
    (rb'{"userName": "a@x", "pass\u0077ord": "Escaped-secret-1"}', "Escaped-secret-1"),
    (rb'{"userName": "a@x", "\u0070\u0061\u0073\u0073\u0077\u006f\u0072\u0064": "All-escaped-2"}', "All-escaped-2"),
    (rb'{"userName": "a@x", "PassWord": "Mixed-case-3"}', "Mixed-case-3"),
    (b'{"userName": "a@x", "' + ENTERPRISE_PASSWORD.encode() + b'": "Urn-qualified-4"}', "Urn-qualified-4"),
    (rb'{"urn:ietf:params:scim:schemas:core:2.0:User": {"pa\u0053sword": "Urn-container-5"}}', "Urn-container-5"),
    (b'{"to\xe2\x84\xaaen": "Kelvin-sign-6"}', "Kelvin-sign-6"),  # U+212A lower-cases to "k"
]
DISGUISED_PATCHES = [
    ({"op": "replace", "path": "PASSWORD", "value": "Upper-path-7"}, "Upper-path-7"),
    ({"op": "replace", "path": ENTERPRISE_PASSWORD.upper(), "value": "Urn-path-8"}, "Urn-path-8"),
    ({"op": "replace", "path": 'password[value eq "x:y"]', "value": "Filtered-path-9"}, "Filtered-path-9"),
    ({"op": "replace", "path": "password.value", "value": "Sub-attribute-10"}, "Sub-attribute-10"),
    ({"op": "replace", "path": ["password"], "value": "List-path-11"}, "List-path-11"),  # refused, still secret
    ({"OP": "Replace", "PATH": "pass\u0077ord", "VALUE": "Escaped-path-12"}, "Escaped-path-12"),
]


def patch_bytes(operation: dict) -> bytes:
    raw = orjson.dumps({"schemas": [PATCH_SCHEMA], "Operations": [operation]})
    return raw.replace(b"password", b"pass\\u0077ord")  # the raw bytes never name the secret


@pytest.mark.parametrize(("raw", "secret"), DISGUISED_SECRETS + [(patch_bytes(o), s) for o, s in DISGUISED_PATCHES])
def test_the_logged_body_is_redacted_on_what_the_server_parses(raw: bytes, secret: str) -> None:
    logged = _logged_request_body(raw, orjson.loads(raw))
    assert logged is not None and secret not in logged and REDACTED in logged


def test_a_body_naming_no_secret_is_logged_as_it_came() -> None:
    raw = '{"userName": "b@x", "title": "Ingénieur"}'.encode()
    assert not may_hold_secrets(raw)
    assert _logged_request_body(raw, orjson.loads(raw)) == raw.decode()


async def test_no_disguised_secret_reaches_the_stored_provisioning_log(tmp_path: Path) -> None:
    # SQLite only: the test reads the stored records with sqlite3, below the store.
    async with configured_tenant(sqlite_url(tmp_path / "scimlet.db")) as tenant:
        http = tenant.client
        headers = {"Content-Type": "application/scim+json"}
        user = (await http.post("/Users", json=entra_user("redact@x"))).json()
        for raw, _ in DISGUISED_SECRETS:
            await http.post("/Users", content=raw, headers=headers)
        for operation, _ in DISGUISED_PATCHES:
            await http.patch(f"/Users/{user['id']}", content=patch_bytes(operation), headers=headers)
        await tenant.app.state.provisioning_log.flush()
        conn = sqlite3.connect(tmp_path / "scimlet.db")
        rows = conn.execute("SELECT * FROM provisioning_log").fetchall()
        conn.close()
    logged = "\n".join(repr(row) for row in rows)
    assert len(rows) == 1 + len(DISGUISED_SECRETS) + len(DISGUISED_PATCHES)
    assert logged.count(REDACTED) >= len(DISGUISED_SECRETS) + len(DISGUISED_PATCHES)
    for _, secret in DISGUISED_SECRETS + DISGUISED_PATCHES:
        assert secret not in logged, secret
