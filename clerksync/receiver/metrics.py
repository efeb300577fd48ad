"""Every metric the receiver exposes on ``/metrics``, defined here and nowhere else.

Each receiver has a ``CollectorRegistry`` of its own, never prometheus-client's global one:
mounted in an app that has its own metrics (or two receivers in one test process) nothing
clashes, and the app's ``/metrics`` stays the app's. Each process exposes its own figures
(counters start at zero with the process; Prometheus sums them across processes); the
write-back backlog is the database's, the same on every process (take its ``max``).

Labels are bounded words, never an id or an email: ``type`` is the event type (a signed
payload's, at most ``MAX_TYPES`` distinct, then ``(other)``), ``outcome`` the delivery log's,
``reason``/``result``/``cause``/``operation`` short fixed words, ``route`` a path template
(``PATCH /users/{id}/metadata``). Recording costs a dict lookup and a lock per figure: label
children are cached, so the hot path never parses labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from clerksync.errors import ClerkSyncError

log = logging.getLogger("clerksync.metrics")

#: distinct event types labelled one by one; past it, ``(other)`` (Clerk sends 45)
MAX_TYPES = 100
#: a delivery that never parsed (rejected before or at the payload): ``events stats``' word
UNPARSED = "(unparsed)"
#: seconds between two reads of the write-back backlog (scrapers in a hurry read it once)
BACKLOG_EVERY = 1.0

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: why a request was refused before it became a delivery (``rejected_requests_total``)
REASONS = ("svix_id", "signature", "payload", "too_large", "timeout", "busy", "bad_request")


class ReceiverMetrics:
    """The receiver's figures in a registry of its own; ``exposition()`` is ``/metrics``.

    ``backlog`` reads the write-back backlog (users due, oldest due age in seconds) when
    scraped, at most every ``BACKLOG_EVERY`` seconds; it is the scrape's cost, not a
    delivery's."""

    def __init__(self, backlog: Callable[[], tuple[int, float | None]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "clerksync_deliveries",
            "Deliveries answered, by event type and the delivery log's outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "clerksync_delivery_duration_seconds",
            "Time from a delivery's arrival to its answer.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "clerksync_event_lag_seconds",
            "Answer time minus the delivery's svix-timestamp (verified deliveries; a clock "
            "ahead of ours counts as 0).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "clerksync_rejected_requests",
            "Requests refused before they became a delivery, by reason.",
            ["reason"],
            registry=r,
        )
        self.writebacks = Counter(
            "clerksync_writebacks",
            "Metadata write-backs the workers ran, by result.",
            ["result"],
            registry=r,
        )
        self.clerk = Counter(
            "clerksync_clerk_requests",
            "Clerk Backend API requests, by route template and HTTP status (error: no answer).",
            ["route", "status"],
            registry=r,
        )
        self.database_errors = Counter(
            "clerksync_database_errors",
            "Database operations that failed, by operation and cause.",
            ["operation", "cause"],
            registry=r,
        )
        if backlog is not None:
            r.register(_BacklogCollector(backlog))
        self._children: dict[tuple[str, str], Any] = {}
        self._types: set[str] = set()
        self._lock = threading.Lock()
        for reason in REASONS:  # present at 0 from the start: rate() needs a first sample
            self.rejected.labels(reason)

    # -- recording (the hot path: cached children, no label parsing) ---------------------------

    def delivery(
        self, event_type: str | None, outcome: str, seconds: float, signed_at: float | None
    ) -> None:
        """One answered delivery; ``signed_at`` is its svix-timestamp once verified."""
        key = (event_type or UNPARSED, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._child(key)
        child.inc()
        self.duration.observe(seconds)
        if signed_at is not None:
            self.lag.observe(max(0.0, time.time() - signed_at))

    def _child(self, key: tuple[str, str]) -> Any:
        event_type, outcome = key
        with self._lock:
            if event_type not in self._types and event_type != UNPARSED:
                if len(self._types) >= MAX_TYPES:
                    event_type = "(other)"
                else:
                    self._types.add(event_type)
            child = self.deliveries.labels(event_type, outcome)
            self._children[key] = child
        return child

    def rejection(self, reason: str) -> None:
        self.rejected.labels(reason if reason in REASONS else "bad_request").inc()

    def writeback(self, result: str) -> None:
        self.writebacks.labels(result).inc()

    def clerk_request(self, route: str, status: int | None) -> None:
        """``ClerkGateway``'s observer: one request and Clerk's status (None: no answer)."""
        self.clerk.labels(route, "error" if status is None else str(status)).inc()

    def database_error(self, operation: str, cause: str) -> None:
        self.database_errors.labels(operation, cause).inc()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and its content type, in the format the scraper's ``Accept`` asks for
        (prometheus-client's own negotiation and writers: Prometheus' text format, or
        OpenMetrics)."""
        encode, content_type = choose_encoder(accept)  # type: ignore[arg-type]
        return encode(self.registry), content_type


class _BacklogCollector(Collector):
    """The write-back backlog, read from the database when scraped (cached a few seconds;
    absent while the database does not answer)."""

    def __init__(self, read: Callable[[], tuple[int, float | None]]) -> None:
        self.read = read
        self._at = 0.0
        self._value: tuple[int, float | None] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # no read at registration: the figures come with each scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= BACKLOG_EVERY:
                try:
                    self._value = self.read()
                except ClerkSyncError as exc:  # the database away: no figure, not a stale one
                    log.debug("write-back backlog not read: %s", exc.__class__.__name__)
                    self._value = None
                self._at = time.monotonic()
            value = self._value
        if value is None:
            return
        due, oldest = value
        yield GaugeMetricFamily(
            "clerksync_writeback_backlog",
            "Users whose Clerk metadata write-back is due or waiting (the database's figure, "
            "the same on every process).",
            value=due,
        )
        yield GaugeMetricFamily(
            "clerksync_writeback_oldest_due_age_seconds",
            "How long the oldest due write-back has been due (0: none is due).",
            value=oldest or 0.0,
        )
