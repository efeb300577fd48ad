"""The pacer, the per-user window and the retry policy, on a virtual clock (no real waiting)."""

from __future__ import annotations

import bisect
import random

import pytest

from clerksync.clerk.gateway import default_rate
from clerksync.clerk.pacing import PerUserWindow, RetryPolicy, instance_pacer
from clerksync.errors import ClerkApiError


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def busiest_window(times: list[float], window: float = 10.0) -> int:
    """The most sends in any window [t, t + window) over all start times."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def arrivals(pattern: str, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    if pattern == "all at once":
        return [0.0] * n
    if pattern == "steady":
        return [i * 0.05 for i in range(n)]
    if pattern == "bursts at window edges":
        return [10.0 * (i // 50) + (9.99 if i % 2 else 0.0) for i in range(n)]
    return sorted(rng.uniform(0, 60) for _ in range(n))  # random


@pytest.mark.parametrize("pattern", ["all at once", "steady", "bursts at window edges", "random"])
@pytest.mark.parametrize(
    ("key", "limit"), [("sk_test_" + "x" * 40, 100), ("sk_live_" + "x" * 40, 1000)]
)
def test_pacer_never_exceeds_95_percent_of_the_limit_in_any_window(
    pattern: str, key: str, limit: int
) -> None:
    clock = VirtualClock()
    pacer = instance_pacer(default_rate(key), clock=clock, sleep=clock.sleep)
    sent = []
    for arrival in arrivals(pattern, limit * 4, seed=limit):
        clock.now = max(clock.now, arrival)  # a caller arrives, then asks to send
        pacer.acquire()
        sent.append(clock.now)
    assert busiest_window(sent) <= limit * 0.95  # at most 95% in any trailing 10 s
    if pattern == "all at once":  # and it uses all of that when asked to
        assert busiest_window(sent) == limit * 0.95


def test_a_small_job_goes_at_once_and_a_large_one_fills_each_window() -> None:
    clock = VirtualClock()
    pacer = instance_pacer(default_rate("sk_test_" + "x" * 40), clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(260):  # sync-metadata of 1,000 users, 250 drifted: 260 requests
        pacer.acquire()
        sent.append(clock.now)
    assert sent[94] == 0.0  # 95 without waiting
    assert sent[95] == pytest.approx(10.0)
    # the window floor: (ceil(260 / 95) - 1) * 10 s
    assert sent[-1] == pytest.approx(20.0)


def test_a_429_pauses_everyone_for_its_retry_after() -> None:
    clock = VirtualClock()
    pacer = instance_pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.acquire()
    pacer.pause(3.0)
    pacer.acquire()
    assert clock.now >= 3.0


def test_an_absurd_retry_after_is_capped_and_jittered() -> None:
    policy = RetryPolicy(rng=random.Random(7))
    huge = ClerkApiError("429", status=429, retry_after=1e9)
    delays = [policy.delay(0, huge) for _ in range(50)]
    assert all(d is not None and 60.0 <= d <= 66.05 for d in delays)
    assert len(set(delays)) > 1  # jittered: processes told the same do not return together
    honest = policy.delay(0, ClerkApiError("429", status=429, retry_after=2.0))
    assert honest is not None and 2.0 <= honest <= 2.25


def test_backoff_grows_with_jitter_and_4xx_is_not_retried() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0, rng=random.Random(1))
    unavailable = ClerkApiError("503", status=503)
    assert all(1.0 <= (policy.delay(0, unavailable) or 0) <= 1.0 for _ in range(5))
    late = [policy.delay(5, unavailable) or 0 for _ in range(50)]
    assert all(1.0 <= d <= 32.0 for d in late) and max(late) > 8.0
    assert all((policy.delay(40, unavailable) or 0) <= 300.0 for _ in range(20))
    assert policy.delay(0, ClerkApiError("400", status=400)) is None


def test_per_user_window_allows_ten_writes_in_any_ten_seconds() -> None:
    window = PerUserWindow(limit=10, window=10.0)
    recent = [100.0 + i for i in range(10)]  # ten writes at t = 100..109
    assert window.wait(recent, 109.5) == pytest.approx(0.5)  # the first leaves at 110
    assert window.wait(recent, 110.0) == 0.0
    assert window.wait(recent[:9], 109.5) == 0.0


def test_the_receivers_smooth_pacer_also_caps_each_second_at_twice_the_rate() -> None:
    clock = VirtualClock()
    pacer = instance_pacer(9.5, smooth=True, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(300):  # a backlog: all asked at once
        pacer.acquire()
        sent.append(clock.now)
    assert busiest_window(sent, 1.0) <= 19  # spread: no window's worth at one instant
    assert busiest_window(sent, 10.0) <= 95  # and still the instance window
    assert sent[-1] == pytest.approx(30.0, abs=1.0)  # at the full rate over time
