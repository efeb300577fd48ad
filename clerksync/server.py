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
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clerksync.clerk import ClerkGateway, default_rate
from clerksync.config import WEBHOOK_PATH, Settings
from clerksync.deliveries import DeliveryLog, record
from clerksync.errors import ClerkSyncError, IndexRefused, InvalidEvent
from clerksync.mongo import utcnow
from clerksync.store import UserStore, connect
from clerksync.webhooks import MAX_BODY, SignatureError, apply_event, parse_event, verify
from clerksync.writeback import WriteBackWorkers

log = logging.getLogger("clerksync.server")


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
        writeback_poll: float = 1.0,
    ) -> None:
        if not settings.webhook_secret:
            from clerksync.errors import ConfigError

            raise ConfigError("WEBHOOK_SECRET is not set: the receiver cannot verify deliveries")
        self.settings = settings
        self.secret = settings.webhook_secret
        self.store = store or connect(settings)
        if gateway is None and settings.clerk_secret_key:
            gateway = ClerkGateway(settings.clerk_secret_key, api_url=settings.clerk_api_url)
        self.gateway = gateway
        self.log = DeliveryLog(self.store)
        self.workers = (
            WriteBackWorkers(
                self.store,
                gateway,
                threads=writeback_threads,
                rate=default_rate(settings.clerk_secret_key),
                base_delay=writeback_base_delay,
                poll=writeback_poll,
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
        svix_id = request.headers.get("svix-id")

        def finish(
            status: int,
            outcome: str,
            *,
            event_type: str | None = None,
            user_id: str | None = None,
            error: str | None = None,
            verified_body: bytes | None = None,
            object_id: str | None = None,
        ) -> JSONResponse:
            duration = (time.perf_counter() - started) * 1000
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

        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return finish(400, "rejected", error="bad content-length")
            if int(declared) > MAX_BODY:
                return finish(413, "rejected", error="body over 1 MiB")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return finish(413, "rejected", error="body over 1 MiB")
        try:
            verify(self.secret, bytes(body), request.headers)
        except SignatureError as exc:
            return finish(400, "rejected", error=f"signature: {exc}")
        try:
            event = parse_event(bytes(body))
        except InvalidEvent as exc:
            return finish(400, "rejected", error=f"payload: {exc}")
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
                    verified_body=bytes(body),
                )
        try:
            outcome, wants = await run_in_threadpool(apply_event, self.store, event)
        except ClerkSyncError as exc:  # the store says what failed: an index, the database
            if isinstance(exc, IndexRefused):
                log.error("delivery %s refused by index %s: %s", svix_id, exc.index, exc)
                error = f"index {exc.index}: {exc}"
            else:
                error = f"database: {exc}"
            return finish(
                503,
                "failed",
                event_type=event.type,
                user_id=event.user_id,
                object_id=event.object_id,
                error=error,
                verified_body=bytes(body),
            )
        if wants and self.workers is not None:
            self.workers.wake()
        return finish(
            200,
            outcome,
            event_type=event.type,
            user_id=event.user_id,
            object_id=event.object_id,
            verified_body=bytes(body),
        )

    async def healthz(self, request: Request) -> JSONResponse:
        try:
            version, ms = await run_in_threadpool(self.store.ping)
        except ClerkSyncError:
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "database": self.store.name, "roundTripMs": round(ms, 1)})


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


class JsonLines(logging.Formatter):
    """One JSON object per line; a delivery's fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        delivery = getattr(record, "delivery", None)
        if delivery:
            entry.update(delivery)
        else:
            entry["message"] = record.getMessage()
        return json.dumps(entry)


def configure_logging(*, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLines()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("clerksync")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_json: bool = False,
    store: UserStore | None = None,
) -> None:
    """Serve the receiver with uvicorn until interrupted."""
    import uvicorn

    configure_logging(json_lines=log_json)
    app = create_app(settings, store=store)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
