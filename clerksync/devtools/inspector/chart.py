"""The chart of deliveries per minute by outcome, as SVG shapes the template draws: stacked
bars, one per minute, and a few time labels. Server-side, no chart library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from clerksync.deliverylog.timeline import Timeline
from clerksync.deliverylog.writer import OUTCOMES

HEIGHT = 200  # the plot's height in SVG units; a minute is one unit wide per 60 of the window
BAR = 10  # a bar's width in the hour's view (60 minutes: 600 units wide)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    outcome: str
    count: int
    minute: str


@dataclass(frozen=True)
class Chart:
    width: float
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]
    busiest: int
    totals: dict[str, int]
    replays: int


def chart(timeline: Timeline) -> Chart:
    """Bars stacked in ``OUTCOMES`` order, scaled to the busiest minute."""
    bar = BAR if timeline.minutes <= 60 else 600 / timeline.minutes
    busiest = max(timeline.busiest, 1)
    bars: list[Bar] = []
    for i in range(timeline.minutes):
        minute = (timeline.start + timedelta(minutes=i)).strftime("%H:%M")
        top = float(HEIGHT)
        for outcome in (*OUTCOMES, *(o for o in timeline.counts if o not in OUTCOMES)):
            count = timeline.counts.get(outcome, [0] * timeline.minutes)[i]
            if not count:
                continue
            height = count / busiest * HEIGHT
            top -= height
            bars.append(Bar(i * bar, top, bar * 0.9, height, outcome, count, minute))
    step = 10 if timeline.minutes <= 60 else 180  # a label every 10 minutes, or 3 hours
    labels = [
        (i * bar, (timeline.start + timedelta(minutes=i)).strftime("%H:%M"))
        for i in range(0, timeline.minutes, step)
    ]
    return Chart(
        width=timeline.minutes * bar,
        height=HEIGHT,
        bars=bars,
        labels=labels,
        busiest=timeline.busiest,
        totals={o: n for o, n in timeline.totals.items() if n},
        replays=sum(timeline.replays),
    )
