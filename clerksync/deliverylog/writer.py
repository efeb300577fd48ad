"""The delivery log: one record per delivery, written off the hot path, in buckets.

A record holds ids, type, outcome and timing, never an email or a name; the
verified body rides along for replay under ``payload`` (the exact bytes, zlib-
compressed: a single binary field costs the database far less than a nested
document, and replay re-reads what was verified). Every record carries
``expiresAt`` (received + ``CLERKSYNC_PAYLOAD_TTL_DAYS``, default 7) and a TTL
index removes it then, payload and all, so personal data expires and the log
stays bounded.

Records are buffered and written by one thread, a flush (up to 200 records,
8 MB or 0.2 s) at a time, as one *bucket* document ``{records: [...], expiresAt}``:
the database then takes one insert per flush instead of one per delivery,
which is what keeps the log from costing the receiver a second write per
event. The user's document is the durable state, the log is diagnostics: at
most the last fraction of a second of records is lost if the process is
killed. Readers go through ``iter_records``, newest first.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from clerksync.deliverylog.records import append_records
from clerksync.store.database import Store
from clerksync.store.mongo import database_unreachable, utcnow

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
    headers: Mapping[str, str] | None = None,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One log record. ``notes``: what was cut or left out of a stored field to store it
    (field names and limits, never the values)."""
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
    if headers:
        entry["headers"] = dict(headers)
    if notes:
        entry["notes"] = list(notes)
    if body is not None:
        from bson import Binary

        entry["payload"] = Binary(compress(body))
    return entry


def compress(body: bytes) -> bytes:
    """``body`` as zlib data (what ``zlib.decompress`` reads), at the fastest level, with a
    window and memory level that fit it: a Clerk event of a few KiB compresses in half the
    time of ``zlib.compress`` (whose 32 KiB window must be set up for every call), as small."""
    wbits = min(15, max(9, (len(body) - 1).bit_length()))
    packer = zlib.compressobj(1, zlib.DEFLATED, wbits, min(8, max(1, wbits - 7)))
    return packer.compress(body) + packer.flush()


def entry_bytes(entry: Mapping[str, Any]) -> int:
    """What a record costs in memory and in its bucket, near enough: the payload and the
    strings an unauthenticated sender controls, plus a fixed share for the rest."""
    size = 300
    for key in ("payload", "error", "svixId", "type", "userId"):
        value = entry.get(key)
        if value is not None:
            size += len(value)
    for name, value in (entry.get("headers") or {}).items():
        size += len(name) + len(value)
    return size


class RejectionSampler:
    """Unauthenticated rejections in bounded form: the first ``sample`` of each ``window``
    seconds are recorded (and logged) one by one, the rest only counted.

    Anyone can post junk to a public endpoint: 3,000 wrong-secret requests must
    not make 3,000 records and 3,000 log lines. The count of those left out goes
    into one summary record per window (``count``), so ``events stats`` still
    sees how much arrived.
    """

    def __init__(self, *, sample: int = 20, window: float = 60.0) -> None:
        self.sample = sample
        self.window = window
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._admitted = 0
        self._suppressed = 0
        self._errors: collections.Counter[str] = collections.Counter()

    def admit(self, error: str | None) -> bool:
        """True when this rejection is to be recorded in full."""
        with self._lock:
            if self._admitted < self.sample:
                self._admitted += 1
                return True
            self._suppressed += 1
            if len(self._errors) < 20 or error in self._errors:
                self._errors[(error or "")[:80]] += 1
            return False

    def close_window(self, now: float | None = None) -> dict[str, Any] | None:
        """At the end of a window: the summary record of what was left out, or None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._window_start < self.window:
                return None
            suppressed, errors = self._suppressed, self._errors
            self._window_start = now
            self._admitted = self._suppressed = 0
            self._errors = collections.Counter()
        if not suppressed:
            return None
        common = ", ".join(f"{e or '?'} ×{n}" for e, n in errors.most_common(3))
        log.warning(
            "%d more rejected deliveries in the last %.0f s, counted, not recorded one by one (%s)",
            suppressed,
            self.window,
            common,
        )
        received = utcnow()
        entry = record(
            svix_id=None,
            event_type=None,
            user_id=None,
            outcome="rejected",
            received_at=received,
            duration_ms=0.0,
            error=f"{suppressed} more rejected deliveries in {self.window:.0f} s "
            f"(counted, not recorded one by one): {common}",
        )
        entry["count"] = suppressed
        return entry


class DeliveryLog:
    """Buffers records and writes them in batches from one background thread.

    ``add`` only appends to a deque: no wake-up of the writer per delivery (a
    ``queue.Queue`` woke the writer thread on every put, and that hand-off of
    the GIL was a tenth of the receiver's CPU). The writer wakes every
    ``flush_every`` seconds, or at once when a full batch is waiting.

    Bounded in bytes, not records: at most ``max_bytes`` wait in memory, and a
    bucket holds at most ``batch_bytes`` (MongoDB refuses documents over 16 MB,
    and one refused bucket used to lose every record in it). A bucket the
    database does not take goes back to the front of the queue and is retried
    with backoff, so the ``failed`` records of an outage, the ones ``events
    replay --failed`` needs, are written once the database is back. When memory
    runs out, other records go first (newest dropped), then the oldest
    ``failed`` ones; every drop is counted and logged. ``on_write_error`` is told of each
    bucket the database did not take (``unavailable`` or ``refused``), for the metrics.
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_every: float = 0.2,
        batch: int = 200,
        batch_bytes: int = 8 * 1024 * 1024,
        max_bytes: int = 64 * 1024 * 1024,
        sampler: RejectionSampler | None = None,
        write_timeout: float = 5.0,
        on_write_error: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_write_error = on_write_error
        self.flush_every = flush_every
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.max_bytes = max_bytes
        self.sampler = sampler or RejectionSampler()
        self.write_timeout = write_timeout
        # failed deliveries apart from the rest: they are the last to be dropped
        self._failed: collections.deque[dict[str, Any]] = collections.deque()
        self._other: collections.deque[dict[str, Any]] = collections.deque()
        self._bytes = 0
        self._count = threading.Lock()  # guards _bytes and the drop counters
        self.dropped: collections.Counter[str] = collections.Counter()
        self._dropped_reported = 0
        self._wake = threading.Event()
        self._writing = threading.Lock()  # one writer at a time: the thread or flush_now
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._indexed = False

    @property
    def pending(self) -> int:
        return len(self._failed) + len(self._other)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="clerksync-deliveries", daemon=True)
        self._thread.start()

    def add(self, entry: dict[str, Any]) -> None:
        size = entry_bytes(entry)
        failed = entry.get("outcome") == "failed"
        with self._count:
            while self._bytes + size > self.max_bytes:
                if self._other:  # make room: other records go before failed ones
                    victim = self._other.popleft() if failed else entry
                elif failed and self._failed:
                    victim = self._failed.popleft()
                else:
                    victim = entry
                self.dropped[str(victim.get("outcome"))] += 1
                if victim is entry:
                    return
                self._bytes -= entry_bytes(victim)
            self._bytes += size
            (self._failed if failed else self._other).append(entry)
        if self.pending >= self.batch:
            self._wake.set()

    def admit_rejection(self, error: str | None) -> bool:
        """Should this unauthenticated rejection be recorded (and logged) one by one?"""
        return self.sampler.admit(error)

    def stop(self) -> None:
        """Write what is pending, then end the writer thread."""
        self._stopping = True
        self._wake.set()
        if self._thread:
            self._thread.join(self.write_timeout * 2 + 1)
            self._thread = None
        if self.pending:
            log.warning(
                "%d delivery records were not written (the database did not take them)",
                self.pending,
            )

    def flush_now(self) -> bool:
        """Write everything added so far; False when the database refused a bucket (it stays
        queued for the next try)."""
        summary = self.sampler.close_window()
        if summary is not None:
            self.add(summary)
        with self._writing:
            while batch := self._take():
                if not self._write(batch):
                    return False
            self._report_drops()
        return True

    def _take(self) -> list[dict[str, Any]]:
        """The next bucket's records, failed ones first. Under the lock ``add`` drops records
        under: it may take the very record looked at (an IndexError on an emptied queue
        would end the writer thread)."""
        items: list[dict[str, Any]] = []
        size = 0
        with self._count:
            for queue in (self._failed, self._other):
                while queue and len(items) < self.batch:
                    entry = queue[0]
                    cost = entry_bytes(entry)
                    if items and size + cost > self.batch_bytes:
                        return items
                    items.append(queue.popleft())
                    size += cost
        return items

    def _write(self, entries: list[dict[str, Any]]) -> bool:
        import pymongo

        try:
            with pymongo.timeout(self.write_timeout):
                if not self._indexed:
                    self.store.ensure_log_index()
                    self._indexed = True
                append_records(self.store, entries)
        except Exception as exc:
            unreachable = database_unreachable(exc)
            if self.on_write_error is not None:
                self.on_write_error("unavailable" if unreachable else "refused")
            if not unreachable:
                # The database answered and refused: retrying the bucket cannot help, and
                # one record it will never take must not hold up all the others.
                self._write_one_by_one(entries, exc)
                return True
            # Back to the front, in order: the next try writes them first.
            with self._count:
                for entry in reversed(entries):
                    failed = entry.get("outcome") == "failed"
                    (self._failed if failed else self._other).appendleft(entry)
            self._backoff = min(5.0, self._backoff * 2 or 0.5)
            self._retry_at = time.monotonic() + self._backoff
            log.warning(
                "could not write %d delivery records (%s); %d wait (%.1f MB), retry in %.1f s",
                len(entries),
                exc.__class__.__name__,
                self.pending,
                self._bytes / 1e6,
                self._backoff,
            )
            self._report_drops()
            return False
        with self._count:
            self._bytes -= sum(entry_bytes(e) for e in entries)
        self._backoff = 0.0
        return True

    def _write_one_by_one(self, entries: list[dict[str, Any]], exc: Exception) -> None:
        import pymongo

        refused = 0
        for entry in entries:
            try:
                with pymongo.timeout(self.write_timeout):
                    append_records(self.store, [entry])
            except Exception:
                refused += 1
                self.dropped[f"refused {entry.get('outcome')}"] += 1
        with self._count:
            self._bytes -= sum(entry_bytes(e) for e in entries)
        if refused:
            log.warning(
                "the database refused %d delivery records (%s); they were dropped",
                refused,
                exc.__class__.__name__,
            )

    def _report_drops(self) -> None:
        total = sum(self.dropped.values())
        if total > self._dropped_reported:
            log.warning(
                "the delivery log was full and dropped %d records so far (%s); "
                "Svix retries failed deliveries, so their next attempt is recorded",
                total,
                ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())),
            )
            self._dropped_reported = total

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            if time.monotonic() < self._retry_at:
                continue
            self.flush_now()
        self.flush_now()
