"""The failed-authentication throttle on its own, with a controlled clock."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from web.admin.security import SignInThrottle
from web.throttle import MAX_TRACKED_CLIENTS, AuthThrottle, AuthThrottled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fixed_window_per_address_with_an_honest_retry_after() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=2, window=60, clock=clock)
    throttle.failed("a")
    clock.now += 10
    throttle.failed("a")
    clock.now += 5
    with pytest.raises(AuthThrottled) as caught:
        throttle.failed("a")
    assert (caught.value.status, caught.value.retry_after) == (429, 45)
    throttle.failed("b")  # another address is not affected
    clock.now += 45
    throttle.failed("a")  # a new window
    throttle.failed("a")
    with pytest.raises(AuthThrottled):
        throttle.failed("a")


def test_disabled_when_the_limit_is_zero() -> None:
    throttle = AuthThrottle(limit=0, window=60)
    for _ in range(1000):
        throttle.failed("a")
    assert throttle.failures == {}


def test_memory_stays_bounded_under_a_flood_from_many_addresses() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=5, window=60, clock=clock, max_clients=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle.failures) <= 100
    for _ in range(5):
        throttle.failed("attacker")
    with pytest.raises(AuthThrottled):  # the newest address is still tracked and throttled
        throttle.failed("attacker")
    clock.now += 61
    throttle.failed("fresh")  # expired windows are dropped first
    assert len(throttle.failures) <= 100 and "fresh" in throttle.failures


def test_a_window_that_restarts_is_no_longer_the_oldest() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=5, window=60, clock=clock, max_clients=3)
    for client in ("a", "b", "c"):
        throttle.failed(client)
        clock.now += 1
    clock.now += 60  # every window expired; "a" fails again and starts a new one
    throttle.failed("a")
    throttle.failed("d")  # drops the expired windows of b and c, keeps a's new one
    assert list(throttle.failures) == ["a", "d"]
    assert throttle.failures["a"] == (clock.now, 1)


def per_new_address_seconds(failed, tracked: int, calls: int = 2000) -> float:
    """The cheapest of five rounds of `calls` failures from new addresses, per call, with `tracked`
    addresses already in a table of that size (each new one evicts one)."""
    rounds = []
    for round_ in range(5):
        started = time.perf_counter()
        for i in range(calls):
            failed(f"new-{tracked}-{round_}-{i}")
        rounds.append((time.perf_counter() - started) / calls)
    return min(rounds)


@pytest.mark.serial  # compares per-call times: run alone
@pytest.mark.parametrize("kind", ["scim", "admin sign-in"])
def test_a_full_table_costs_a_new_address_no_more_than_an_empty_one(kind: str) -> None:
    """10,000 tracked addresses, none expired: a scan per new address made each 401 four times slower."""

    def full_table(size: int) -> tuple[object, Callable[[str], None]]:
        if kind == "scim":
            table = AuthThrottle(limit=5, window=3600, max_clients=size)
            return table, table.failed
        table = SignInThrottle(max_clients=size)
        return table, table.failed

    costs = {}
    for size in (10, MAX_TRACKED_CLIENTS):
        table, failed = full_table(size)
        for i in range(size):
            failed(f"old-{i}")
        costs[size] = per_new_address_seconds(failed, size)
        tracked = table.failures if kind == "scim" else table.clients
        assert len(tracked) == size  # bounded: full, never over
    ratio = costs[MAX_TRACKED_CLIENTS] / costs[10]
    print(f"\n{kind}: {costs[10] * 1e6:.2f} µs at 10 tracked, {costs[MAX_TRACKED_CLIENTS] * 1e6:.2f} µs at 10,000")
    assert ratio < 5, costs  # O(1): about 1; the scan made it hundreds
