"""The delivery log: one record per delivery, written off the hot path, in buckets.

A record holds ids, type, outcome and timing, never an email or a name; the
verified body rides along for replay under ``payload`` (the exact bytes, zlib-
compressed: a single binary field costs the database far less than a nested
document, and replay re-reads what was verified). Every record carries
``expiresAt`` (received + ``CLERKSYNC_PAYLOAD_TTL_DAYS``, default 7) and a TTL
index removes it then, payload and all, so personal data expires and the log
stays bounded.

Records are buffered and written by one thread, a flush (up to 200 records or
0.2 s) at a time, as one *bucket* document ``{records: [...], expiresAt}``:
the database then takes one insert per flush instead of one per delivery,
which is what keeps the log from costing the receiver a second write per
event. The user's document is the durable state, the log is diagnostics: at
most the last fraction of a second of records is lost if the process is
killed. Readers go through ``iter_records``, newest first.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from clerksync.mongo import translated, utcnow
from clerksync.store import UserStore

log = logging.getLogger("clerksync.deliveries")

OUTCOMES = ("applied", "duplicate", "stale", "ignored", "rejected", "failed")


def record(
    *,
    svix_id: str | None,
    event_type: str | None,
    user_id: str | None,
    outcome: str,
    received_at: datetime,
    duration_ms: float,
    error: str | None = None,
    body: bytes | None = None,
    payload_ttl: timedelta = timedelta(days=7),
    source: str = "webhook",
    object_id: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "svixId": svix_id,
        "type": event_type,
        "objectId": object_id,  # what the event is about, whatever its type
        "userId": user_id,
        "outcome": outcome,
        "receivedAt": received_at,
        "durationMs": round(duration_ms, 2),
        "error": error,
        "source": source,
        "expiresAt": received_at + payload_ttl,
    }
    if body is not None:
        from bson import Binary

        entry["payload"] = Binary(zlib.compress(body, 1))
    return entry


class DeliveryLog:
    """Buffers records and writes them in batches from one background thread.

    ``add`` only appends to a deque: no lock, no wake-up of the writer per
    delivery (a ``queue.Queue`` woke the writer thread on every put, and that
    hand-off of the GIL was a tenth of the receiver's CPU). The writer wakes
    every ``flush_every`` seconds, or at once when a full batch is waiting.
    """

    MAX_PENDING = 100_000

    def __init__(self, store: UserStore, *, flush_every: float = 0.2, batch: int = 200) -> None:
        self.store = store
        self.flush_every = flush_every
        self.batch = batch
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._writing = threading.Lock()  # one writer at a time: the thread or flush_now
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="clerksync-deliveries", daemon=True)
        self._thread.start()

    def add(self, entry: dict[str, Any]) -> None:
        if len(self._pending) >= self.MAX_PENDING:
            # the database has been away for long: drop diagnostics, never users
            log.warning("delivery log full; dropping a record for %s", entry.get("svixId"))
            return
        self._pending.append(entry)
        if len(self._pending) >= self.batch:
            self._wake.set()

    def stop(self) -> None:
        """Write what is pending, then end the writer thread."""
        self._stopping = True
        self._wake.set()
        if self._thread:
            self._thread.join(10)
            self._thread = None

    def flush_now(self) -> None:
        """Write everything added so far, including a bucket the writer thread is writing."""
        with self._writing:
            while batch := self._take():
                self._write(batch)

    def _take(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            while len(items) < self.batch:
                items.append(self._pending.popleft())
        except IndexError:
            pass
        return items

    def _write(self, entries: list[dict[str, Any]]) -> None:
        try:
            append_records(self.store, entries)
        except Exception as exc:
            log.warning(
                "could not write %d delivery records: %s", len(entries), exc.__class__.__name__
            )

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            self.flush_now()
        self.flush_now()


@translated
def append_records(store: UserStore, records: list[dict[str, Any]]) -> None:
    """Write records as one bucket; it expires with its newest record."""
    if records:
        store.deliveries.insert_one(
            {
                "firstAt": min(r["receivedAt"] for r in records),
                "expiresAt": max(r["expiresAt"] for r in records),
                "records": records,
            }
        )


@translated
def iter_records(
    store: UserStore,
    *,
    event_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    svix_id: str | None = None,
    payload: bool = False,
) -> Iterator[Mapping[str, Any]]:
    """Records matching every filter given, newest first, streamed bucket by bucket."""
    query: dict[str, Any] = {}
    for field, value in (("type", event_type), ("outcome", outcome), ("svixId", svix_id)):
        if value is not None:
            query[f"records.{field}"] = value
    if since is not None:
        query["expiresAt"] = {"$gte": since}  # a bucket expires after its newest record
    projection = None if payload else {"records.payload": 0}
    # _id order is write order, and _id is indexed anyway: the log keeps no other
    # index but its TTL, to stay cheap to write.
    for bucket in store.deliveries.find(query, projection).sort("_id", -1).batch_size(20):
        for entry in reversed(bucket.get("records") or []):
            if (
                (event_type is None or entry.get("type") == event_type)
                and (outcome is None or entry.get("outcome") == outcome)
                and (svix_id is None or entry.get("svixId") == svix_id)
                and (since is None or entry["receivedAt"] >= since)
            ):
                yield entry


def find_deliveries(
    store: UserStore,
    *,
    event_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> Iterator[Mapping[str, Any]]:
    records = iter_records(store, event_type=event_type, outcome=outcome, since=since)
    return itertools.islice(records, limit) if limit else records


def find_delivery(store: UserStore, svix_id: str) -> Mapping[str, Any] | None:
    """The newest record for a svix id (a retried delivery has several)."""
    return next(iter_records(store, svix_id=svix_id, payload=True), None)


def stored_body(entry: Mapping[str, Any]) -> bytes | None:
    """The delivery's body as received, or None (rejected, or expired)."""
    payload = entry.get("payload")
    return zlib.decompress(payload) if payload else None


def stored_payload(entry: Mapping[str, Any]) -> Any:
    body = stored_body(entry)
    return json.loads(body) if body is not None else None


def since_ago(text: str) -> datetime:
    """``30m``, ``2h``, ``7d`` or an ISO 8601 time -> a UTC datetime."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in units:
        return utcnow() - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from clerksync.errors import UsageError

        raise UsageError(f"--since {text!r}: give 30m, 2h, 7d or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        from datetime import timezone

        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed
