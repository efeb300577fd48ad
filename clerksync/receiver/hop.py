"""``Hop``: the event loop's way to a blocking call on a thread, and back, at the least cost
per call.

``loop.run_in_executor`` makes a future per side, a work item, and wakes the loop once per
call (a system call each); under load that was a tenth of a delivery's CPU. Here a call is
one entry on a queue the threads wait on, and answers are handed back in batches: the
first answer since the loop last took them wakes it, the rest ride along.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


Answer = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


class Hop:
    """``await hop.run(fn, *args)`` runs ``fn(*args)`` on one of ``threads`` threads (started
    with the first call) and answers its result or raises its exception, on the loop that
    awaited (any loop: a receiver's app may be run by one after another, as tests do). A
    call whose awaiter is gone (cancelled) still runs; its answer is dropped."""

    def __init__(self, threads: int, *, name: str = "clerksync-hop") -> None:
        self._size = threads
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # answers not yet handed back, by loop; a loop in it has been woken for them
        self._answers: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._threads:
            self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn, args))
        return await future

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            future, fn, args = job
            try:
                answer: tuple[Any, Any, BaseException | None] = (future, fn(*args), None)
            except StopIteration as exc:  # a future cannot hold it: as asyncio does
                answer = (future, None, RuntimeError(f"StopIteration: {exc}"))
            except BaseException as exc:
                answer = (future, None, exc)
            del job, fn, args
            loop = future.get_loop()
            with self._lock:
                waiting = self._answers.get(loop)
                if waiting is not None and not loop.is_closed():  # woken already: rides along
                    waiting.append(answer)
                    continue
                self._answers[loop] = [answer]
            try:
                loop.call_soon_threadsafe(self._hand_back, loop)
            except RuntimeError:  # the loop is closed: nobody waits for its answers
                with self._lock:
                    self._answers.pop(loop, None)

    def _hand_back(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            answers = self._answers.pop(loop, [])
        for future, result, error in answers:
            if future.done():  # cancelled: its awaiter is gone
                continue
            try:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            except Exception as exc:  # never the others' answers with it
                future.set_exception(RuntimeError(f"could not answer: {exc!r}"))

    def close(self) -> None:
        """Let the threads end once the calls queued are done (the caller does not wait)."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        self._threads = []
