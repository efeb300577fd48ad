"""The receiver's write-back workers: a few threads that write back the users handed to
them in memory (no polling) and those a slow indexed sweep finds."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from clerksync.clerk.gateway import ClerkGateway
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow
from clerksync.writeback.queue import Key, queue_of
from clerksync.writeback.writeback import (
    InstanceGuard,
    LeaseKeeper,
    Limits,
    default_limits,
    write_back,
)

log = logging.getLogger("clerksync.writeback")


#: the most keys the in-memory hand-off holds; past it the sweep finds the rest
MAX_QUEUED = 50_000


class WriteBackWorkers:
    """A few threads that write back the users handed to them (``submit``) and those the
    sweep finds, until stopped. ``wake()`` asks for a sweep now. ``on_result`` is told each
    write-back's outcome (``error``: the claim itself failed), for the receiver's metrics."""

    def __init__(
        self,
        store: Store,
        gateway: ClerkGateway,
        *,
        threads: int = 4,
        rate: float = 9.0,
        poll: float = 5.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        limits: Limits | None = None,
        sweep_batch: int = 5000,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_result = on_result
        self.queue = queue_of(store)
        self.gateway = gateway
        self.threads = threads
        self.poll = poll
        self.sweep_batch = sweep_batch
        self.limits = limits or default_limits(
            rate, base_delay=base_delay, max_delay=max_delay, smooth=True
        )
        self.keeper = LeaseKeeper(self.queue)
        self.guard = InstanceGuard(store, gateway)
        #: why the workers did not start (the key is for another Clerk instance), or None
        self.refused: str | None = None
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
        """Start the threads, once the key is known to reach the database's Clerk instance
        (checked off the caller's thread: ``GET /instance`` must not hold up the receiver).
        Against another instance nothing starts: an error is logged, the marks stay for a
        right key (``doctor`` counts them as pending)."""
        self._spawn(self._start_checked, "clerksync-writeback-start")

    def _start_checked(self) -> None:
        try:
            self.refused = self.guard.problem(fresh=True)
        except Exception as exc:
            # Clerk or the database cannot be asked now: start; every 404 is checked again.
            log.warning("could not check the Clerk instance: %s", exc.__class__.__name__)
        if self.refused is not None:
            log.error(
                "write-back workers not started: %s. No write-back goes to Clerk, the marks "
                "stay. Fix the key, or run `clerksync reconcile --rebind` if the database "
                "really moved.",
                self.refused,
            )
            return
        if self._stop.is_set():
            return
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

    def _tell(self, outcome: str) -> None:
        if self.on_result is not None:
            with contextlib.suppress(Exception):  # counting must never stop a worker
                self.on_result(outcome)

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
                result = write_back(
                    self.queue, self.gateway, key, self.limits, self.keeper, guard=self.guard
                )
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
                self._tell("error")
                self.submit(key)
                continue
            self._tell(result.outcome)
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
