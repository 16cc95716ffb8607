"""Throttling of failed authentications, per client address.

Only failures count. Entra calls from shared Microsoft addresses, so an attacker guessing tokens may
share an address with the real IdP: a request with a valid token is therefore always let through,
and only further failures from a throttled address are answered 429 instead of 401. Tokens are
256-bit random secrets, so the throttle is not what stops guessing; it keeps a flood of bad requests
cheap to answer and visible (Retry-After tells a misconfigured client to slow down).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from scim.errors import ScimError

MAX_TRACKED_CLIENTS = 10_000


class AuthThrottled(ScimError):
    """429 for a client address past its failed-authentication budget; carries its Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            f"Too many failed authentications from this address; retry after {retry_after} "
            "seconds with the secret of the API key selected for this IdP",
            retry_after=retry_after,
        )


class AuthThrottle:
    """A fixed window per client address: `limit` failures per `window` seconds, then 429."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        # client -> (window start, failures in it), oldest window first: a window that restarts
        # moves to the end, so the expired ones are always at the front.
        self.failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    def failed(self, client: str) -> None:
        """Count one failed authentication; raise AuthThrottled when the client is over its limit."""
        if not self.enabled:
            return
        now = self.clock()
        start, count = self.failures.get(client, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
            self.failures.pop(client)
        if client not in self.failures:
            self._make_room(now)
        self.failures[client] = (start, count + 1)
        if count + 1 > self.limit:
            raise AuthThrottled(max(1, math.ceil(start + self.window - now)))

    def _make_room(self, now: float) -> None:
        """Bound memory under a flood from many addresses: drop expired windows, then the oldest.

        Both come off the front, so a new address costs O(1) amortised even with a full table (a
        scan of 10,000 windows made each new address's 401 four times slower)."""
        failures = self.failures
        while failures and now - next(iter(failures.values()))[0] >= self.window:
            failures.popitem(last=False)
        while len(failures) >= self.max_clients:
            failures.popitem(last=False)
