"""Fault injection: per IdP, rules that answer a share of its SCIM requests with 429 + Retry-After,
500 or 503 (SCIM error bodies), a delay before the real answer, or a connection closed without
an answer, so that an admin can rehearse what Entra (or Okta) does when an app misbehaves.

A rule is checked and stored by the admin service (web/admin/service.py); `Faults` keeps the active
rules of every IdP in memory, read from the store every REFRESH_SECONDS (so they reach every
instance sharing a database, and outlive a restart until they expire). With no rule active the
SCIM path pays one attribute read and a truth test of an empty dict. A fault is decided after the
request is routed and authenticated and before its handler runs: an injected answer to a write
means the write did not happen.

Which requests of a rule's matching ones get the fault is decided by a counter, not by chance: the
n-th matching request is answered with the fault when floor(n * fraction) > floor((n - 1) * fraction),
so a fraction of 0.5 is every second request, 1.0 every one, and any run of requests gets its share
within one. Each process counts on its own; a rule keeps its count across refreshes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from scim.errors import ScimError, shown
from scim.routes import COLLECTION, ITEM, SEARCH, ScimRoute
from storage import AdminError, FaultRule, FaultStore
from storage.common import format_timestamp, new_resource_id, now, timestamp_seconds
from web.http_protocol import CLOSE_EXTENSION

log = logging.getLogger("scimlet")

KINDS = ("429", "500", "503", "delay", "close")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESOURCES = {"User": "Users", "Group": "Groups"}  # route resource -> the rule's name for it (the endpoint)
# What a request does, told from its method and route alone (the body is not read before a fault).
OPERATIONS = ("create", "get", "list", "search", "replace", "update", "delete")
MIN_SECONDS, MAX_SECONDS = 1, 24 * 3600
MAX_DELAY_MS = 30_000
MAX_RETRY_AFTER = 3600
DEFAULT_RETRY_AFTER = 5
REFRESH_SECONDS = 1.0
# The status a closed-unanswered request is recorded with: nginx's 444 ("no response"), a failure.
CLOSED_UNANSWERED = 444
PARTS = 1_000_000  # a fraction is counted in millionths, so the counter's arithmetic is exact


def operation_of(method: str, route: ScimRoute) -> str | None:
    """The request's operation as rules name it (OPERATIONS); None for the discovery endpoints."""
    if route.resource is None:
        return None
    if route.kind == SEARCH:
        return "search"
    if route.kind == COLLECTION:
        return "create" if method == "POST" else "list"
    assert route.kind == ITEM
    return {"GET": "get", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}.get(method)


class ActiveRule:
    """A rule as the SCIM path checks it: its expiry as a clock value and its request counter."""

    __slots__ = ("rule", "expires", "parts", "seen")

    def __init__(self, rule: FaultRule, seen: int = 0) -> None:
        self.rule = rule
        self.expires = timestamp_seconds(rule.expires)
        self.parts = round(rule.fraction * PARTS)
        self.seen = seen

    def matches(self, method: str, route: ScimRoute) -> bool:
        rule = self.rule
        if rule.method is not None and rule.method != method:
            return False
        if rule.resource is not None and RESOURCES.get(route.resource or "") != rule.resource:
            return False
        return rule.operation is None or rule.operation == operation_of(method, route)

    def turn(self) -> bool:
        """Count one matching request; whether it is one of the rule's fraction."""
        self.seen += 1
        return self.seen * self.parts // PARTS > (self.seen - 1) * self.parts // PARTS


class Faults:
    """The active fault rules of every IdP, kept in memory and refreshed from the store."""

    def __init__(self, store: FaultStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        # IdP ID -> its active rules, oldest first. Empty when no rule is active anywhere: the SCIM
        # path tests it before anything else.
        self.active: dict[str, list[ActiveRule]] = {}

    async def refresh(self) -> None:
        """Read the active rules again; a rule still active keeps its counter."""
        counters = {entry.rule.id: entry.seen for entries in self.active.values() for entry in entries}
        active: dict[str, list[ActiveRule]] = {}
        for rule in await self.store.fault_rules(now()):
            active.setdefault(rule.idp_id, []).append(ActiveRule(rule, counters.get(rule.id, 0)))
        self.active = active

    async def run(self) -> None:
        """Refresh every REFRESH_SECONDS until cancelled (the app's lifespan runs this)."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("fault rules could not be read; the last ones read stay in force until they expire")
            await asyncio.sleep(REFRESH_SECONDS)

    def pick(self, idp_id: str, method: str, route: ScimRoute) -> FaultRule | None:
        """The rule whose fault this request gets, if any: the oldest active rule that matches it
        and whose turn it is (each matching rule tried counts the request)."""
        entries = self.active.get(idp_id)
        if not entries:
            return None
        moment = self.clock()
        for entry in entries:
            if entry.expires > moment and entry.matches(method, route) and entry.turn():
                return entry.rule
        return None


def fault_error(rule: FaultRule) -> ScimError:
    """The SCIM error an error rule answers with; its detail says the fault was injected."""
    why = f"injected by a scimlet fault rule of this IdP (rule {rule.id}, until {rule.expires})"
    if rule.kind == "429":
        retry = rule.retry_after or DEFAULT_RETRY_AFTER
        return ScimError(429, f"Too many requests: {why}; retry after {retry} s", retry_after=retry)
    if rule.kind == "503":
        retry = rule.retry_after or DEFAULT_RETRY_AFTER
        return ScimError(503, f"Service unavailable: {why}; retry after {retry} s", retry_after=retry)
    return ScimError(500, f"Internal server error: {why}")


def closer(scope: Mapping[str, Any]) -> Callable[[], None] | None:
    """The server's way to end this request's connection unanswered (None: the server has none)."""
    extension = scope.get("extensions", {}).get(CLOSE_EXTENSION)
    return extension["close"] if extension else None


def new_rule(
    idp_id: str,
    kind: str,
    fraction: object,
    seconds: float,
    *,
    method: str | None = None,
    resource: str | None = None,
    operation: str | None = None,
    retry_after: object = None,
    delay_ms: object = None,
    clock: Callable[[], float] = time.time,
) -> FaultRule:
    """A checked rule starting now; AdminError 400 says what to fix. The numbers are taken as a
    client sent them (any JSON value): checking their types is part of checking the rule."""
    if kind not in KINDS:
        raise AdminError(f"Unknown fault kind {shown(kind)}; choose one of {', '.join(KINDS)}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise AdminError(
            f"fraction must be a number above 0 and at most 1 (the share of requests), not {shown(fraction)}"
        )
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise AdminError(
            f"the expiry must be from {MIN_SECONDS} s to 24 hours ({MAX_SECONDS} s, 1440 minutes), "
            f"not {shown(seconds)} s"
        )
    if method is not None and method.upper() not in METHODS:
        raise AdminError(f"Unknown method {shown(method)}; choose one of {', '.join(METHODS)} (or none: any)")
    if resource is not None and resource not in RESOURCES.values():
        raise AdminError(f"Unknown resource type {shown(resource)}; choose Users or Groups (or none: any)")
    if operation is not None and operation not in OPERATIONS:
        raise AdminError(f"Unknown operation {shown(operation)}; choose one of {', '.join(OPERATIONS)} (or none: any)")
    if retry_after is not None:
        if kind not in ("429", "503"):
            raise AdminError("retry_after is for 429 and 503 rules only")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or not 1 <= retry_after <= MAX_RETRY_AFTER:
            raise AdminError(f"retry_after must be whole seconds from 1 to {MAX_RETRY_AFTER}, not {shown(retry_after)}")
    if kind == "delay":
        if delay_ms is None:
            raise AdminError("a delay rule needs delay_ms, the delay in milliseconds (1 to 30000)")
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or not 1 <= delay_ms <= MAX_DELAY_MS:
            raise AdminError(f"delay_ms must be whole milliseconds from 1 to {MAX_DELAY_MS}, not {shown(delay_ms)}")
    elif delay_ms is not None:
        raise AdminError("delay_ms is for delay rules only")
    started = clock()
    return FaultRule(
        id=new_resource_id(),
        idp_id=idp_id,
        kind=kind,
        fraction=float(fraction),
        method=method.upper() if method is not None else None,
        resource=resource,
        operation=operation,
        retry_after=retry_after if retry_after is not None or kind not in ("429", "503") else DEFAULT_RETRY_AFTER,
        delay_ms=delay_ms,
        created=format_timestamp(started),
        expires=format_timestamp(started + seconds),
    )


# The presets: (what it is for, the rule's kind, fraction and Retry-After).
PRESETS: dict[str, tuple[str, str, float, int | None]] = {
    # A busy app: a quarter of the requests throttled, as a SaaS API under load throttles; Entra
    # and Okta wait Retry-After and retry, so provisioning slows down but nothing fails for good.
    "throttle": ("throttle like a busy app: 429 with Retry-After 5 on 25% of requests", "429", 0.25, 5),
    # Entra quarantines a job whose failures pass about 40% of its operations (docs/entra.md):
    # 500 on 60% of every request of the IdP is well past that, retries included.
    "quarantine": (
        "rehearse quarantine: 500 on 60% of requests, above Entra's ~40% failure threshold",
        "500",
        0.6,
        None,
    ),
}
DEFAULT_PRESET_MINUTES = 30


def rule_json(rule: FaultRule) -> dict:
    return {
        "id": rule.id,
        "idp_id": rule.idp_id,
        "kind": rule.kind,
        "fraction": rule.fraction,
        "method": rule.method,
        "resource": rule.resource,
        "operation": rule.operation,
        "retry_after": rule.retry_after,
        "delay_ms": rule.delay_ms,
        "created": rule.created,
        "expires": rule.expires,
    }


def describe(rule: FaultRule) -> str:
    """The rule in words, for the console and the CLI."""
    what = {"429": "429 Too Many Requests", "500": "500 Internal Server Error", "503": "503 Service Unavailable"}.get(
        rule.kind, "close the connection without an answer" if rule.kind == "close" else f"delay {rule.delay_ms} ms"
    )
    if rule.retry_after is not None:
        what += f" (Retry-After {rule.retry_after})"
    scope = " ".join(part for part in (rule.method, rule.resource, rule.operation) if part) or "all"
    return f"{what} on {rule.fraction:.0%} of {scope} requests, until {rule.expires}"
