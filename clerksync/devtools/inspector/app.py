"""The inspector's pages over the delivery log: the live list, a delivery, replay, the chart,
doctor. Server-rendered (Starlette, Jinja2 with autoescape: a payload is data, never
markup); htmx, shipped in ``static/``, polls the list and posts replays.

It shows what ``clerksync events`` shows and nothing more: lists carry ids, types,
outcomes and timings (no email, no name); a payload only on its delivery's own page.
Every read goes through ``clerksync.deliverylog``'s readers, every replay through
``deliverylog.replay`` (the path ``events replay`` takes, logged as a replay). Handlers are
plain functions: Starlette runs them on its thread pool, off the event loop, as pymongo
blocks.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from clerksync.deliverylog.changes import delivery_changes
from clerksync.deliverylog.readers import (
    list_deliveries,
    parse_outcome,
    parse_since,
    show_delivery,
    still_failed,
)
from clerksync.deliverylog.records import log_version
from clerksync.deliverylog.replay import ReplayResult, replay
from clerksync.deliverylog.timeline import WINDOWS, per_minute
from clerksync.deliverylog.writer import OUTCOMES
from clerksync.devtools.inspector.access import Guard
from clerksync.devtools.inspector.chart import chart
from clerksync.errors import ClerkSyncError, NotFound, UsageError
from clerksync.store.database import Store

HERE = Path(__file__).parent
#: rows the live list shows at most (the CLI's `events list --limit` for more)
ROWS = 200


class CheckLike(Protocol):
    """A doctor check as the page shows it (``clerksync.doctor.Check``, passed in by the CLI:
    doctor is a layer above this one)."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def hint(self) -> str: ...


@dataclass(frozen=True)
class Filters:
    """The list's filters, combined; ``query`` is them as a query string."""

    event_type: str | None = None
    outcome: str | None = None
    object_id: str | None = None
    since: str | None = None
    until: str | None = None

    @classmethod
    def of(cls, request: Request) -> Filters:
        def given(name: str) -> str | None:
            value = request.query_params.get(name, "").strip()[:200]
            return value or None

        return cls(given("type"), given("outcome"), given("object"), given("since"), given("until"))

    @property
    def query(self) -> dict[str, str]:
        pairs = zip(("type", "outcome", "object", "since", "until"), self.values, strict=True)
        return {name: value for name, value in pairs if value}

    @property
    def values(self) -> tuple[str | None, ...]:
        return (self.event_type, self.outcome, self.object_id, self.since, self.until)

    def read(self, store: Store) -> list[Any]:
        """The matching deliveries, newest first; ``UsageError`` for a filter that is wrong."""
        return list_deliveries(
            store,
            event_type=self.event_type,
            outcome=parse_outcome(self.outcome),
            object_id=self.object_id,
            since=parse_since(self.since) if self.since else None,
            until=parse_since(self.until) if self.until else None,
            limit=ROWS,
        )


def utc(value: datetime | None, *, seconds: bool = True) -> str:
    if value is None:
        return ""
    shown = value.astimezone(timezone.utc)
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


class Inspector:
    """The pages' handlers over one store; ``doctor`` runs doctor's checks."""

    def __init__(
        self,
        store: Store,
        *,
        doctor: Callable[[], Sequence[CheckLike]],
        payload_ttl: timedelta = timedelta(days=7),
    ) -> None:
        self.store = store
        self.doctor = doctor
        self.payload_ttl = payload_ttl
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["utc"] = utc
        self._indexed = False
        self._index_lock = threading.Lock()

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # -- the list ------------------------------------------------------------------------------

    def deliveries(self, request: Request) -> Response:
        filters = Filters.of(request)
        error = None
        # The version before the rows: a bucket written in between is then the next poll's,
        # never marked as seen without being shown.
        version = log_version(self.store)
        try:
            rows = filters.read(self.store)
        except UsageError as exc:
            rows, error = [], str(exc)
        return self.page(
            request,
            "list.html",
            400 if error else 200,
            rows=rows,
            filters=filters,
            error=error,
            outcomes=OUTCOMES,
            marker=version,
            failed=len(still_failed(self.store)),
            limit=ROWS,
        )

    def rows(self, request: Request) -> Response:
        """The list's body when the log has changed since ``seen``; 204 (htmx swaps nothing)
        when it has not: a poll costs one index read while nothing arrives."""
        marker = log_version(self.store)
        if marker == request.query_params.get("seen"):
            return Response(status_code=204)
        filters = Filters.of(request)
        try:
            rows = filters.read(self.store)
        except UsageError:
            rows = []
        return self.page(request, "rows.html", rows=rows, filters=filters, marker=marker)

    # -- one delivery --------------------------------------------------------------------------

    def delivery(self, request: Request) -> Response:
        svix_id = request.path_params["svix_id"]
        try:
            detail = show_delivery(self.store, svix_id)
        except NotFound as exc:
            return self.page(request, "missing.html", 404, error=str(exc))
        payload = None
        if detail.payload is not None:
            payload = json.dumps(json.loads(detail.payload), indent=2, ensure_ascii=False)
        return self.page(
            request,
            "delivery.html",
            detail=detail,
            payload=payload,
            changes=delivery_changes(self.store, detail),
        )

    def replay_one(self, request: Request) -> Response:
        svix_id = request.path_params["svix_id"]
        results, error = self._replay(svix_id=svix_id)
        detail = None
        with contextlib.suppress(NotFound):
            detail = show_delivery(self.store, svix_id)
        return self.page(request, "replayed.html", results=results, error=error, detail=detail)

    def replay_failed(self, request: Request) -> Response:
        results, error = self._replay(failed=True)
        return self.page(request, "replayed.html", results=results, error=error, detail=None)

    def _replay(self, **which: Any) -> tuple[list[ReplayResult], str | None]:
        """``events replay``'s path: indexes first (the Clerk-id uniqueness), then replay."""
        try:
            self._ensure_indexes()
            return replay(self.store, payload_ttl=self.payload_ttl, **which), None
        except ClerkSyncError as exc:
            return [], str(exc)

    def _ensure_indexes(self) -> None:
        with self._index_lock:
            if self._indexed:
                return
            report = self.store.ensure_indexes()
            if not report.clerk_id_enforced:
                raise ClerkSyncError(
                    f"{self.store.users.name}.{self.store.clerk_id} has no unique index, so a "
                    "replay could write duplicate users; `clerksync doctor` says why"
                )
            self._indexed = True

    # -- the chart and doctor ------------------------------------------------------------------

    def chart(self, request: Request) -> Response:
        window = request.query_params.get("window", "hour")
        if window not in WINDOWS:
            window = "hour"
        drawn = chart(per_minute(self.store, WINDOWS[window]))
        return self.page(request, "chart.html", chart=drawn, window=window, windows=list(WINDOWS))

    def doctor_page(self, request: Request) -> Response:
        return self.page(request, "doctor.html")

    def doctor_checks(self, request: Request) -> Response:
        checks = list(self.doctor())
        failed = any(c.status == "fail" for c in checks)
        return self.page(request, "checks.html", checks=checks, failed=failed)


def create_inspector(
    store: Store,
    *,
    doctor: Callable[[], Sequence[CheckLike]],
    host: str = "127.0.0.1",
    port: int = 4041,
    token: str | None = None,
    payload_ttl: timedelta = timedelta(days=7),
) -> Starlette:
    """The inspector as an ASGI app, guarded for ``host:port`` (``access.Guard``)."""
    inspector = Inspector(store, doctor=doctor, payload_ttl=payload_ttl)
    app = Starlette(
        routes=[
            Route("/", inspector.deliveries, methods=["GET"]),
            Route("/rows", inspector.rows, methods=["GET"]),
            Route("/deliveries/{svix_id}", inspector.delivery, methods=["GET"]),
            Route("/deliveries/{svix_id}/replay", inspector.replay_one, methods=["POST"]),
            Route("/replay-failed", inspector.replay_failed, methods=["POST"]),
            Route("/chart", inspector.chart, methods=["GET"]),
            Route("/doctor", inspector.doctor_page, methods=["GET"]),
            Route("/doctor/checks", inspector.doctor_checks, methods=["GET"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]
    )
    app.add_middleware(Guard, host=host, port=port, token=token)
    app.state.inspector = inspector
    return app
