"""The webhook receiver as an ASGI app: ``create_app(settings)``; ``run()`` serves it.

    POST /api/webhooks/clerk   raw bytes -> svix verify -> parse -> one durable write -> 2xx
    GET  /healthz              200 when the database answers, 503 otherwise

Answers: 2xx for applied, duplicate, stale and ignored deliveries; 400 when
the signature or the payload is wrong (a retry cannot fix it); 413 over 1 MiB;
503, fast, when the database cannot take the write, so Svix retries later.
The Clerk write-back never runs inline: it is queued in the same write and
done by background workers (``clerksync.writeback``), well clear of Svix's
15-second budget.

Mounted inside a FastAPI/Starlette app, the background threads start with the
first request (a mounted app's lifespan does not run).

Hostile traffic is bounded before it costs anything (``serve`` runs it all;
a mounted app gets the request-level ones):
- the HTTP layer (``clerksync.httpserver``): request line and headers at
  most ``MAX_HEADER_BYTES`` (431), and within ``HEADER_TIMEOUT`` of the
  connection or the previous response (a silent or dribbling socket is
  closed); ``LIMIT_CONCURRENCY`` connections and requests (uvicorn's own 503
  past it), idle keep-alive ``KEEP_ALIVE`` seconds;
- the request: ``svix-id`` a plain message id of at most 128 characters,
  ``svix-signature`` at most 4 KiB, the body within ``BODY_TIMEOUT`` (408) and
  under ``BODY_BYTES_IN_FLIGHT`` for all requests together (503: Svix retries);
- unauthenticated rejections are sampled into the log (``RejectionSampler``);
- the database gets ``DB_TIMEOUT`` per delivery, and once it is known to be
  away (the driver says so, or deliveries in a row could not reach it), one
  delivery at a time waits to see whether it is back while the others answer
  503 at once; ``/healthz`` has a thread of its own, never
  queued behind deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clerksync.clerk.gateway import ClerkGateway, default_rate
from clerksync.clerk.webhooks import MAX_BODY, SignatureError, verify
from clerksync.deliverylog.writer import DeliveryLog, record
from clerksync.errors import ClerkSyncError, IndexRefused, InvalidEvent, StoreUnavailable
from clerksync.mapping.events import parse_event
from clerksync.settings import WEBHOOK_PATH, Settings
from clerksync.store.apply import apply_event
from clerksync.store.instance import is_real_instance
from clerksync.store.mongo import database_unreachable, utcnow
from clerksync.store.users import UserStore, connect
from clerksync.writeback.workers import WriteBackWorkers
from clerksync.writeback.writeback import Limits

log = logging.getLogger("clerksync.server")


BODY_TIMEOUT = 10.0  # seconds for the body, once the headers are in


BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # large bodies being read, all requests together


SMALL_BODY = 64 * 1024  # bodies up to this size are outside that budget


TIMESTAMP_TOLERANCE = 5 * 60  # svix's own: a signature older or newer than this is refused


# Seconds a delivery may wait for the database, selection included: an outage answers 503
# fast (and, once known, at once), while a loaded database's slow write is not a spurious
# 503 (1 s was: 24 concurrent signups on a busy two-core machine took 1.0-1.5 s).
DB_TIMEOUT = 2.0


AWAY_AFTER = 3  # timeouts in a row, with no success between, that mean "away"


HEALTH_TIMEOUT = 0.6  # seconds /healthz waits for the database


MAX_SIGNATURE_HEADER = 4096  # a few v1,<base64> signatures (key rotation) fit many times


SVIX_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]")


def unreachable(exc: BaseException) -> bool:
    """Was the database unreachable or too slow (not refusing a write)?"""
    return isinstance(exc, DatabaseAway) or database_unreachable(exc)


def signature_headers_problem(headers: Any) -> str | None:
    """Why the svix headers alone fail verification, or None: missing, a timestamp outside
    svix's 5 minutes, a signature header too long or without a ``v1,`` signature. The
    same answers ``verify`` gives, but without reading (up to 1 MiB of) body first."""
    wanted = {k: headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    if not all(wanted.values()):
        return "missing header(s): " + ", ".join(k for k, v in wanted.items() if not v)
    signature = wanted["svix-signature"]
    if len(signature) > MAX_SIGNATURE_HEADER:
        return "svix-signature header over 4 KiB"
    if "v1," not in signature:
        return "no v1 signature in svix-signature"
    stamp = wanted["svix-timestamp"]
    if not stamp.isdigit() or len(stamp) > 12:
        return "invalid svix-timestamp"
    if abs(time.time() - int(stamp)) > TIMESTAMP_TOLERANCE:
        return "message timestamp too old or too new"
    return None


def shown_id(raw: str | None) -> str | None:
    """A sender-controlled ``svix-id`` as it may appear in logs and records: short, plain."""
    if raw is None or SVIX_ID.fullmatch(raw):
        return raw
    cut = UNSAFE_ID_CHARS.sub("?", raw[:40])
    return cut + "…" if len(raw) > 40 else cut


class Receiver:
    """The receiver's parts: store, delivery log, write-back workers. Start/stop are idempotent."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: UserStore | None = None,
        gateway: ClerkGateway | None = None,
        writeback_threads: int = 4,
        writeback_base_delay: float = 1.0,
        writeback_poll: float = 5.0,
        writeback_limits: Limits | None = None,
        db_timeout: float = DB_TIMEOUT,
        log: DeliveryLog | None = None,
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
        self.store = store or connect(settings)
        if gateway is None and settings.clerk_secret_key:
            gateway = ClerkGateway(settings.clerk_secret_key, api_url=settings.clerk_api_url)
        self.gateway = gateway
        self.log = log or DeliveryLog(self.store)
        self.db_timeout = db_timeout
        self._body_bytes = 0  # bodies being read now (one event loop: no lock)
        self._health: Future[float | None] | None = None
        self._health_pool = ThreadPoolExecutor(1, thread_name_prefix="clerksync-health")
        self._instance_checked = False
        self._probing = False  # one delivery is finding out whether the database is back
        self._db_failures = 0  # deliveries in a row that could not reach the database in time
        self.workers = (
            WriteBackWorkers(
                self.store,
                gateway,
                threads=writeback_threads,
                rate=default_rate(settings.clerk_secret_key),
                base_delay=writeback_base_delay,
                poll=writeback_poll,
                limits=writeback_limits,
            )
            if gateway is not None
            else None
        )
        self.payload_ttl = timedelta(days=settings.payload_ttl_days)
        self._started = False
        self._lock = threading.Lock()
        # Set once clerksync's Clerk-id uniqueness is enforced; until then every delivery is
        # a 503 (a retry later), never a 2xx that could have made a duplicate user.
        self.indexes_ready = threading.Event()
        self.index_problem = "the indexes are being made"
        self._stopping = threading.Event()
        self._indexer: threading.Thread | None = None

    def start(self) -> None:
        if self._started:  # every delivery calls this; skip the lock once running
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        import svix.webhooks  # noqa: F401  (import now, not inside the first delivery)

        # Off the event loop, and again until it works: a database that is away, or a
        # Clerk-id index that cannot be built yet (duplicates), must not stall requests.
        self._stopping.clear()
        self._indexer = threading.Thread(
            target=self._make_indexes, name="clerksync-indexes", daemon=True
        )
        self._indexer.start()
        self.log.start()
        if self.workers is not None:
            self.workers.start()

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        self._stopping.set()
        if self.workers is not None:
            self.workers.stop()
        self.log.stop()

    def _make_indexes(self, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        """Make clerksync's indexes; retry until the Clerk-id uniqueness is enforced, saying
        loudly why deliveries are refused meanwhile."""
        delay = first_delay
        while not self._stopping.is_set():
            try:
                report = self.store.ensure_indexes()
            except ClerkSyncError as exc:
                problem = f"database: {exc}"
            else:
                for failure in report.failures:
                    log.error(
                        "index %s on %s could not be made: %s",
                        failure.name,
                        failure.collection,
                        failure.error,
                    )
                if report.clerk_id_enforced:
                    self.indexes_ready.set()
                    return
                where = f"{self.store.users.name}.{self.store.clerk_id}"
                reasons = "; ".join(f.error or "" for f in report.failures) or "unknown"
                problem = f"no unique index on {where} ({reasons})"
            self.index_problem = problem
            log.error(
                "deliveries are answered 503 until the Clerk-id uniqueness is enforced: %s; "
                "retrying in %.0f s (`clerksync doctor` says more)",
                problem,
                delay,
            )
            self._stopping.wait(delay)
            delay = min(delay * 2, max_delay)

    # -- handlers ------------------------------------------------------------------------------

    async def webhook(self, request: Request) -> JSONResponse:
        self.start()
        started = time.perf_counter()
        received = utcnow()
        raw_id = request.headers.get("svix-id")
        svix_id = shown_id(raw_id)

        def finish(
            status: int,
            outcome: str,
            *,
            event_type: str | None = None,
            user_id: str | None = None,
            error: str | None = None,
            verified_body: bytes | None = None,
            verified: bool = True,
            object_id: str | None = None,
        ) -> JSONResponse:
            duration = (time.perf_counter() - started) * 1000
            # Unauthenticated rejections are sampled: anyone can send them by the thousand.
            if verified or self.log.admit_rejection(error):
                self.log.add(
                    record(
                        svix_id=svix_id,
                        event_type=event_type,
                        user_id=user_id,
                        object_id=object_id,
                        outcome=outcome,
                        received_at=received,
                        duration_ms=duration,
                        error=error,
                        body=verified_body,
                        payload_ttl=self.payload_ttl,
                    )
                )
                log.info(
                    "delivery id=%s type=%s object=%s user=%s outcome=%s status=%d ms=%.1f%s",
                    svix_id,
                    event_type,
                    object_id,
                    user_id,
                    outcome,
                    status,
                    duration,
                    f" error={error!r}" if error else "",
                    extra={
                        "delivery": {
                            "id": svix_id,
                            "type": event_type,
                            "objectId": object_id,
                            "userId": user_id,
                            "outcome": outcome,
                            "status": status,
                            "durationMs": round(duration, 2),
                            "error": error,
                        }
                    },
                )
            body: dict[str, Any] = {"outcome": outcome}
            if error:
                body["error"] = error
            return JSONResponse(body, status_code=status)

        def reject(status: int, error: str) -> JSONResponse:
            return finish(status, "rejected", error=error, verified=False)

        if raw_id is not None and svix_id != raw_id:
            return reject(400, "svix-id: not a message id (up to 128 of A-Z a-z 0-9 _ . : -)")
        # What can be refused from the headers alone is, before a byte of the body is read.
        problem = signature_headers_problem(request.headers)
        if problem:
            return reject(400, f"signature: {problem}")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit() or len(declared) > 12:
                return reject(400, "bad content-length")
            if int(declared) > MAX_BODY:
                return reject(413, "body over 1 MiB")
        # Memory for large bodies is shared: past the budget, answer at once (Svix
        # retries). A Clerk event is a few KiB: bodies up to SMALL_BODY never wait on it.
        reserved = int(declared) if declared is not None else 0
        if reserved <= SMALL_BODY:
            reserved = 0
        elif self._body_bytes + reserved > BODY_BYTES_IN_FLIGHT:
            return reject(503, "busy: too many large request bodies in flight")
        self._body_bytes += reserved
        try:
            body = await self._read_body(request, reserved)
        except _BodyTooLarge:
            return reject(413, "body over 1 MiB")
        except _Busy:
            return reject(503, "busy: too many request bodies in flight")
        except TimeoutError:
            return reject(408, f"body not received within {BODY_TIMEOUT:.0f} s")
        except ClientDisconnect:
            return reject(400, "client disconnected before the body was complete")
        finally:
            self._body_bytes -= reserved
        try:
            verify(self.secret, body, request.headers)
        except SignatureError as exc:
            return reject(400, f"signature: {exc}")
        try:
            event = parse_event(body, self.store.schema)
        except InvalidEvent as exc:
            return finish(400, "rejected", error=f"payload: {exc}", verified_body=body)
        if not self.indexes_ready.is_set():
            # Starting up (mounted apps start on their first request): wait a little.
            await run_in_threadpool(self.indexes_ready.wait, 2.0)
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
            if self._database_away():
                # One delivery at a time finds out whether it is back (and wakes the
                # driver's monitor); the rest are answered at once instead of queueing for
                # threads and timing out in turn.
                if self._probing:
                    raise DatabaseAway("the database is unavailable (another delivery probes)")
                self._probing = True
                try:
                    outcome, wants = await run_in_threadpool(self._apply, event, True)
                finally:
                    self._probing = False
            else:
                outcome, wants = await run_in_threadpool(self._apply, event, False)
        except ClerkSyncError as exc:  # the store says what failed: an index, the database
            if isinstance(exc, IndexRefused):
                log.error("delivery %s refused by index %s: %s", svix_id, exc.index, exc)
                error = f"index {exc.index}: {exc}"
            else:
                error = f"database: {exc}"
            if unreachable(exc):
                self._db_failures += 1  # unreachable or too slow, not a refused write
            return finish(
                503,
                "failed",
                event_type=event.type,
                user_id=event.user_id,
                object_id=event.object_id,
                error=error,
                verified_body=body,
            )
        self._db_failures = 0
        if wants and self.workers is not None and event.user_id is not None:
            # The hand-off: the workers claim this user by key, no database polling.
            self.workers.submit(self.store.clerk_key(event.user_id))
        if not self._instance_checked and event.instance_id and is_real_instance(event.instance_id):
            self._instance_checked = True
            await run_in_threadpool(self._learn_instance, event.instance_id)
        return finish(
            200,
            outcome,
            event_type=event.type,
            user_id=event.user_id,
            object_id=event.object_id,
            verified_body=body,
        )

    async def _read_body(self, request: Request, reserved: int) -> bytes:
        """The body, within ``BODY_TIMEOUT`` and ``MAX_BODY``; bytes past ``reserved`` (no
        content-length, or a lying one) are taken from the in-flight budget as they come."""
        import anyio

        body = bytearray()
        extra = 0
        try:
            with anyio.fail_after(BODY_TIMEOUT):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise _BodyTooLarge
                    if len(body) > max(reserved, SMALL_BODY) + extra:
                        grow = len(body) - max(reserved, SMALL_BODY) - extra
                        if self._body_bytes + grow > BODY_BYTES_IN_FLIGHT:
                            raise _Busy
                        self._body_bytes += grow
                        extra += grow
        finally:
            self._body_bytes -= extra
        return bytes(body)

    def _database_away(self) -> bool:
        """The driver knows no server it can write to, or the last ``AWAY_AFTER`` deliveries
        could not reach the database in time (a paused server looks healthy to the driver
        for seconds; one slow write on a loaded machine is not an outage)."""
        return self._db_failures >= AWAY_AFTER or not self._writable()

    def _writable(self) -> bool:
        """Does the driver know a server it can write to? (No I/O: its current view.)"""
        try:
            return bool(self.store.client.topology_description.has_writable_server())
        except Exception:  # pragma: no cover (a client without a topology view)
            return True

    def _apply(self, event: Any, probe: bool) -> tuple[str, bool]:
        """``apply_event`` within ``db_timeout`` (server selection included): an outage is a
        503 in seconds, not after the driver's 30 s. A delivery that waited for a thread
        while the database was found away is answered at once (unless it is the probe)."""
        import pymongo

        if not probe and self._database_away():
            raise DatabaseAway("the database is unavailable (another delivery probes)")
        with pymongo.timeout(self.db_timeout):
            return apply_event(self.store, event)

    def _learn_instance(self, instance_id: str) -> None:
        """Bind an unbound database to the deliveries' Clerk instance; warn on a mismatch."""
        from clerksync.store.instance import learn_from_delivery

        try:
            import pymongo

            with pymongo.timeout(self.db_timeout):
                bound = learn_from_delivery(self.store, instance_id)
        except Exception as exc:  # diagnostics only: retried by the next process
            log.warning("could not record the Clerk instance: %s", exc.__class__.__name__)
            return
        if bound != instance_id:
            log.warning(
                "deliveries come from Clerk instance %s, but the database is synced with %s: "
                "is WEBHOOK_SECRET from the right endpoint?",
                instance_id,
                bound,
            )

    def _ping(self) -> float | None:
        """Round trip in ms, or None when the database does not answer in time."""
        import pymongo

        try:
            with pymongo.timeout(HEALTH_TIMEOUT):
                return self.store.ping()[1]
        except ClerkSyncError:
            return None

    async def healthz(self, request: Request) -> JSONResponse:
        """On its own thread, never behind deliveries; concurrent checks share one ping."""
        future = self._health
        if future is None or future.done():
            future = self._health = self._health_pool.submit(self._ping)
        # The driver knows the database is away: the ping (which also wakes the driver's
        # monitor) gets a moment, not the full timeout.
        wait = 0.1 if self._database_away() else HEALTH_TIMEOUT + 0.1
        try:
            ms = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait)
        except asyncio.TimeoutError:
            ms = None
        if ms is None:
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "database": self.store.name, "roundTripMs": round(ms, 1)})


class DatabaseAway(StoreUnavailable):
    """Answered at once: the database is known to be away and another delivery is probing."""


class _BodyTooLarge(Exception):
    pass


class _Busy(Exception):
    pass


def create_app(settings: Settings, **options: Any) -> Starlette:
    """The receiver as an ASGI app; mount it in FastAPI with ``app.mount("/", create_app(s))``."""
    receiver = Receiver(settings, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        receiver.start()
        try:
            yield
        finally:
            receiver.stop()

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.webhook, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    return app
