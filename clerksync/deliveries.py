"""The delivery log: one record per delivery, written off the hot path.

A record holds ids, type, outcome and timing, never an email or a name; the
verified body rides along for replay under ``payload`` (the exact bytes, zlib-
compressed: a single binary field costs the database far less than a nested
document, and replay re-reads what was verified). Every record carries
``expiresAt`` (received + ``CLERKSYNC_PAYLOAD_TTL_DAYS``, default 7) and a TTL
index removes it then, payload and all, so personal data expires and the log
stays bounded. Records are buffered and written in batches by one
thread: the user's document is the durable state, the log is diagnostics, so
it does not get a durable write of its own per delivery. At most the last
fraction of a second of records is lost if the process is killed.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from clerksync.mongo import utcnow
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
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "svixId": svix_id,
        "type": event_type,
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
    """Buffers records and writes them in batches from one background thread."""

    def __init__(self, store: UserStore, *, flush_every: float = 0.2, batch: int = 200) -> None:
        self.store = store
        self.flush_every = flush_every
        self.batch = batch
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clerksync-deliveries", daemon=True)
        self._thread.start()

    def add(self, entry: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:  # the database is away for long: drop diagnostics, not users
            log.warning("delivery log full; dropping a record for %s", entry.get("svixId"))

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(10)

    def flush_now(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        self._write(self._drain(block=False))

    def _drain(self, *, block: bool) -> list[dict[str, Any] | None]:
        items: list[dict[str, Any] | None] = []
        try:
            items.append(
                self._queue.get(timeout=self.flush_every) if block else self._queue.get_nowait()
            )
            while len(items) < self.batch:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _write(self, items: list[dict[str, Any] | None]) -> None:
        entries = [i for i in items if i is not None]
        if not entries:
            return
        try:
            self.store.deliveries.insert_many(entries, ordered=False)
        except Exception as exc:
            log.warning(
                "could not write %d delivery records: %s", len(entries), exc.__class__.__name__
            )

    def _run(self) -> None:
        while True:
            items = self._drain(block=True)
            self._write(items)
            if None in items:
                self.flush_now()
                return


def find_deliveries(
    store: UserStore,
    *,
    event_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> Iterator[Mapping[str, Any]]:
    query: dict[str, Any] = {}
    if event_type:
        query["type"] = event_type
    if outcome:
        query["outcome"] = outcome
    if since:
        query["receivedAt"] = {"$gte": since}
    # _id order is arrival order (records are inserted as they arrive), and _id is
    # indexed anyway: the log keeps no other index but its TTL, to stay cheap to write.
    cursor = store.deliveries.find(query, {"payload": 0}).sort("_id", -1)
    if limit:
        cursor = cursor.limit(limit)
    return iter(cursor)


def find_delivery(store: UserStore, svix_id: str) -> Mapping[str, Any] | None:
    """The newest record for a svix id (a retried delivery has several)."""
    for entry in store.deliveries.find({"svixId": svix_id}).sort("_id", -1).limit(1):
        return entry
    return None


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
