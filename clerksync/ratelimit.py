"""Rate limiting for Clerk calls: an instance-wide token bucket and Clerk's per-user window.

Shared by the receiver's write-back workers and the bulk jobs, so both stay
under 100 (development) or 1000 (production) requests per 10 s and under 10
metadata writes per user per 10 s, and both slow down when Clerk says 429.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` requests per second with bursts of ``burst``; ``pause`` obeys a Retry-After."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.updated = clock()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def acquire(self) -> None:
        """Block until one request may go."""
        while True:
            with self.lock:
                now = self.clock()
                if now < self.paused_until:
                    wait = self.paused_until - now
                else:
                    self._refill(now)
                    if self.tokens >= 1 - 1e-9:  # tolerate float error in the refill
                        self.tokens -= 1
                        return
                    wait = (1 - self.tokens) / self.rate
            self.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Clerk answered 429: nobody sends until ``seconds`` have passed, then refill slowly."""
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)
            self.tokens = 0
            self.updated = self.paused_until


def instance_bucket(
    rate: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenBucket:
    """A bucket for Clerk's instance limit at ``rate`` requests per second.

    Its burst is a tenth of a second's worth (at least one request), so in any
    10 s window it sends at most ``10.1 * rate``: a rate set at 95% of a
    per-10 s limit stays under the limit however the requests bunch up.
    """
    return TokenBucket(rate, burst=max(1.0, rate / 10), clock=clock, sleep=sleep)


class PerUserWindow:
    """At most ``limit`` writes per user per ``window`` seconds (Clerk's metadata limit)."""

    def __init__(self, limit: int = 10, window: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self.hits: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.lock = threading.Lock()

    def delay(self, user_id: str) -> float:
        """0 and a recorded hit when a write may go now, else the seconds until one may."""
        with self.lock:
            now = time.monotonic()
            hits = self.hits[user_id]
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            if len(self.hits) > 10_000:  # forget idle users so memory stays bounded
                for key in [k for k, v in self.hits.items() if not v]:
                    del self.hits[key]
            return 0.0
