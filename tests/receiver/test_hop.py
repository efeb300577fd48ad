"""``Hop``: blocking calls on threads, answered on the loop that awaited them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from clerksync.receiver.hop import Hop


def test_each_call_gets_its_own_result_or_exception() -> None:
    hop = Hop(4)

    def work(n: int) -> int:
        time.sleep(0.001 * (n % 3))
        if n % 7 == 0:
            raise ValueError(f"no {n}")
        return n * n

    async def main() -> list[object]:
        return await asyncio.gather(
            *(hop.run(work, n) for n in range(1, 60)), return_exceptions=True
        )

    try:
        answers = asyncio.run(main())
    finally:
        hop.close()
    for n, answer in zip(range(1, 60), answers, strict=True):
        if n % 7 == 0:
            assert isinstance(answer, ValueError) and str(answer) == f"no {n}"
        else:
            assert answer == n * n


def test_calls_run_off_the_loop_on_its_threads_at_once() -> None:
    hop = Hop(3, name="hop-test")
    gate = threading.Barrier(3)  # three calls must be running together to pass it

    def meet() -> str:
        gate.wait(10)
        return threading.current_thread().name

    async def main() -> list[str]:
        return await asyncio.gather(*(hop.run(meet) for _ in range(3)))

    try:
        names = asyncio.run(main())
    finally:
        hop.close()
    assert len(set(names)) == 3 and all(n.startswith("hop-test-") for n in names)


def test_one_hop_serves_loop_after_loop_and_a_cancelled_call_spoils_nothing() -> None:
    hop = Hop(2)
    release = threading.Event()

    async def first() -> int:
        slow = asyncio.ensure_future(hop.run(release.wait, 10))
        await asyncio.sleep(0.01)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        release.set()
        return await hop.run(lambda: 1)

    async def second() -> int:
        return await hop.run(lambda: 2)

    try:
        assert asyncio.run(first()) == 1
        assert asyncio.run(second()) == 2  # another loop: answered on it
    finally:
        hop.close()


def test_a_stop_iteration_is_an_error_and_spoils_no_other_answer() -> None:
    hop = Hop(2)

    def stop() -> None:
        raise StopIteration("done")

    async def main() -> list[object]:
        return await asyncio.gather(
            hop.run(stop), *(hop.run(lambda n=n: n) for n in range(5)), return_exceptions=True
        )

    try:
        answers = asyncio.run(main())
    finally:
        hop.close()
    assert isinstance(answers[0], RuntimeError) and answers[1:] == [0, 1, 2, 3, 4]
