"""``Batch``: the deliveries of one moment applied together by one thread.

A delivery handed to a thread of its own costs a hand-off there and back, and its write
then waits in a ``Group`` for the others' and is woken when the command is answered: system
calls and GIL hand-offs that cost the receiver more than the delivery's own work. Here the
deliveries ready in one turn of the event loop go to one thread as one call, which sends
their writes together (``Writer.run_many``); those that come while it runs go next. Each
delivery gets its own answer, or its own exception, as ``apply_event`` would give it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from clerksync.receiver.hop import Hop
from clerksync.store.group import own_errors

#: deliveries sent in one call at most (their writes go in commands of the groups' sizes)
MOST = 64
#: calls in flight at once: while one waits on the database, the next is made ready
IN_FLIGHT = 1


class _State:
    """One event loop's deliveries waiting, calls in flight, and whether a send is due."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self.in_flight: set[asyncio.Task[None]] = set()
        self.due = False


class Batch:
    """``await batch.apply(event)``: ``apply_many`` (on a ``hop`` thread) answers a list of
    events with a result or an exception each. Per event loop (a receiver's app may be run
    by one loop after another, as tests do), up to ``IN_FLIGHT`` calls at once."""

    def __init__(self, hop: Hop, apply_many: Callable[[list[Any]], list[Any]]) -> None:
        self._hop = hop
        self._apply_many = apply_many
        self._states: dict[asyncio.AbstractEventLoop, _State] = {}

    async def apply(self, event: Any) -> Any:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _State()
        future: asyncio.Future[Any] = loop.create_future()
        state.waiting.append((event, future))
        self._kick(loop, state)
        return await future

    def _kick(self, loop: asyncio.AbstractEventLoop, state: _State) -> None:
        """Send what waits once this turn's deliveries have joined, if a call may start."""
        if state.waiting and not state.due and len(state.in_flight) < IN_FLIGHT:
            state.due = True
            loop.call_soon(self._start, loop, state)

    def _start(self, loop: asyncio.AbstractEventLoop, state: _State) -> None:
        state.due = False
        if not state.waiting or len(state.in_flight) >= IN_FLIGHT:
            return
        batch = state.waiting[:MOST]
        del state.waiting[:MOST]
        task = loop.create_task(self._send(batch))
        state.in_flight.add(task)
        task.add_done_callback(lambda done: self._ended(loop, state, done))

    def _ended(
        self, loop: asyncio.AbstractEventLoop, state: _State, task: asyncio.Task[None]
    ) -> None:
        state.in_flight.discard(task)
        if state.waiting:
            self._kick(loop, state)
        elif not state.in_flight and self._states.get(loop) is state:
            del self._states[loop]

    async def _send(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            answers = await self._hop.run(self._apply_many, [e for e, _ in batch])
            if len(answers) != len(batch):  # pragma: no cover (a bug in apply_many)
                raise RuntimeError("batch: one answer per event expected")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the call itself failed: every delivery's
            answers = own_errors([exc] * len(batch))
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its delivery is gone (cancelled)
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
