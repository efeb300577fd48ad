"""The metadata write-back: Clerk's ``publicMetadata`` gets ``{userMongoId, isAdmin}``.

It runs after the webhook's 2xx, from durable state: the receiver marks a user due
(``clerksync.dueAt``) in the same write that stores it and hands the user's key to these
workers in memory, so claiming costs ingest no database time: no polling, no scan of the
queue. A slow sweep (a plain indexed find, when the hand-off queue is idle: at start and
every ``poll`` seconds) picks up the rest: marks left by a restart, another process or a
bulk job. A claim is a short lease renewed while the write runs (``LeaseKeeper``), so two
processes never write one user at once and a killed process holds nobody for more than
``writeback_queue.LEASE``.

``write_back`` is the one path to Clerk for a user's metadata: the workers, promote/demote
and sync-metadata all go through it, with one pacer, one per-user window and one retry
policy. Only what differs is written: Clerk answers our write with a ``user.updated``
delivery, and writing again on that echo would loop forever.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clerksync import bookkeeping as bk
from clerksync.clerk import ClerkGateway
from clerksync.errors import ClerkApiError
from clerksync.mongo import utcnow
from clerksync.ratelimit import PerUserWindow, RetryPolicy, SlidingWindowPacer, instance_pacer
from clerksync.store import UserStore
from clerksync.users import clerk_copy_differs, wanted_metadata
from clerksync.writeback_queue import Key, WriteBackQueue

log = logging.getLogger("clerksync.writeback")

#: failures that are not Clerk's (a document the code cannot handle) before a user is parked
PARK_AFTER = 5
#: the most keys the in-memory hand-off holds; past it the sweep finds the rest
MAX_QUEUED = 50_000


class LeaseKeeper:
    """Renews this process's leases while their writes run, every third of a lease."""

    def __init__(self, queue: WriteBackQueue) -> None:
        self.queue = queue
        self.interval = queue.lease.total_seconds() / 3
        self.held: dict[Any, int] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, doc_id: Any) -> None:
        with self.lock:
            self.held[doc_id] = self.held.get(doc_id, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="clerksync-lease", daemon=True
                )
                self._thread.start()

    def let_go(self, doc_id: Any) -> None:
        with self.lock:
            left = self.held.get(doc_id, 0) - 1
            if left > 0:
                self.held[doc_id] = left
            else:
                self.held.pop(doc_id, None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                ids = list(self.held)
            if not ids:
                continue
            try:
                self.queue.renew(ids)
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("lease renewal failed: %s", exc.__class__.__name__)


@dataclass(frozen=True)
class WriteBack:
    """What ``write_back`` did: ``written``, ``unchanged`` (Clerk already agreed), ``busy``
    (not due, or another process holds it), ``deferred`` (retry at ``retry_at``),
    ``dropped`` (gone from Clerk) or ``parked``. ``remarked``: the user changed while we
    wrote, its mark stays and it should be written again now."""

    outcome: str
    error: str | None = None
    copy: Mapping[str, Any] | None = None
    retry_at: datetime | None = None
    remarked: bool = False


@dataclass
class Limits:
    """The pacing every write-back obeys: one per process, shared by workers and jobs."""

    pacer: SlidingWindowPacer
    policy: RetryPolicy
    per_user: PerUserWindow


Finish = Callable[[list[tuple[Mapping[str, Any], Mapping[str, Any], bool]]], int]


def write_back(
    queue: WriteBackQueue,
    gateway: ClerkGateway,
    key: Key,
    limits: Limits,
    keeper: LeaseKeeper,
    *,
    due_only: bool = True,
    inline: bool = False,
) -> WriteBack:
    """Claim one user, bring its Clerk metadata in line, finish or defer it: the workers'
    and promote/demote's path (sync-metadata claims a batch at once and calls
    ``write_claimed`` for each).

    ``inline`` callers (promote/demote, sync-metadata) wait out the per-user window and retry
    in place up to ``limits.policy.attempts``; the workers defer instead and free the thread.
    """
    doc = queue.claim(key, due_only=due_only)
    if doc is None:
        return WriteBack("busy")
    keeper.hold(doc["_id"])
    try:
        return write_claimed(queue, gateway, doc, limits, inline=inline)
    finally:
        keeper.let_go(doc["_id"])


def write_claimed(
    queue: WriteBackQueue,
    gateway: ClerkGateway,
    doc: Mapping[str, Any],
    limits: Limits,
    *,
    clerk_copy: Mapping[str, Any] | None = None,
    inline: bool = False,
    finish: Finish | None = None,
) -> WriteBack:
    """The write-back of one user this process has claimed (its lease held by the caller).

    ``clerk_copy`` is Clerk's ``publicMetadata`` when the caller just read it
    (sync-metadata); otherwise the copy last seen (``clerksync.metadata``) decides.
    ``finish`` replaces ``queue.finish`` for callers that finish many users in one bulk
    write (they keep the leases until then)."""
    try:
        return _write_claimed(
            queue,
            gateway,
            doc,
            limits,
            clerk_copy=clerk_copy,
            inline=inline,
            finish=finish or queue.finish,
        )
    except ClerkApiError:
        raise
    except Exception as exc:
        # Not Clerk's failure: this document or the database. Back off, then park it.
        attempts = int(bk.field(doc, bk.ATTEMPTS) or 0) + 1
        error = f"{exc.__class__.__name__}"
        if attempts >= PARK_AFTER:
            queue.park({"_id": doc["_id"]}, error)
            log.warning("write-back parked id=%s: %s", doc["_id"], error)
            return WriteBack("parked", error=error)
        delay = limits.policy.delay(attempts, ClerkApiError(error, status=0)) or 1.0
        retry_at = utcnow() + timedelta(seconds=delay)
        queue.defer(doc, retry_at, error)
        return WriteBack("deferred", error=error, retry_at=retry_at)


def _write_claimed(
    queue: WriteBackQueue,
    gateway: ClerkGateway,
    doc: Mapping[str, Any],
    limits: Limits,
    *,
    clerk_copy: Mapping[str, Any] | None,
    inline: bool,
    finish: Finish,
) -> WriteBack:
    known = clerk_copy if clerk_copy is not None else (bk.field(doc, bk.SEEN) or {})
    schema = queue.schema
    if not clerk_copy_differs(known, doc, schema):
        remarked = finish([(doc, known, False)]) > 0
        return WriteBack("unchanged", copy=known, remarked=remarked)
    clerk_id = doc[schema.users.clerk_id]
    recent = [t for t in bk.field(doc, bk.WRITES) or [] if isinstance(t, (int, float))]
    wait = limits.per_user.wait(recent, time.time())
    if wait > 0:
        if not inline:
            retry_at = utcnow() + timedelta(seconds=wait)
            queue.defer(doc, retry_at, "per-user rate limit", failed=False)
            return WriteBack("deferred", error="per-user rate limit", retry_at=retry_at)
        limits.policy.sleep(wait)
    attempt = 0 if inline else int(bk.field(doc, bk.ATTEMPTS) or 0)
    while True:
        limits.pacer.acquire()
        try:
            copy = gateway.update_metadata(clerk_id, wanted_metadata(doc, schema))
            break
        except ClerkApiError as exc:
            if exc.status == 404:
                queue.drop(doc, "user not found in Clerk")
                log.info("write-back dropped user=%s: not in Clerk", clerk_id)
                return WriteBack("dropped", error=str(exc))
            delay = limits.policy.delay(attempt, exc)
            if delay is None and exc.status in (401, 403):
                # A wrong key: nothing about the user is wrong; wait for the operator.
                delay = limits.policy.cap
            if delay is None:
                queue.park({"_id": doc["_id"]}, str(exc))
                log.warning("write-back parked user=%s: %s", clerk_id, exc)
                return WriteBack("parked", error=str(exc))
            if exc.status == 429:
                limits.pacer.pause(delay)
            attempt += 1
            if inline and attempt < limits.policy.attempts:
                limits.policy.sleep(delay)
                continue
            retry_at = utcnow() + timedelta(seconds=delay)
            queue.defer(doc, retry_at, str(exc))
            log.info("write-back deferred user=%s status=%s in %.1fs", clerk_id, exc.status, delay)
            return WriteBack("deferred", error=str(exc), retry_at=retry_at)
    remarked = finish([(doc, copy, True)]) > 0
    log.info("write-back done user=%s", clerk_id)
    return WriteBack("written", copy=copy, remarked=remarked)


def default_limits(
    rate: float, *, base_delay: float = 1.0, max_delay: float = 300.0, smooth: bool = False
) -> Limits:
    return Limits(
        pacer=instance_pacer(rate, smooth=smooth),
        policy=RetryPolicy(base=base_delay, cap=max_delay),
        per_user=PerUserWindow(),
    )


class WriteBackWorkers:
    """A few threads that write back the users handed to them (``submit``) and those the
    sweep finds, until stopped. ``wake()`` asks for a sweep now."""

    def __init__(
        self,
        store: UserStore,
        gateway: ClerkGateway,
        *,
        threads: int = 4,
        rate: float = 9.0,
        poll: float = 5.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        limits: Limits | None = None,
        sweep_batch: int = 5000,
    ) -> None:
        self.store = store
        self.queue = store.queue
        self.gateway = gateway
        self.threads = threads
        self.poll = poll
        self.sweep_batch = sweep_batch
        self.limits = limits or default_limits(
            rate, base_delay=base_delay, max_delay=max_delay, smooth=True
        )
        self.keeper = LeaseKeeper(self.queue)
        self._heap: list[tuple[float, int, tuple[str, Any]]] = []
        self._queued: dict[tuple[str, Any], float] = {}  # key -> when it is ready
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._sweep = threading.Event()
        self._stop = threading.Event()
        # keys whose claim the database refused: how often, and not before when (monotonic)
        self._failures: dict[tuple[str, Any], tuple[int, float]] = {}
        self._threads: list[threading.Thread] = []

    # -- the hand-off ------------------------------------------------------------------------

    def submit(self, key: Key, at: datetime | None = None) -> None:
        """Write this user back (at ``at``, else now): the receiver calls it after marking."""
        [(name, value)] = key.items()
        delay = (at - utcnow()).total_seconds() if at is not None else 0.0
        ready = time.monotonic() + max(0.0, delay)
        item = (name, value)
        with self._cond:
            _, not_before = self._failures.get(item, (0, 0.0))
            ready = max(ready, not_before)  # the sweep finds it again: keep its backoff
            queued = self._queued.get(item)
            if queued is not None and queued <= ready:
                return  # already queued, as early or earlier
            if queued is None and len(self._queued) >= MAX_QUEUED:
                return  # the sweep finds it later
            # An earlier time replaces a later one (a user re-marked while it waited for a
            # lease): the old heap entry stays and is skipped when it comes up.
            self._queued[item] = ready
            heapq.heappush(self._heap, (ready, next(self._order), item))
            self._cond.notify()

    def wake(self) -> None:
        self._sweep.set()

    def start(self) -> None:
        for n in range(self.threads):
            self._spawn(self._run, f"clerksync-writeback-{n}")
        self._spawn(self._sweeper, "clerksync-writeback-sweep")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._sweep.set()
        with self._cond:
            self._cond.notify_all()
        self.keeper.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- threads -----------------------------------------------------------------------------

    def _idle(self) -> bool:
        with self._cond:
            return not self._heap or self._heap[0][0] > time.monotonic()

    def _sweeper(self) -> None:
        """Sweep at start, then every ``poll`` s while nothing handed off is waiting."""
        while not self._stop.is_set():
            if self._idle():
                try:
                    for doc_id, ready_at in self.queue.sweep(self.sweep_batch):
                        self.submit({"_id": doc_id}, ready_at)
                except Exception as exc:  # database away: the next sweep tries again
                    log.warning("write-back sweep failed: %s", exc.__class__.__name__)
            self._sweep.wait(self.poll)
            self._sweep.clear()

    def _next(self) -> tuple[str, Any] | None:
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    ready, _, key = heapq.heappop(self._heap)
                    if self._queued.get(key) != ready:
                        continue  # replaced by an earlier entry, already taken
                    del self._queued[key]
                    return key
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)
        return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            key = {item[0]: item[1]}
            try:
                result = write_back(self.queue, self.gateway, key, self.limits, self.keeper)
                if item in self._failures:
                    with self._cond:
                        self._failures.pop(item, None)
            except Exception as exc:
                # A claim the database refuses (a document it cannot update, or the
                # database away): try this user again later, backing off, and go on
                # with the others.
                failures = self._failures.get(item, (0, 0.0))[0] + 1
                with self._cond:
                    self._failures[item] = (failures, time.monotonic() + min(600.0, 2.0**failures))
                log.warning("write-back claim failed key=%s: %s", item[1], exc.__class__.__name__)
                self.submit(key)
                continue
            if result.remarked:
                self.submit(key)
            elif result.outcome == "deferred":
                self.submit(key, result.retry_at)
            elif result.outcome == "busy":
                try:
                    retry_at = self.queue.next_try(key)
                except Exception:
                    retry_at = None
                if retry_at is not None:
                    self.submit(key, retry_at)
