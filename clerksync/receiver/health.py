"""Is the database there: what deliveries learn of it, ``/healthz`` and ``/readyz``.

A paused server looks healthy to the driver for seconds, and one slow write on a loaded
machine is no outage: the database is *away* once the driver knows no server it can write
to, or ``AWAY_AFTER`` deliveries in a row could not reach it in time. Then one delivery at a
time finds out whether it is back (and wakes the driver's monitor) while the others are
answered 503 at once, instead of queueing for threads and timing out in turn.
``/healthz`` and ``/readyz`` ping on a thread of its own, never queued behind deliveries;
``/livez`` checks nothing but that the process answers (a liveness probe that checked the
database would restart every healthy pod during a database blip).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import JSONResponse

from clerksync.errors import ClerkSyncError, StoreUnavailable
from clerksync.store.database import Store
from clerksync.store.mongo import database_unreachable

AWAY_AFTER = 3  # timeouts in a row, with no success between, that mean "away"
HEALTH_TIMEOUT = 0.6  # seconds /healthz waits for the database


class DatabaseAway(StoreUnavailable):
    """Answered at once: the database is known to be away and another delivery is probing."""


def unreachable(exc: BaseException) -> bool:
    """Was the database unreachable or too slow (not refusing a write)?"""
    return isinstance(exc, DatabaseAway) or database_unreachable(exc)


class DatabaseWatch:
    """What deliveries learnt of the database (see the module docstring). One event loop:
    no lock for the counters."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.probing = False  # one delivery is finding out whether the database is back
        self._failures = 0  # deliveries in a row that could not reach the database in time
        self._health: Future[float | None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="clerksync-health")

    def away(self) -> bool:
        return self._failures >= AWAY_AFTER or not self._writable()

    def failed(self, exc: BaseException) -> None:
        if unreachable(exc):  # unreachable or too slow, not a refused write
            self._failures += 1

    def answered(self) -> None:
        self._failures = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _writable(self) -> bool:
        """Does the driver know a server it can write to? (No I/O: its current view.)"""
        try:
            return bool(self.store.client.topology_description.has_writable_server())
        except Exception:  # pragma: no cover (a client without a topology view)
            return True

    def _ping(self) -> float | None:
        """Round trip in ms, or None when the database does not answer in time."""
        import pymongo

        try:
            with pymongo.timeout(HEALTH_TIMEOUT):
                return self.store.ping()[1]
        except ClerkSyncError:
            return None

    async def healthz(self, request: Request) -> JSONResponse:
        ms = await self.round_trip()
        if ms is None:
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "database": self.store.name, "roundTripMs": round(ms, 1)})

    async def readyz(self, indexes_ready: bool, problem: str, warnings: list[str]) -> JSONResponse:
        """200 when a delivery can be taken now: the database answers and the Clerk-id
        uniqueness is enforced (clerksync's indexes made); 503 naming the reason else.
        Indexes other than that one which could not be made are named, not refused on."""
        ms = await self.round_trip()
        reasons = []
        if ms is None:
            reasons.append("database: unreachable (no answer within 0.6 s)")
        if not indexes_ready:
            reasons.append(f"indexes: Clerk-id uniqueness not enforced yet ({problem})")
        body: dict[str, object] = {"ok": not reasons, "database": self.store.name}
        if ms is not None:
            body["roundTripMs"] = round(ms, 1)
        if reasons:
            body["reason"] = "; ".join(reasons)
        if warnings:
            body["warnings"] = warnings
        return JSONResponse(body, status_code=503 if reasons else 200)

    async def round_trip(self) -> float | None:
        """The database's round trip in ms, or None. Concurrent checks share one ping."""
        future = self._health
        if future is None or future.done():
            future = self._health = self._pool.submit(self._ping)
        # The driver knows the database is away: the ping (which also wakes the driver's
        # monitor) gets a moment, not the full timeout.
        wait = 0.1 if self.away() else HEALTH_TIMEOUT + 0.1
        try:
            ms = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait)
        except asyncio.TimeoutError:
            ms = None
        return ms


async def livez(request: Request) -> JSONResponse:
    """The process answers: nothing else is checked."""
    return JSONResponse({"ok": True})
