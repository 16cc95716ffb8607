"""The failed-authentication throttle on its own, with a controlled clock."""

from __future__ import annotations

import pytest

from web.throttle import AuthThrottle, AuthThrottled


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
