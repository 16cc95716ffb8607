"""web/faults.py's pure parts: which requests a rule's fraction picks, and what a request is."""

from __future__ import annotations

import pytest

from scim.routes import ROUTES
from storage import FaultRule
from web.faults import ActiveRule, Faults, new_rule, operation_of

ROUTE = {spec.template.removeprefix("/v1/scim/{idp}/"): spec for spec in ROUTES}


def rule(fraction: float, **scope: str) -> FaultRule:
    return new_rule("idp", "429", fraction, 60, clock=lambda: 1_000_000.0, **scope)


@pytest.mark.parametrize("fraction", [0.01, 0.25, 1 / 3, 0.5, 0.6, 1.0])
def test_every_run_of_requests_gets_its_share_within_one(fraction: float) -> None:
    active = ActiveRule(rule(fraction))
    picked = [active.turn() for _ in range(1000)]
    for length in (1, 7, 100, 1000):
        for start in range(0, 1000 - length + 1, 97):
            assert abs(sum(picked[start : start + length]) - fraction * length) <= 1


def test_operations_and_scopes() -> None:
    assert operation_of("POST", ROUTE["Users"]) == "create"
    assert operation_of("GET", ROUTE["Groups"]) == "list"
    assert operation_of("POST", ROUTE["Users/.search"]) == "search"
    assert operation_of("PATCH", ROUTE["Groups/{id}"]) == "update"
    assert operation_of("PUT", ROUTE["Users/{id}"]) == "replace"
    assert operation_of("GET", ROUTE["ServiceProviderConfig"]) is None
    scoped = ActiveRule(rule(1.0, method="post", resource="Users", operation="create"))
    assert scoped.rule.method == "POST"
    assert scoped.matches("POST", ROUTE["Users"]) and not scoped.matches("POST", ROUTE["Groups"])
    assert not scoped.matches("GET", ROUTE["Users"])


def test_an_expired_rule_picks_nothing() -> None:
    moment = [1_000_000.0]
    faults = Faults(store=None, clock=lambda: moment[0])  # type: ignore[arg-type]  # pick reads no store
    faults.active = {"idp": [ActiveRule(rule(1.0))]}
    assert faults.pick("idp", "GET", ROUTE["Users"]) is not None
    assert faults.pick("other", "GET", ROUTE["Users"]) is None
    moment[0] += 61
    assert faults.pick("idp", "GET", ROUTE["Users"]) is None
