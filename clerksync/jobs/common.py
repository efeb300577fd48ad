"""What every bulk job shares: one paced, retried Clerk request, batches, progress."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from clerksync.clerk.pacing import RetryPolicy, SlidingWindowPacer
from clerksync.errors import ClerkApiError

T = TypeVar("T")


# Documents per cursor batch: pymongo's default grows to 16 MB a batch, which makes
# memory grow with the collection; a fixed batch keeps it flat.
CURSOR_BATCH = 1000


Progress = Callable[[int, int | None], None]


def call_with_retries(
    fn: Callable[[], T], pacer: SlidingWindowPacer, *, policy: RetryPolicy | None = None
) -> T:
    """One Clerk request under the pacer, retried by the one retry policy: a 429 pauses the
    pacer for its (capped) Retry-After, a 5xx or a network failure backs off with jitter."""
    policy = policy or RetryPolicy()
    for attempt in range(policy.attempts):
        pacer.acquire()
        try:
            return fn()
        except ClerkApiError as exc:
            delay = policy.delay(attempt, exc)
            if delay is None or attempt == policy.attempts - 1:
                raise
            if exc.status == 429:
                pacer.pause(delay)
            else:
                policy.sleep(delay)
    raise AssertionError("unreachable")


def batches(cursor: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in cursor:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
