"""Redaction of request bodies before they are logged (scim.operations.redact)."""

from __future__ import annotations

import orjson

from scim.operations import REDACTED, redact
from tests.conftest import PATCH_SCHEMA

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
