"""Deliveries per minute by outcome over a window (the inspector's chart), read from the log
as ``events stats`` reads it: probes left out, a sampled summary of rejections counting the
many it stands for, replays apart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from clerksync.deliverylog.readers import deliveries, record_count
from clerksync.deliverylog.writer import OUTCOMES
from clerksync.store.database import Store
from clerksync.store.mongo import utcnow

#: the windows the chart offers: name -> length
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class Timeline:
    """``counts[outcome][i]``: deliveries with that outcome in minute ``i`` after ``start``;
    ``replays[i]`` the replays in it."""

    start: datetime
    minutes: int
    counts: dict[str, list[int]]
    replays: list[int]

    @property
    def totals(self) -> dict[str, int]:
        return {outcome: sum(per_minute) for outcome, per_minute in self.counts.items()}

    def per_minute(self, index: int) -> int:
        return sum(per_minute[index] for per_minute in self.counts.values())

    @property
    def busiest(self) -> int:
        return max((self.per_minute(i) for i in range(self.minutes)), default=0)


def per_minute(store: Store, window: timedelta, *, now: datetime | None = None) -> Timeline:
    """Counts per whole minute for the ``window`` that ends with the current minute."""
    end = (now or utcnow()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    minutes = int(window.total_seconds() // 60)
    start = end - timedelta(minutes=minutes)
    counts = {outcome: [0] * minutes for outcome in OUTCOMES}
    replays = [0] * minutes
    for entry in deliveries(store, since=start, until=end):
        index = int((entry["receivedAt"] - start).total_seconds() // 60)
        if not 0 <= index < minutes:
            continue
        if entry.get("source") == "replay":
            replays[index] += 1
            continue
        outcome = str(entry.get("outcome"))
        counts.setdefault(outcome, [0] * minutes)[index] += record_count(entry)
    return Timeline(start, minutes, counts, replays)
