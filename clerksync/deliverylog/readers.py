"""Reading the delivery log: list, show, stats, tail and replay, as typed results.

The receiver writes the log (``clerksync.deliveries``); this module reads it
for ``clerksync events``, so the CLI only parses and renders.

Three kinds of record share the log, told apart by ``source``:

* ``webhook``: a delivery as it arrived (a retried delivery has several);
* ``replay``: ``events replay`` re-applied a stored payload. It is recorded
  beside the original, never instead of it: ``show`` still shows the delivery
  as it arrived, with its replays listed under it, and a second replay finds
  the original's payload again;
* probes: ``doctor``'s requests to a receiver carry a svix-id starting with
  ``PROBE_PREFIX``. They are not deliveries, so no reader counts them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from clerksync.clerk.jsonbody import NotJson, loads
from clerksync.deliverylog.records import iter_records, stored_body
from clerksync.deliverylog.writer import OUTCOMES
from clerksync.errors import NotFound, UsageError
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow

#: svix-id prefix of doctor's probe requests
PROBE_PREFIX = "msg_clerksync_probe_"


_AGO = re.compile(r"^([0-9]{1,7})([smhd])$")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> datetime:
    """``30m``, ``2h``, ``7d`` or an ISO 8601 time -> an aware UTC datetime; UsageError else."""
    raw = text.strip()
    match = _AGO.match(raw)
    try:
        if match:
            return utcnow() - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        pass
    raise UsageError(
        f"--since {raw[:40]!r}: give 30m, 2h, 7d (at most 7 digits) or an ISO 8601 time "
        "such as 2026-01-31T12:00Z"
    )


def parse_outcome(text: str | None) -> str | None:
    if text is not None and text not in OUTCOMES:
        raise UsageError(f"--outcome {text[:40]!r}: use one of {', '.join(OUTCOMES)}")
    return text


def is_probe(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("svixId") or "").startswith(PROBE_PREFIX)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def _text(value: Any) -> str | None:
    """A record's text field as text (a record another version wrote may hold anything)."""
    return None if value is None else value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Delivery:
    """One log record as documented: ids, type, outcome, timing; no email, no name."""

    id: str | None
    type: str | None
    user_id: str | None
    outcome: str
    received_at: datetime | None
    duration_ms: float | None
    error: str | None
    source: str
    #: what the event is about (user, organization, membership or other object id)
    object_id: str | None = None
    #: deliveries this record stands for: a sampled summary of rejections counts the many
    #: it left out (``deliveries.RejectionSampler``); every other record is one
    count: int = 1
    #: what was cut or left out of a stored field to store it (field names, no values)
    notes: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, entry: Mapping[str, Any]) -> Delivery:
        received = entry.get("receivedAt")
        duration = entry.get("durationMs")
        notes = entry.get("notes")
        return cls(
            id=_text(entry.get("svixId")),
            type=_text(entry.get("type")),
            user_id=_text(entry.get("userId")),
            outcome=str(entry.get("outcome")),
            received_at=received if isinstance(received, datetime) else None,
            duration_ms=(
                float(duration)
                if isinstance(duration, (int, float)) and not isinstance(duration, bool)
                else None
            ),
            error=_text(entry.get("error")),
            source=str(entry.get("source") or "webhook"),
            object_id=_text(entry.get("objectId")),
            count=record_count(entry),
            notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
        )

    @property
    def replay(self) -> bool:
        return self.source == "replay"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "objectId": self.object_id,
            "userId": self.user_id,
            "outcome": self.outcome,
            "receivedAt": _iso(self.received_at),
            "durationMs": self.duration_ms,
            "error": self.error,
            "replay": self.replay,
            "count": self.count,
            "notes": list(self.notes),
        }


def record_count(entry: Mapping[str, Any]) -> int:
    """How many deliveries a log record stands for (a rejection summary: its ``count``)."""
    count = entry.get("count", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def deliveries(store: Store, **filters: Any) -> Iterator[Mapping[str, Any]]:
    """The log's records but doctor's probes (``iter_records``' filters)."""
    return (e for e in iter_records(store, **filters) if not is_probe(e))


def still_failed(store: Store, *, since: datetime | None = None) -> dict[str, Delivery]:
    """The deliveries whose latest word (an attempt, a retry or a replay) is ``failed``:
    svix-id -> that latest record, newest first. What ``events replay --failed`` replays and
    ``doctor`` reports. Memory holds each delivery's id and only the failed records."""
    seen: set[str] = set()
    found: dict[str, Delivery] = {}
    for entry in deliveries(store, since=since):
        svix_id = entry.get("svixId")
        if not svix_id or svix_id in seen:
            continue
        seen.add(svix_id)
        if entry.get("outcome") == "failed":
            found[svix_id] = Delivery.from_record(entry)
    return found


def list_deliveries(
    store: Store,
    *,
    event_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    object_id: str | None = None,
    limit: int | None = None,
) -> list[Delivery]:
    """Deliveries and replays, newest first (probes left out), every filter given combined."""
    found: list[Delivery] = []
    filters = {"since": since, "until": until, "object_id": object_id}
    for entry in deliveries(store, event_type=event_type, outcome=outcome, **filters):
        found.append(Delivery.from_record(entry))
        if limit is not None and len(found) >= limit:
            break
    return found


@dataclass(frozen=True)
class DeliveryDetail:
    """A delivery as it arrived (its newest attempt), its attempts, and the replays of it."""

    delivery: Delivery
    attempts: int
    replays: list[Delivery]
    payload: bytes | None
    #: the headers kept of it (``svix-*``, content type and length, user agent; the
    #: signatures masked), empty for records older than that
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self, *, payload: bool = False) -> dict[str, Any]:
        """As documented; with ``payload``, the body parsed (``payload``), or when it is not
        JSON clerksync can read (a rejected delivery's), null and the body as text
        (``payloadText``, bytes that are not UTF-8 shown as ``\\xff``)."""
        data = self.delivery.to_json()
        data.pop("replay")
        data["headers"] = self.headers
        data["attempts"] = self.attempts
        data["replays"] = [
            {k: v for k, v in r.to_json().items() if k in ("outcome", "receivedAt", "durationMs")}
            for r in self.replays
        ]
        if payload:
            data["payload"], text = payload_view(self.payload)
            if text is not None:
                data["payloadText"] = text
        return data


def payload_view(body: bytes | None) -> tuple[Any, str | None]:
    """A stored body as (its JSON value, None), or (None, its text) when it is not JSON
    clerksync can read; (None, None) when there is none."""
    if body is None:
        return None, None
    try:
        return loads(body), None
    except NotJson:
        return None, body.decode("utf-8", "backslashreplace")


def show_delivery(store: Store, svix_id: str) -> DeliveryDetail:
    """The delivery ``svix_id``; NotFound if the log has no such delivery."""
    original: Mapping[str, Any] | None = None
    attempts = 0
    replays: list[Delivery] = []
    for entry in deliveries(store, svix_id=svix_id, payload=True):
        if entry.get("source") == "replay":
            replays.append(Delivery.from_record(entry))
            continue
        attempts += 1
        if original is None:
            original = entry
    if original is None and not replays:
        raise NotFound(f"no delivery {svix_id[:100]!r} in the log")
    newest_replay = replays[0] if replays else None
    replays.reverse()  # oldest first, as they happened
    if original is None and newest_replay is not None:
        # the delivery's own record expired before its replays: they are what is left
        return DeliveryDetail(newest_replay, 0, replays, None)
    assert original is not None
    headers = original.get("headers")
    return DeliveryDetail(
        Delivery.from_record(original),
        attempts,
        replays,
        stored_body(original),
        {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {},
    )


@dataclass(frozen=True)
class Stats:
    """Counts per outcome and type; replays are counted apart, probes not at all."""

    total: int
    outcomes: dict[str, int]
    types: dict[str, int]
    replays: int

    def rate(self, outcome: str) -> float:
        return self.outcomes.get(outcome, 0) / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "outcomes": {
                k: {"count": v, "rate": round(self.rate(k), 4)}
                for k, v in sorted(self.outcomes.items())
            },
            "types": dict(sorted(self.types.items())),
            "replays": self.replays,
        }


def delivery_stats(store: Store, *, since: datetime | None = None) -> Stats:
    outcomes: dict[str, int] = {}
    types: dict[str, int] = {}
    replays = 0
    for entry in deliveries(store, since=since):
        if entry.get("source") == "replay":
            replays += 1
            continue
        count = record_count(entry)
        outcome = str(entry.get("outcome"))
        outcomes[outcome] = outcomes.get(outcome, 0) + count
        key = entry.get("type") or "(unparsed)"
        types[key] = types.get(key, 0) + count
    return Stats(sum(outcomes.values()), outcomes, types, replays)


@dataclass
class Tail:
    """New deliveries since the last call: ``poll()`` returns them oldest first.

    Buckets are ordered by ``_id`` (write order), so the cursor is the last
    bucket's ``_id`` seen; a bucket holds up to a fraction of a second of records.
    """

    store: Store
    event_type: str | None = None
    outcome: str | None = None
    _after: Any = None
    _started: bool = field(default=False)

    def _keep(self, entry: Mapping[str, Any]) -> bool:
        return (
            not is_probe(entry)
            and (self.event_type is None or entry.get("type") == self.event_type)
            and (self.outcome is None or entry.get("outcome") == self.outcome)
        )

    def recent(self, count: int) -> list[Delivery]:
        """The last ``count`` matching deliveries, oldest first; later polls start after them."""
        newest = self.store.deliveries.find({}, {"_id": 1}).sort("_id", -1).limit(1)
        self._after = next((b["_id"] for b in newest), None)
        self._started = True
        if count <= 0 or self._after is None:
            return []
        # up to the cursor only: a bucket written meanwhile is the next poll's, not shown twice
        shown: list[Delivery] = []
        buckets = self.store.deliveries.find(
            {"_id": {"$lte": self._after}}, {"records.payload": 0}
        ).sort("_id", -1)
        for bucket in buckets.batch_size(20):
            for entry in reversed(bucket.get("records") or []):
                if self._keep(entry):
                    shown.append(Delivery.from_record(entry))
            if len(shown) >= count:
                break
        return list(reversed(shown[:count]))

    def poll(self) -> list[Delivery]:
        if not self._started:
            return self.recent(0)
        query = {} if self._after is None else {"_id": {"$gt": self._after}}
        found: list[Delivery] = []
        projection = {"records.payload": 0}
        for bucket in self.store.deliveries.find(query, projection).sort("_id", 1):
            self._after = bucket["_id"]
            for entry in bucket.get("records") or []:
                if self._keep(entry):
                    found.append(Delivery.from_record(entry))
        return found
