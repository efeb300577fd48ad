"""Pacing and retrying Clerk calls: a sliding-window pacer for the instance limit, Clerk's
per-user window, and the one retry policy every Clerk write goes through.

Clerk counts requests in a sliding 10 s window (100 on development instances, 1000 on
production). A smooth token bucket at 95% of that spreads over ten seconds what the window
would have taken at once, so a job of 260 requests paid 28 s where the window allows 20.
The pacer here keeps the send times of the trailing window instead: a request goes as soon
as fewer than ``allowed`` went in the last ``window`` seconds, so a small job goes at once
and a large one fills each window to 95% and never past the limit, whatever the arrival
pattern. The receiver's write-back workers and the bulk jobs share one per process.

Clock and sleep are passed in, so the tests run all of it on a virtual clock.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clerksync.errors import ClerkApiError

WINDOW = 10.0  # seconds: Clerk's instance and per-user windows
#: the longest ``Retry-After`` obeyed: a 429 asking for a day (or 1e9 s) is a broken
#: header, and a paused pacer would hold every write-back (and shutdown) hostage
MAX_RETRY_AFTER = 60.0


class SlidingWindowPacer:
    """At most ``allowed`` requests in any trailing ``window`` seconds; ``pause`` obeys a 429."""

    def __init__(
        self,
        allowed: int,
        window: float = WINDOW,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if allowed < 1 or (burst is not None and burst < 1):
            raise ValueError("a pacer must allow at least one request per window")
        self.allowed = allowed
        self.window = window
        #: at most ``burst`` in any trailing second as well (None: no such limit), for callers
        #: that share a database with a latency-sensitive path (the receiver's workers)
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.sent: collections.deque[float] = collections.deque()
        self.recent: collections.deque[float] = collections.deque()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    @staticmethod
    def _window_wait(
        sent: collections.deque[float], allowed: int, window: float, now: float
    ) -> float:
        # One comparison for both the expiry and the wait (``sent[0] + window``): with
        # ``sent[0] <= now - window`` float rounding could both keep a send and wait 0 s.
        while sent and sent[0] + window <= now:
            sent.popleft()
        if len(sent) < allowed:
            return 0.0
        return sent[0] + window - now

    def _wait(self, now: float) -> float:
        """Seconds until a request may go (0: now). Caller holds the lock."""
        if now < self.paused_until:
            return self.paused_until - now
        wait = self._window_wait(self.sent, self.allowed, self.window, now)
        if self.burst is not None:
            wait = max(wait, self._window_wait(self.recent, self.burst, 1.0, now))
        return wait

    def acquire(self) -> None:
        """Block until one request may go, and count it as sent now."""
        while True:
            with self.lock:
                now = self.clock()
                wait = self._wait(now)
                if wait <= 0:
                    self.sent.append(now)
                    if self.burst is not None:
                        self.recent.append(now)
                    return
            # Sleep outside the lock; wake a hair late rather than early (float error
            # would otherwise spin on a wait of 1e-15 s).
            self.sleep(max(wait, 1e-6))

    def pause(self, seconds: float) -> None:
        """Clerk answered 429: nobody sends for ``seconds`` (already capped by the caller)."""
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)


def instance_pacer(
    rate: float,
    *,
    smooth: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SlidingWindowPacer:
    """A pacer for ``rate`` requests per second on average: ``rate * 10`` per 10 s window.

    ``clerk.default_rate`` is 95% of the key's limit, so the default paces at 95 (or 950)
    requests in any trailing 10 s. ``smooth`` also caps any second at twice the rate: the
    receiver's workers use it, so a window's worth of write-backs (each a few writes) does
    not land on the database at once while it takes deliveries; a bulk job wants the burst."""
    allowed = max(1, math.floor(rate * WINDOW + 1e-9))
    burst = max(1, math.ceil(rate * 2)) if smooth else None
    return SlidingWindowPacer(allowed, WINDOW, burst=burst, clock=clock, sleep=sleep)


@dataclass
class RetryPolicy:
    """When to try a failed Clerk call again: exponential backoff with full jitter for 5xx and
    network failures, Clerk's ``Retry-After`` (capped, jittered) for 429, never for the rest.

    ``delay`` answers for one failure; ``attempts`` bounds the callers that retry inline
    (promote/demote, the bulk jobs); the write-back workers instead defer the user by
    ``delay`` and free the thread, so they retry without bound, backing off to ``cap``.
    """

    base: float = 0.5
    cap: float = 300.0
    attempts: int = 6
    max_retry_after: float = MAX_RETRY_AFTER
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, exc: ClerkApiError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0), or None
        when retrying cannot help (4xx other than 429)."""
        if not exc.retryable:
            return None
        if exc.status == 429:
            asked = exc.retry_after if exc.retry_after is not None else 1.0
            wait = min(max(asked, 0.0), self.max_retry_after)
            # Up to 10% later: processes told the same Retry-After do not return together.
            return wait + self.rng.uniform(0, 0.1 * wait + 0.05)
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        """The jittered exponential wait before attempt ``attempt + 1``, up to ``cap``."""
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return self.rng.uniform(min(self.base, ceiling), ceiling)


class PerUserWindow:
    """Clerk's 10 metadata writes per user per 10 s, decided from the times of a user's
    recent writes (kept on the document, so every process sees the same history)."""

    def __init__(self, limit: int = 10, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window

    def wait(self, recent: list[float], now: float) -> float:
        """Seconds until one more write keeps ``recent`` (epoch seconds) within the limit."""
        inside = sorted(t for t in recent if t > now - self.window)
        if len(inside) < self.limit:
            return 0.0
        return inside[-self.limit] + self.window - now
