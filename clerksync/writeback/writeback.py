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

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clerksync.clerk.gateway import ClerkGateway
from clerksync.clerk.pacing import PerUserWindow, RetryPolicy, SlidingWindowPacer, instance_pacer
from clerksync.errors import ClerkApiError
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.users import clerk_copy_differs, wanted_metadata
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from clerksync.writeback.queue import Key, WriteBackQueue

log = logging.getLogger("clerksync.writeback")


#: failures that are not Clerk's (a document the code cannot handle) before a user is parked
PARK_AFTER = 5


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


class InstanceGuard:
    """Is the key's Clerk instance the one this database is synced with
    (``clerksync.instance``)? A key of another instance answers 404 for every user, and a
    404 drops the write-back: with the wrong key every signup's write-back would be lost.
    So the workers check before they start, promote/demote before they write, and any 404
    is believed only once the instance is known to be the same. An unbound database has
    nothing to compare with: it passes, but a 404 is not believed on it (``unbound_ok``).
    Answers are kept ``ttl`` seconds."""

    def __init__(self, store: Store, gateway: ClerkGateway, *, ttl: float = 60.0) -> None:
        self.store = store
        self.gateway = gateway
        self.ttl = ttl
        self._answer: tuple[float, str | None] | None = None
        self._lock = threading.Lock()
        #: ``problem``'s answer for an unbound database (a delivery binds it in a moment)
        self.unbound = (
            f"database {store.name!r} is bound to no Clerk instance yet, so a 404 cannot "
            "tell a user gone from Clerk from a key of another instance"
        )

    def problem(self, *, fresh: bool = False, unbound_ok: bool = True) -> str | None:
        """Why this key must not write back to this database, or None. Raises when Clerk
        or the database cannot be asked (the caller decides what that means). Without
        ``unbound_ok``, a database bound to no instance yet is a reason too: a receiver's
        first deliveries are handed to the workers as their instance is being bound."""
        from clerksync.store.instance import bound_instance

        with self._lock:
            if not fresh and self._answer is not None:
                at, answer = self._answer
                if time.monotonic() - at < self.ttl:
                    return answer
        bound = bound_instance(self.store)
        if bound is None:
            # Not bound yet (a delivery or a bulk job binds it): nothing is kept, so the next
            # question reads again (one read of the database, no request to Clerk).
            return None if unbound_ok else self.unbound
        answer = None
        current = str(self.gateway.get_instance()["id"])
        if bound.get("instanceId") != current:
            answer = (
                f"database {self.store.name!r} is synced with Clerk instance "
                f"{bound.get('instanceId')}, but CLERK_SECRET_KEY and CLERK_API_URL reach "
                f"{current}"
            )
        with self._lock:
            self._answer = (time.monotonic(), answer)
        return answer


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
    guard: InstanceGuard | None = None,
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
        return write_claimed(queue, gateway, doc, limits, inline=inline, guard=guard)
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
    guard: InstanceGuard | None = None,
) -> WriteBack:
    """The write-back of one user this process has claimed (its lease held by the caller).

    ``clerk_copy`` is Clerk's ``publicMetadata`` when the caller just read it
    (sync-metadata); otherwise the copy last seen (``clerksync.metadata``) decides.
    ``finish`` replaces ``queue.finish`` for callers that finish many users in one bulk
    write (they keep the leases until then). ``guard``: a 404 drops the user only once the
    key is known to reach the database's Clerk instance."""
    try:
        return _write_claimed(
            queue,
            gateway,
            doc,
            limits,
            clerk_copy=clerk_copy,
            inline=inline,
            finish=finish or queue.finish,
            guard=guard,
        )
    except ClerkApiError:
        raise
    except Exception as exc:
        from clerksync.store.mongo import database_unreachable

        error = f"{exc.__class__.__name__}"
        if database_unreachable(exc):
            # The database away or slow: nothing is wrong with the user. Try again later,
            # counted as neither Clerk's failure nor a fault, so it never parks.
            retry_at = utcnow() + timedelta(seconds=limits.policy.base)
            queue.defer(doc, retry_at, error, failed=False)
            return WriteBack("deferred", error=error, retry_at=retry_at)
        # Not Clerk's failure: this document. Back off, then park it. Counted apart from
        # Clerk's failures (``clerksync.attempts``), which must never park a user.
        faults = int(bk.field(doc, bk.FAULTS) or 0) + 1
        if faults >= PARK_AFTER:
            queue.park(doc, error)
            log.warning("write-back parked id=%s: %s", doc["_id"], error)
            return WriteBack("parked", error=error)
        delay = limits.policy.delay(faults, ClerkApiError(error, status=0)) or 1.0
        retry_at = utcnow() + timedelta(seconds=delay)
        queue.defer(doc, retry_at, error, fault=True)
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
    guard: InstanceGuard | None,
) -> WriteBack:
    known = clerk_copy if clerk_copy is not None else (bk.field(doc, bk.SEEN) or {})
    schema = queue.schema
    if not clerk_copy_differs(known, doc, schema.users):
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
            copy = gateway.update_metadata(clerk_id, wanted_metadata(doc, schema.users))
            break
        except ClerkApiError as exc:
            if exc.status == 404 and guard is not None:
                try:
                    problem = guard.problem(unbound_ok=False)
                except Exception as check:  # cannot tell: keep the user, ask again later
                    problem = f"could not check the Clerk instance ({check.__class__.__name__})"
                if problem is not None:
                    # Unbound: the delivery that marked the user binds it in a moment (a
                    # worker's poll may claim the user first): asked again soon, backing off.
                    # A key of another instance waits for the operator.
                    soon = problem == guard.unbound
                    wait = limits.policy.backoff(attempt) if soon else limits.policy.cap
                    problem += ": the write-back waits for the right key"
                    retry_at = utcnow() + timedelta(seconds=wait)
                    queue.defer(doc, retry_at, problem, failed=soon)
                    log.error("write-back held user=%s: %s", clerk_id, problem)
                    return WriteBack("deferred", error=problem, retry_at=retry_at)
            if exc.status == 404:
                queue.drop(doc, "user not found in Clerk")
                log.info("write-back dropped user=%s: not in Clerk", clerk_id)
                return WriteBack("dropped", error=str(exc))
            delay = limits.policy.delay(attempt, exc)
            if delay is None and exc.status in (401, 403):
                # A wrong key: nothing about the user is wrong; wait for the operator.
                delay = limits.policy.cap
            if delay is None:
                queue.park(doc, str(exc))
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
