"""``events replay``: re-apply stored payloads through the receiver's code path."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from clerksync.deliverylog.readers import deliveries, show_delivery, still_failed
from clerksync.deliverylog.records import append_records, stored_body
from clerksync.deliverylog.writer import record
from clerksync.errors import ClerkSyncError, InvalidEvent, NotFound, UsageError
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow


@dataclass(frozen=True)
class ReplayResult:
    id: str
    type: str
    user_id: str | None
    outcome: str
    original_outcome: str
    #: why the replay failed (outcome ``failed``): the delivery stays failed, the others go on
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {
            "id": data["id"],
            "type": data["type"],
            "userId": data["user_id"],
            "outcome": data["outcome"],
            "originalOutcome": data["original_outcome"],
            "error": data["error"],
        }


def _replayable_failures(store: Store, since: datetime | None) -> Iterator[Mapping[str, Any]]:
    """Deliveries whose latest word (a retry or a replay) is still ``failed``, oldest first,
    one stored payload at a time: a first pass without payloads finds them, a second (oldest
    first) yields each one's first record that has its payload (every attempt carries the
    same body). Memory holds the ids, never every payload."""
    wanted = set(still_failed(store, since=since))
    if not wanted:
        return
    for entry in deliveries(store, since=since, payload=True, oldest_first=True):
        svix_id = entry.get("svixId")
        if svix_id in wanted and entry.get("source") != "replay" and entry.get("payload"):
            wanted.discard(svix_id)
            yield entry
            if not wanted:
                return


def replay(
    store: Store,
    *,
    svix_id: str | None = None,
    failed: bool = False,
    since: datetime | None = None,
    payload_ttl: timedelta = timedelta(days=7),
) -> list[ReplayResult]:
    """Re-apply stored payloads through the receiver's code path; each replay is logged as one.

    Payloads were verified when they arrived; a replay obeys the same ordering
    and tombstone rules, so replaying is always safe, and can be repeated.

    A delivery whose replay fails (an app index refuses the user, say) is logged
    as a failed replay with its error and the others still run: oldest first, one
    that stays failed must not block every later one on each rerun. One whose payload
    the receiver refuses (a 400) is logged as ``rejected``, never ``failed``: a replay
    cannot fix it, so ``--failed`` does not take it up again.
    """
    from clerksync.mapping.events import parse_event
    from clerksync.store.apply import apply_event
    from clerksync.store.users import writer

    if (svix_id is None) == (not failed):
        raise UsageError("give one delivery ID, or --failed")
    entries: Iterable[Mapping[str, Any]]
    if failed:
        entries = _replayable_failures(store, since)
    else:
        detail = show_delivery(store, svix_id or "")
        if detail.payload is None:
            raise NotFound(
                f"delivery {svix_id!r} has no stored payload: it was rejected (never "
                "verified), or its payload expired (CLERKSYNC_PAYLOAD_TTL_DAYS)"
            )
        entries = [
            {
                "svixId": detail.delivery.id,
                "outcome": detail.delivery.outcome,
                "payload_body": detail.payload,
            }
        ]
    writes = writer(store)
    results = []
    for entry in entries:
        started = time.perf_counter()
        body = entry["payload_body"] if "payload_body" in entry else stored_body(entry)
        if body is None:  # pragma: no cover (selected for having one)
            continue
        event_type, user_id, error = _text(entry.get("type")), _text(entry.get("userId")), None
        object_id = _text(entry.get("objectId"))
        notes: tuple[str, ...] = ()
        try:
            event = parse_event(body, store.schema)
        except InvalidEvent as exc:
            # What the receiver answered 400 stays rejected: no rerun can fix it, so it is
            # no failure (``--failed`` leaves it be, and the exit code is not 1 for it).
            outcome, error = "rejected", f"payload: {exc}"
        else:
            event_type, user_id, object_id, notes = (
                event.type,
                event.user_id,
                event.object_id,
                event.notes,
            )
            try:
                outcome, _ = apply_event(writes, event)
            except ClerkSyncError as exc:
                outcome, error = "failed", str(exc)
        append_records(
            store,
            [
                record(
                    svix_id=entry["svixId"],
                    event_type=event_type,
                    user_id=user_id,
                    object_id=object_id,
                    outcome=outcome,
                    received_at=utcnow(),
                    source="replay",
                    duration_ms=(time.perf_counter() - started) * 1000,
                    payload_ttl=payload_ttl,
                    error=error,
                    notes=notes,
                )
            ],
        )
        results.append(
            ReplayResult(
                entry["svixId"],
                str(event_type),
                user_id,
                outcome,
                str(entry.get("outcome")),
                error,
            )
        )
    return results


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
