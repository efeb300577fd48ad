"""A delivery's ending: its answer (plain ASGI), its record in the delivery log, its log
line and its metrics, the same for every outcome (``conclude``)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from clerksync.deliverylog.writer import DeliveryLog, record
from clerksync.mapping.events import logged_body
from clerksync.receiver.guards import recorded_headers
from clerksync.receiver.logs import log_delivery
from clerksync.receiver.metrics import ReceiverMetrics


class Parts(Protocol):
    """What of the receiver a delivery's ending uses."""

    metrics: ReceiverMetrics | None
    log: DeliveryLog
    payload_ttl: timedelta


Send = Callable[[Mapping[str, Any]], Awaitable[None]]


def answer_bytes(outcome: str, error: str | None = None) -> bytes:
    """The JSON a delivery is answered with (what Starlette's ``JSONResponse`` wrote)."""
    body = {"outcome": outcome, "error": error} if error else {"outcome": outcome}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


#: the answers without an error, made once
ANSWERS = {o: answer_bytes(o) for o in ("applied", "duplicate", "stale", "ignored")}


def asgi_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI request's headers by (lower-case) name, the first of repeated ones (as
    Starlette's ``Headers.get``): a plain dict, read a few times per delivery."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


def conclude(
    receiver: Parts,
    headers: Mapping[str, str],
    started: float,
    received: datetime,
    svix_id: str | None,
    status: int,
    outcome: str,
    *,
    event_type: str | None = None,
    user_id: str | None = None,
    error: str | None = None,
    verified_body: bytes | None = None,
    verified: bool = True,
    object_id: str | None = None,
    reason: str | None = None,
    notes: tuple[str, ...] = (),
) -> tuple[int, bytes]:
    """Count, record and log a delivery (``started``: its ``perf_counter``); its answer.
    Unauthenticated rejections (``verified=False``) are sampled: anyone can send them by
    the thousand."""
    elapsed = time.perf_counter() - started
    duration = elapsed * 1000
    if receiver.metrics is not None:
        signed = verified_body is not None  # the svix-timestamp is the signed one
        stamp = float(headers["svix-timestamp"]) if signed else None
        receiver.metrics.delivery(event_type, outcome, elapsed, stamp)
        if reason is not None:
            receiver.metrics.rejection(reason)
    if verified_body is not None:  # without what its kind never keeps
        verified_body = logged_body(verified_body, event_type)
    if verified or receiver.log.admit_rejection(error):
        receiver.log.add(
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
                payload_ttl=receiver.payload_ttl,
                headers=recorded_headers(headers),
                notes=notes,
            )
        )
        log_delivery(
            svix_id, event_type, object_id, user_id, outcome, status, duration, error, notes
        )
    answer = ANSWERS.get(outcome) if error is None else None
    return status, answer or answer_bytes(outcome, error)
