"""``Batch``: the deliveries of one moment go to one thread in one call; each gets its own
answer or exception; those that come while a call runs go in the next; a failed call is
every delivery's, each with its own copy of the error."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from clerksync.receiver.batch import Batch
from clerksync.receiver.hop import Hop


def test_a_moment_goes_together_and_each_gets_its_own_answer() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def apply_many(events: list[int]) -> list[Any]:
        calls.append(events)
        if len(calls) == 1:
            gate.wait(10)  # the first call is slow: the next ones queue behind it
        return [ValueError(f"no {e}") if e % 5 == 0 else e * 10 for e in events]

    hop = Hop(4)
    batch = Batch(hop, apply_many)

    async def one(e: int) -> Any:
        try:
            return await batch.apply(e)
        except ValueError as exc:
            return str(exc)

    async def main() -> list[Any]:
        first = [asyncio.ensure_future(one(e)) for e in (1, 2, 3)]
        while not calls:
            await asyncio.sleep(0.005)
        later = [asyncio.ensure_future(one(e)) for e in (4, 5, 6)]
        await asyncio.sleep(0.05)
        assert len(calls) == 1  # one call at a time: the later ones wait
        gate.set()
        return await asyncio.gather(*first, *later)

    try:
        assert asyncio.run(main()) == [10, 20, 30, 40, "no 5", 60]
        assert calls == [[1, 2, 3], [4, 5, 6]]
        # another event loop, later (a test client, a restarted app): its own calls
        assert asyncio.run(one(7)) == 70 and calls[-1] == [7]
    finally:
        hop.close()


def test_a_failed_call_is_every_deliverys_each_with_its_own_error() -> None:
    def apply_many(events: list[int]) -> list[Any]:
        raise RuntimeError("database away")

    hop = Hop(2)
    batch = Batch(hop, apply_many)

    async def main() -> list[BaseException]:
        results = await asyncio.gather(*(batch.apply(e) for e in range(3)), return_exceptions=True)
        return [r for r in results if isinstance(r, BaseException)]

    try:
        errors = asyncio.run(main())
        assert len(errors) == 3 and all(str(e) == "database away" for e in errors)
        assert len({id(e) for e in errors}) == 3  # copies: no traceback shared
    finally:
        hop.close()
