"""GET /metrics in the Prometheus text format, from a registry of the app's own.

Per request, only plain counters in dicts move; they become Prometheus counters and a histogram
when scraped. Users and groups per IdP, database size and the writer's queue are read when
Prometheus scrapes, never per request.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from storage import LogRecord, Store
from web.observe import ProvisioningLog

log = logging.getLogger("scimlet.metrics")

# SCIM requests take a millisecond or two: finer buckets at the bottom than Prometheus' defaults.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event delivery latency: from milliseconds (a receiver up) to hours (one that was down).
EVENT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
# The operation names scim/operations.py gives; anything else (a request to an endpoint that does
# not exist, an odd method) is counted as "Other", so a client cannot mint label values.
OPERATIONS = frozenset(
    [
        f"{verb} {rtype}"
        for verb in ("Create", "Get", "Replace", "Update", "Delete", "Find")
        for rtype in ("User", "Group")
    ]
    + [f"{verb} {rtypes}" for verb in ("List", "Search") for rtypes in ("Users", "Groups")]
    + [
        "Disable User",
        "Enable User",
        "Add members",
        "Remove members",
        "Update members",
        "Test connection",
        "Read Schemas",
        "Read ResourceTypes",
        "Read ServiceProviderConfig",
        "Bulk request",
        "Search Users and Groups",
    ]
)
UNKNOWN_IDP = "unknown"

# The _created series double the output and nothing here reads them (a process-wide switch).
prometheus_client.disable_created_metrics()


@dataclass
class Snapshot:
    """What the last scrape read from the store."""

    idps: list[tuple[str, str, int, int]] = field(default_factory=list)  # (id, name, users, groups)
    database_up: bool = True
    database_sizes: dict[str, int] = field(default_factory=dict)  # bytes by file label (StorageStats.sizes)
    write_queue_depth: int = 0
    write_batches: int = 0
    log_buffered: int = 0
    log_written: int = 0
    log_dropped: int = 0
    log_lost: int = 0
    events: dict[str, int] = field(default_factory=dict)  # the outbox and subscription counters


class Metrics:
    """The app's metrics: request counters fed per request, SCIM operations fed by provisioning records."""

    def __init__(self, store: Store, token: str, provisioning_log: ProvisioningLog | None = None) -> None:
        self.store = store
        self.token = token
        self.provisioning_log = provisioning_log
        self.registry = CollectorRegistry()
        # Per request only these plain counters move (on the event loop's thread, which also serves
        # the scrape): prometheus_client's Counter and Histogram take a lock per increment, which
        # cost about 3% of a SCIM request's CPU. _RequestCollector turns them into metrics.
        self.requests: dict[tuple[str, str, int], int] = {}  # (route, method, status) -> count
        # (route, method) -> a count per bucket of BUCKETS, one for beyond the last, then the sum
        self.durations: dict[tuple[str, str], list[float]] = {}
        self.operations: dict[tuple[str, str, bool], int] = {}  # (idp, operation, success) -> count
        self.injected: dict[tuple[str, str], int] = {}  # (idp, fault kind) -> answers a fault rule made
        # Event delivery attempts: outcome -> count, and their latency from commit to answer
        # (a count per bucket of EVENT_BUCKETS, one for beyond the last, then the sum).
        self.event_attempts: dict[str, int] = {}
        self.event_latency: list[float] = [0] * (len(EVENT_BUCKETS) + 2)
        self.snapshot = Snapshot()
        self.registry.register(_RequestCollector(self))
        self.registry.register(_StoreCollector(self))
        prometheus_client.ProcessCollector(registry=self.registry)
        self.known_idps: set[str] = set()

    async def load_idps(self) -> None:
        """Learn the IdP IDs, so that failed requests to a real IdP are counted under its ID."""
        self.forget_deleted_idps({idp.id for idp in await self.store.list_idps()})

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = METHODS.get(method, "other")
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.durations.get((route, method))
        if histogram is None:
            histogram = self.durations[(route, method)] = [0] * (len(BUCKETS) + 2)
        histogram[bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        histogram[-1] += seconds

    def record_operation(self, record: LogRecord) -> None:
        """A provisioning log listener: one record per SCIM request."""
        idp = record.idp_id
        if idp is None:  # a summary of unrecorded requests that names no IdP
            idp = UNKNOWN_IDP
        elif record.api_key_id is not None:
            self.known_idps.add(idp)
        elif idp not in self.known_idps:
            # The IdP ID in the URL is whatever the client sent: only real ones become labels.
            idp = UNKNOWN_IDP
        operation = record.operation if record.operation in OPERATIONS else "Other"
        key = (idp, operation, record.status < 400)
        self.operations[key] = self.operations.get(key, 0) + 1
        if record.injected is not None:
            fault = (idp, record.injected)
            self.injected[fault] = self.injected.get(fault, 0) + 1

    def observe_event(self, outcome: str, seconds: float) -> None:
        """An event delivery attempt (web/events/delivery.py)."""
        self.event_attempts[outcome] = self.event_attempts.get(outcome, 0) + 1
        if outcome == "delivered":
            self.event_latency[bisect.bisect_left(EVENT_BUCKETS, seconds)] += 1
            self.event_latency[-1] += seconds

    def forget_deleted_idps(self, idp_ids: set[str]) -> None:
        """Make `idp_ids` the IdPs there are, dropping the operation series of any other: an IdP's
        label lives as long as the IdP, so creating and deleting IdPs grows no label set."""
        self.known_idps = idp_ids
        for key in [key for key in self.operations if key[0] != UNKNOWN_IDP and key[0] not in idp_ids]:
            del self.operations[key]
        for fault in [fault for fault in self.injected if fault[0] != UNKNOWN_IDP and fault[0] not in idp_ids]:
            del self.injected[fault]

    async def endpoint(self, request: Request) -> Response:
        if self.token and not self._authorized(request):
            return Response(
                "A metrics bearer token is required (metrics.token)\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="scimlet metrics"'},
                media_type="text/plain",
            )
        self.snapshot = await self._read_store()
        return Response(
            generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())

    async def _read_store(self) -> Snapshot:
        stats = await self.store.stats()
        snapshot = Snapshot(
            database_sizes=stats.sizes, write_queue_depth=stats.write_queue_depth, write_batches=stats.write_batches
        )
        if self.provisioning_log is not None:
            snapshot.log_buffered = len(self.provisioning_log.pending)
            snapshot.log_written = self.provisioning_log.written
            snapshot.log_dropped = self.provisioning_log.dropped
            snapshot.log_lost = self.provisioning_log.lost
        try:
            outbox = await self.store.outbox_stats()
            subscriptions = await self.store.subscriptions()
            snapshot.events = {
                **outbox,
                "subscriptions": len(subscriptions),
                "failed_subscriptions": sum(1 for s in subscriptions if s.state == "failed"),
                "delivered": sum(s.delivered for s in subscriptions),
                "rejected": sum(s.rejected for s in subscriptions),
                "dropped": sum(s.dropped for s in subscriptions),
            }
            idps = await self.store.list_idps()
            counts = await asyncio.gather(*(self.store.counts(idp.id) for idp in idps))
        except Exception:
            log.exception("metrics: could not count users and groups")
            snapshot.database_up = False
            return snapshot
        self.forget_deleted_idps({idp.id for idp in idps})
        snapshot.idps = [(idp.id, idp.name, c["users"], c["groups"]) for idp, c in zip(idps, counts, strict=True)]
        return snapshot


class _RequestCollector(Collector):
    """Requests, their durations and SCIM operations, from Metrics' counters."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "scimlet_http_requests",
            "HTTP requests answered, by route template, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in self.metrics.requests.items():
            requests.add_metric([route, method, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "scimlet_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            labels=["route", "method"],
        )
        bounds = [*map(floatToGoString, BUCKETS), "+Inf"]
        for (route, method), histogram in self.metrics.durations.items():
            cumulative = list(itertools.accumulate(histogram[:-1]))
            durations.add_metric([route, method], list(zip(bounds, cumulative, strict=True)), sum_value=histogram[-1])
        yield durations
        operations = CounterMetricFamily(
            "scimlet_scim_operations",
            "SCIM operations by IdP, operation (as in the provisioning log) and outcome (success: status below 400)",
            labels=["idp", "operation", "outcome"],
        )
        for (idp, operation, success), count in self.metrics.operations.items():
            operations.add_metric([idp, operation, "success" if success else "failure"], count)
        yield operations
        injected = CounterMetricFamily(
            "scimlet_faults_injected",
            "SCIM answers a fault injection rule made instead of (for delay: before) the real one, by IdP and kind",
            labels=["idp", "kind"],
        )
        for (idp, kind), count in self.metrics.injected.items():
            injected.add_metric([idp, kind], count)
        yield injected


class _StoreCollector(Collector):
    """The scrape-time gauges, from the snapshot the endpoint has just read."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snap = self.metrics.snapshot
        info = GaugeMetricFamily(
            "scimlet_idp_info", "IdP configurations (value 1), with their names", labels=["idp", "name"]
        )
        users = GaugeMetricFamily("scimlet_users", "Users stored, per IdP", labels=["idp"])
        groups = GaugeMetricFamily("scimlet_groups", "Groups stored, per IdP", labels=["idp"])
        for idp_id, name, user_count, group_count in snap.idps:
            info.add_metric([idp_id, name], 1)
            users.add_metric([idp_id], user_count)
            groups.add_metric([idp_id], group_count)
        yield from (info, users, groups)
        yield GaugeMetricFamily(
            "scimlet_database_up",
            "1 when the database answered the scrape's count queries",
            value=int(snap.database_up),
        )
        size = GaugeMetricFamily(
            "scimlet_database_size_bytes",
            "Size of the database's files on disk (SQLite: the file and its WAL)",
            labels=["file"],
        )
        for label, bytes_on_disk in snap.database_sizes.items():
            size.add_metric([label], bytes_on_disk)
        yield size
        yield GaugeMetricFamily(
            "scimlet_write_queue_depth", "Writes waiting for the database writer", value=snap.write_queue_depth
        )
        yield CounterMetricFamily(
            "scimlet_write_batches", "Write transactions committed (group commits)", value=snap.write_batches
        )
        yield GaugeMetricFamily(
            "scimlet_provisioning_log_buffered_records",
            "Provisioning log records waiting to be written",
            value=snap.log_buffered,
        )
        yield CounterMetricFamily(
            "scimlet_provisioning_log_written_records", "Provisioning log records written", value=snap.log_written
        )
        yield CounterMetricFamily(
            "scimlet_provisioning_log_dropped_records",
            "Records of unauthenticated requests not written, past provisioning_log.unauthenticated_*",
            value=snap.log_dropped,
        )
        events = snap.events
        yield CounterMetricFamily(
            "scimlet_events_created", "SCIM events written to the outbox (RFC 9967)", value=events.get("newest", 0)
        )
        yield GaugeMetricFamily("scimlet_events_outbox", "Events in the outbox", value=events.get("events", 0))
        yield GaugeMetricFamily(
            "scimlet_events_outbox_depth",
            "Events not yet delivered, summed over the subscriptions",
            value=events.get("pending", 0),
        )
        yield CounterMetricFamily(
            "scimlet_events_delivered", "Events delivered or acknowledged", value=events.get("delivered", 0)
        )
        yield CounterMetricFamily(
            "scimlet_events_failed",
            "Events a receiver refused (RFC 8935 400, RFC 8936 setErrs)",
            value=events.get("rejected", 0),
        )
        yield CounterMetricFamily(
            "scimlet_events_dropped",
            "Events the outbox's bounds removed before their subscription was done with them",
            value=events.get("dropped", 0),
        )
        yield GaugeMetricFamily(
            "scimlet_event_subscriptions_failed",
            "Subscriptions whose retries ran out (they wait for an admin to redeliver)",
            value=events.get("failed_subscriptions", 0),
        )
        attempts = CounterMetricFamily(
            "scimlet_event_delivery_attempts", "Pushed SETs, by outcome, in this process", labels=["outcome"]
        )
        for outcome, count in sorted(self.metrics.event_attempts.items()):
            attempts.add_metric([outcome], count)
        yield attempts
        latency = self.metrics.event_latency
        buckets = [(str(bound), sum(latency[: k + 1])) for k, bound in enumerate(EVENT_BUCKETS)]
        buckets.append(("+Inf", sum(latency[:-1])))
        yield HistogramMetricFamily(
            "scimlet_event_delivery_latency_seconds",
            "From an event's commit to its receiver's 2xx, pushed by this process",
            buckets=buckets,
            sum_value=latency[-1],
        )
        yield CounterMetricFamily(
            "scimlet_provisioning_log_lost_records",
            "Provisioning log records not kept: the buffer was full while the database refused writes",
            value=snap.log_lost,
        )
