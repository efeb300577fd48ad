"""The instance bucket against Clerk's limit, on a virtual clock (no real waiting)."""

from __future__ import annotations

import collections

import pytest

from clerksync.clerk import default_rate
from clerksync.ratelimit import instance_bucket


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("key", "limit"), [("sk_test_" + "x" * 40, 100), ("sk_live_" + "x" * 40, 1000)]
)
def test_default_rate_never_exceeds_the_instance_limit_in_any_window(key: str, limit: int) -> None:
    clock = VirtualClock()
    bucket = instance_bucket(default_rate(key), clock=clock, sleep=clock.sleep)
    sent: collections.deque[float] = collections.deque()
    busiest = 0
    for _ in range(limit * 4):  # as fast as the bucket lets a caller go, for ~40 s
        bucket.acquire()
        sent.append(clock.now)
        while sent[0] <= clock.now - 10.0:
            sent.popleft()
        busiest = max(busiest, len(sent))
    assert busiest <= limit  # the promise: under the limit however requests bunch
    assert busiest >= 0.9 * limit  # and not needlessly far under it
    assert clock.now == pytest.approx((limit * 4) / default_rate(key), rel=0.02)


def test_a_429_pauses_everyone_for_its_retry_after() -> None:
    clock = VirtualClock()
    bucket = instance_bucket(10.0, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.pause(3.0)
    bucket.acquire()
    assert clock.now >= 3.0
