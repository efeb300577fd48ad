"""The metadata write-back: Clerk's ``publicMetadata`` gets ``{userMongoId, isAdmin}``.

It runs after the webhook's 2xx, from durable state: the receiver marks a
user due (``clerksync.dueAt``) in the same write that stores it, and these workers claim
due users (the claim is a lease, so two processes never write one user at
once), call Clerk, and clear the mark. A crash, a restart or a Clerk outage
leaves the mark in place, and the next worker, or ``sync-metadata``, finishes
the job. Only what differs is written: Clerk answers our write with a
``user.updated`` delivery, and writing again on that echo would loop forever.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from clerksync import bookkeeping as bk
from clerksync.clerk import ClerkGateway
from clerksync.errors import ClerkApiError
from clerksync.mongo import utcnow
from clerksync.ratelimit import PerUserWindow, TokenBucket, instance_bucket
from clerksync.store import UserStore
from clerksync.users import metadata_differs, wanted_metadata

log = logging.getLogger("clerksync.writeback")

LEASE = timedelta(seconds=60)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: retries from many users do not stampede Clerk."""
    return random.uniform(base, min(cap, base * 2 ** min(attempt, 20)))


def write_back_one(
    store: UserStore,
    gateway: ClerkGateway,
    doc: Mapping[str, Any],
    *,
    bucket: TokenBucket | None = None,
    per_user: PerUserWindow | None = None,
    base_delay: float = 1.0,
    max_delay: float = 300.0,
) -> str:
    """Bring one claimed user's Clerk metadata in line. Returns what happened, for logs/tests:
    ``unchanged`` (Clerk already agreed), ``written``, ``deferred`` or ``dropped``."""
    if not metadata_differs(doc, store.schema):
        store.finish_write_back(doc, bk.field(doc, bk.SEEN) or {})
        return "unchanged"
    clerk_id = doc[store.schema.users.clerk_id]
    if per_user is not None:
        wait = per_user.delay(clerk_id)
        if wait > 0:
            store.defer_write_back(doc, utcnow() + timedelta(seconds=wait), "per-user rate limit")
            return "deferred"
    if bucket is not None:
        bucket.acquire()
    try:
        copy = gateway.update_metadata(clerk_id, wanted_metadata(doc, store.schema))
    except ClerkApiError as exc:
        if exc.status == 404:
            store.drop_write_back(doc, "user not found in Clerk")
            log.info("write-back dropped user=%s: not in Clerk", clerk_id)
            return "dropped"
        if exc.status == 429 and exc.retry_after is not None:
            delay = exc.retry_after
            if bucket is not None:
                bucket.pause(delay)
        else:
            delay = backoff(int(bk.field(doc, bk.ATTEMPTS) or 0), base_delay, max_delay)
        store.defer_write_back(doc, utcnow() + timedelta(seconds=delay), str(exc))
        log.info("write-back deferred user=%s status=%s in %.1fs", clerk_id, exc.status, delay)
        return "deferred"
    store.finish_write_back(doc, copy)
    log.info("write-back done user=%s", clerk_id)
    return "written"


class WriteBackWorkers:
    """A few threads that drain due write-backs until stopped. ``wake()`` after a new mark."""

    def __init__(
        self,
        store: UserStore,
        gateway: ClerkGateway,
        *,
        threads: int = 4,
        rate: float = 9.0,
        poll: float = 1.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.threads = threads
        self.poll = poll
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.bucket = instance_bucket(rate)
        self.per_user = PerUserWindow()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(
                target=self._run, name=f"clerksync-writeback-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                doc = self.store.claim_write_back(LEASE)
            except Exception as exc:  # database away: wait and try again, never die
                log.warning("write-back claim failed: %s", exc.__class__.__name__)
                doc = None
            if doc is None:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            try:
                write_back_one(
                    self.store,
                    self.gateway,
                    doc,
                    bucket=self.bucket,
                    per_user=self.per_user,
                    base_delay=self.base_delay,
                    max_delay=self.max_delay,
                )
            except Exception as exc:  # the lease runs out and another attempt follows
                log.warning(
                    "write-back failed user=%s: %s",
                    doc.get(self.store.schema.users.clerk_id),
                    exc.__class__.__name__,
                )
