"""The webhook receiver as an ASGI app: ``create_app(settings)``.

    POST /api/webhooks/clerk   raw bytes -> svix verify -> parse -> one durable write -> 2xx
    GET  /healthz              200 when the database answers, 503 otherwise
    GET  /livez, /readyz       the process answers; a delivery can be taken now (or why not)
    GET  /metrics              Prometheus' text format (``clerksync.receiver.metrics``)

Answers: 2xx for applied, duplicate, stale and ignored deliveries; 400 when the signature
or the payload is wrong (a retry cannot fix it); 413 over 1 MiB; 503, fast, when the
database cannot take the write, so Svix retries later. The Clerk write-back never runs
inline: it is marked in the same write and done by background workers
(``clerksync.writeback``), well clear of Svix's 15-second budget.

Hostile traffic is bounded before it costs anything: the HTTP layer's limits
(``clerksync.receiver.http``: header size and deadline, connections, keep-alive; ``serve``
runs them), the request's (``clerksync.receiver.guards``: ``svix-id``, signature header,
body size, time and memory), sampled unauthenticated rejections, and the database's
(``clerksync.receiver.health``: ``DB_TIMEOUT`` per delivery; while it is away one
delivery probes and the others wait for its answer).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from clerksync.clerk.gateway import ClerkGateway, default_rate
from clerksync.clerk.webhooks import SignatureError, svix_webhooks, verify
from clerksync.deliverylog.writer import DeliveryLog
from clerksync.errors import ClerkSyncError, IndexRefused, InvalidEvent, StoreUnavailable
from clerksync.mapping.events import parse_event
from clerksync.receiver.answers import Send, answer_bytes, asgi_headers, conclude
from clerksync.receiver.guards import (
    BodyReader,
    Receive,
    Refused,
    shown_id,
    signature_headers_problem,
)
from clerksync.receiver.health import DatabaseAway, DatabaseWatch, unreachable
from clerksync.receiver.hop import Hop
from clerksync.receiver.indexes import IndexMaker
from clerksync.receiver.instance import InstanceCheck
from clerksync.receiver.metrics import ReceiverMetrics
from clerksync.settings import Settings
from clerksync.store.apply import apply_event, ignores
from clerksync.store.connect import connect
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from clerksync.store.users import writer
from clerksync.writeback.queue import queue_of
from clerksync.writeback.workers import WriteBackWorkers
from clerksync.writeback.writeback import Limits

log = logging.getLogger("clerksync.server")


# Seconds a delivery may wait for the database, selection included: an outage answers 503
# fast (and, once known, at once), while a loaded database's slow write is not a spurious
# 503 (1 s was: 24 concurrent signups on a busy two-core machine took 1.0-1.5 s).
DB_TIMEOUT = 2.0

# Threads that run deliveries' database writes (anyio's default limit, which they had).
DELIVERY_THREADS = 40


class Receiver:
    """The receiver's parts: store, delivery log, write-back workers, and its metrics (a
    registry of its own; ``metrics=False``: none recorded, no ``/metrics``). Start/stop are
    idempotent."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        gateway: ClerkGateway | None = None,
        writeback_threads: int = 4,
        writeback_base_delay: float = 1.0,
        writeback_poll: float = 5.0,
        writeback_limits: Limits | None = None,
        db_timeout: float = DB_TIMEOUT,
        log: DeliveryLog | None = None,
        metrics: bool = True,
    ) -> None:
        if not settings.webhook_secret:
            from clerksync.errors import ConfigError

            raise ConfigError("WEBHOOK_SECRET is not set: the receiver cannot verify deliveries")
        if store is None and settings.uses_embedded_store:
            from clerksync.errors import ConfigError

            # Mounted in an app, the embedded store would be a private database nobody
            # looks at: users would "sync" into it silently. Only `clerksync serve` uses it.
            raise ConfigError(
                "MONGODB_URL is not set: a mounted receiver needs your app's database "
                "(the embedded store is for `clerksync serve` demos only)"
            )
        self.settings = settings
        self.secret = settings.webhook_secret
        self.db_timeout = db_timeout
        self.payload_ttl = timedelta(days=settings.payload_ttl_days)
        self.bodies = BodyReader()
        self._given = (store, gateway, log)
        self._workers_options: dict[str, Any] = {
            "threads": writeback_threads,
            "rate": default_rate(settings.clerk_secret_key),
            "base_delay": writeback_base_delay,
            "poll": writeback_poll,
            "limits": writeback_limits,
        }
        self._started = False
        self._lock = threading.Lock()
        self.instance = InstanceCheck(lambda: self.store, db_timeout)
        # Until the Clerk-id uniqueness is enforced every delivery is a 503 (a retry later),
        # never a 2xx that could have made a duplicate user.
        self.indexes = IndexMaker()
        self.indexes_ready = self.indexes.ready
        self.metrics = ReceiverMetrics(backlog=self._backlog) if metrics else None

    def start(self) -> None:
        """Connect and start the background parts: the index maker, the log's writer, the
        write-back workers. Building the app opens nothing; every delivery calls this, and
        a mounted receiver's parts start with the app's lifespan (``mount``) or its first
        request."""
        if self._started:  # every delivery calls this; skip the lock once running
            return
        with self._lock:
            if self._started:
                return
            self._build()
            self._started = True
        svix_webhooks()  # loaded now, not inside the first delivery

        # Off the event loop, and again until it works: a database that is away, or a
        # Clerk-id index that cannot be built yet (duplicates), must not stall requests.
        self.indexes.start(self.store)
        self.log.start()
        if self.workers is not None:
            self.workers.start()

    def _build(self) -> None:
        store, gateway, log = self._given
        settings = self.settings
        self.store = store or connect(settings)
        self.writer = writer(self.store)
        metrics = self.metrics
        if gateway is None and settings.clerk_secret_key:
            gateway = ClerkGateway(
                settings.clerk_secret_key,
                api_url=settings.clerk_api_url,
                on_request=metrics.clerk_request if metrics else None,
            )
        self.gateway = gateway
        self.log = log or DeliveryLog(
            self.store,
            on_write_error=(lambda cause: metrics.database_error("delivery_log", cause))
            if metrics
            else None,
        )
        self.database = DatabaseWatch(self.store)
        self.hop = Hop(DELIVERY_THREADS, name="clerksync-delivery")
        self.workers = (
            WriteBackWorkers(
                self.store,
                gateway,
                on_result=metrics.writeback if metrics else None,
                **self._workers_options,
            )
            if gateway is not None
            else None
        )

    def _backlog(self) -> tuple[int, float | None]:
        """The write-back backlog for ``/metrics``, within a second (it waits for no start)."""
        import pymongo

        if not self._started:
            raise StoreUnavailable("the receiver has not started")
        with pymongo.timeout(1.0):
            return queue_of(self.store).backlog()

    def stop(self) -> None:
        """Stop every thread and close what ``start`` opened (the store, the Clerk client,
        the health pool), so an app that builds and stops receivers in turn (a test suite)
        leaves nothing behind. Given parts are the giver's to close."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        if self.workers is not None:
            self.workers.stop()
        self.log.stop()
        self.indexes.stop()
        self.hop.close()
        self.database.close()
        store, gateway, _ = self._given
        if gateway is None and self.gateway is not None:
            self.gateway.close()
        if store is None:
            self.store.close()

    # -- handlers ------------------------------------------------------------------------------

    @property
    def index_problem(self) -> str:
        return self.indexes.problem

    async def healthz(self, request: Request) -> JSONResponse:
        self.start()
        return await self.database.healthz(request)

    async def readyz(self, request: Request) -> JSONResponse:
        self.start()
        return await self.database.readyz(
            self.indexes_ready.is_set(), self.indexes.problem, self.indexes.warnings
        )

    async def metrics_page(self, request: Request) -> Response:
        self.start()
        assert self.metrics is not None  # the route exists only with metrics on
        body, content_type = self.metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    async def webhook(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        """``POST /api/webhooks/clerk`` as plain ASGI: a delivery is the hot path, so it
        skips the framework's request, response and middleware objects (``create_app``
        routes it before them). An error not identified is a 500 (Svix retries), logged."""
        self.start()
        headers = asgi_headers(scope)
        try:
            status, answer = await self._deliver(headers, receive)
        except Exception:
            log.exception("delivery %s failed", shown_id(headers.get("svix-id")))
            status, answer = 500, answer_bytes("failed", "internal error")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _deliver(self, headers: Mapping[str, str], receive: Receive) -> tuple[int, bytes]:
        started = time.perf_counter()
        received = utcnow()
        raw_id = headers.get("svix-id")
        svix_id = shown_id(raw_id)

        # the delivery's answer, record, log line and metrics
        finish = functools.partial(conclude, self, headers, started, received, svix_id)

        def reject(status: int, error: str, reason: str) -> tuple[int, bytes]:
            return finish(status, "rejected", error=error, verified=False, reason=reason)

        if raw_id is not None and svix_id != raw_id:
            return reject(
                400, "svix-id: not a message id (up to 128 of A-Z a-z 0-9 _ . : -)", "svix_id"
            )
        # What can be refused from the headers alone is, before a byte of the body is read.
        problem = signature_headers_problem(headers)
        if problem:
            return reject(400, f"signature: {problem}", "signature")
        try:
            body = await self.bodies.read(headers, receive)
        except Refused as refused:
            return reject(refused.status, refused.error, refused.reason)
        try:
            verify(self.secret, body, headers)
        except SignatureError as exc:
            return reject(400, f"signature: {exc}", "signature")
        try:
            event = parse_event(body, self.store.schema)
        except InvalidEvent as exc:
            return finish(
                400, "rejected", error=f"payload: {exc}", verified_body=body, reason="payload"
            )
        if ignores(self.store, event):
            # Nothing of it is kept: answered without a thread or the database, even while
            # the database is away (a 503 would have Svix retry every session event, and one
            # answered without the database is no probe of it).
            return await self._ended(event, body, "ignored", finish)
        if not self.indexes_ready.is_set():
            # Starting up (mounted apps start on their first request), or the database was
            # away: the index maker tries now, and the delivery waits a little for it.
            self.indexes.retry_now()
            await self.hop.run(self.indexes_ready.wait, 2.0)
            if not self.indexes_ready.is_set():
                log.error("delivery %s refused: %s", svix_id, self.index_problem)
                return finish(
                    503,
                    "failed",
                    event_type=event.type,
                    user_id=event.user_id,
                    error=f"Clerk-id uniqueness not enforced: {self.index_problem}",
                    verified_body=body,
                )
        try:
            # While the database is away, one delivery at a time finds out whether it is
            # back (and wakes the driver's monitor); the rest wait for its answer. The hop to
            # a thread is ``Hop``'s: a queue entry, and a wake-up shared with other answers.
            outcome, wants = await self.database.through(
                lambda probe: self.hop.run(self._apply, event, probe)
            )
        except ClerkSyncError as exc:  # the store says what failed: an index, the database
            if isinstance(exc, IndexRefused):
                log.error("delivery %s refused by index %s: %s", svix_id, exc.index, exc)
                error = f"index {exc.index}: {exc}"
            else:
                error = f"database: {exc}"
            self.database.failed(exc)
            if self.metrics is not None:
                cause = (
                    "index"
                    if isinstance(exc, IndexRefused)
                    else ("unavailable" if unreachable(exc) else "refused")
                )
                self.metrics.database_error("delivery", cause)
            return finish(
                503,
                "failed",
                event_type=event.type,
                user_id=event.user_id,
                object_id=event.object_id,
                error=error,
                verified_body=body,
            )
        self.database.answered()
        # The instance is learnt before the hand-off: a 404 is believed only once the
        # database is bound to the key's instance (``writeback.InstanceGuard``).
        ended = await self._ended(event, body, outcome, finish)
        if wants and self.workers is not None and event.user_id is not None:
            # The hand-off: the workers claim this user by key, no database polling.
            self.workers.submit(self.store.clerk_key(event.user_id))
        return ended

    async def _ended(
        self, event: Any, body: bytes, outcome: str, finish: Callable[..., tuple[int, bytes]]
    ) -> tuple[int, bytes]:
        """A delivery's 200: the instance it came from learnt (once), then its answer."""
        if self.instance.due(event.instance_id):
            await self.hop.run(self.instance.learn, event.instance_id)
        return finish(
            200,
            outcome,
            event_type=event.type,
            user_id=event.user_id,
            object_id=event.object_id,
            verified_body=body,
            notes=event.notes,
        )

    def _apply(self, event: Any, probe: bool) -> tuple[str, bool]:
        """``apply_event`` within ``db_timeout`` (server selection included): an outage is a
        503 in seconds, not after the driver's 30 s. A delivery that waited for a thread
        while the database was found away is answered at once (unless it is the probe)."""
        import pymongo

        if not probe and self.database.away():
            raise DatabaseAway("the database is unavailable (another delivery probes)")
        with pymongo.timeout(self.db_timeout):
            return apply_event(self.writer, event)
