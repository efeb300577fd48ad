"""``GET /api/users/me`` (``serve --users-me``): the caller's document for apps in other
languages (a Next.js route calls it with ``await auth().getToken()``), as ``users show
--json`` renders it (the mapped fields and organizations, never the app's own fields such
as ``password_hash``), ensured as ``clerksync.app.ensure`` does: a signup's first request
never meets "user not found", whether or not its webhook came.

Authenticated as ``clerksync.fastapi.current_user`` is (``clerksync.app.auth``), with the
same answers (``clerksync.app.answers``): 401 for a bad token or a deleted user, 503 when
Clerk or the database fail. Each user gets ``RATE`` requests a second, in bursts of
``BURST`` (429 with ``Retry-After`` past it): the endpoint may call Clerk, whose limit the
whole instance shares. It uses the receiver's database client, Clerk client and write-back
workers: a user it writes is written back to Clerk at once.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from clerksync.app.answers import refusal
from clerksync.app.auth import SessionAuth
from clerksync.app.ensure import Ensurer
from clerksync.errors import ClerkSyncError, ConfigError
from clerksync.store.lookups import user_detail

if TYPE_CHECKING:
    from clerksync.receiver.app import Receiver

USERS_ME_PATH = "/api/users/me"
#: requests per second per user, and the burst allowed
RATE = 5.0
BURST = 20
#: users whose request counts are kept before the settled ones are forgotten
KEPT = 10_000


class PerUser:
    """A token bucket per user id (in memory, this process): ``take`` answers 0 when the
    request may go, else the seconds to wait."""

    def __init__(self, rate: float = RATE, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > KEPT:
                self._forget(now)
            return 0.0

    def _forget(self, now: float) -> None:
        """Drop the users whose bucket has filled up again (they lose nothing)."""
        full = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}


class UsersMe:
    """The endpoint over a ``Receiver``'s parts, built on its first request."""

    def __init__(self, receiver: Receiver, *, limiter: PerUser | None = None) -> None:
        if not receiver.settings.clerk_secret_key:
            raise ConfigError(
                "CLERK_SECRET_KEY is not set: GET /api/users/me needs it to fetch users the "
                "database does not hold yet (and, without CLERK_JWT_KEY, Clerk's keys)"
            )
        receiver.settings.check("CLERK_JWT_KEY", "CLERK_AUTHORIZED_PARTIES")
        self.receiver = receiver
        self.limiter = limiter or PerUser()
        self._parts: tuple[SessionAuth, Ensurer] | None = None
        self._lock = threading.Lock()

    def _build(self) -> tuple[SessionAuth, Ensurer]:
        with self._lock:
            if self._parts is None:
                receiver = self.receiver  # started: its parts are built
                workers, store = receiver.workers, receiver.store

                def hand_off(clerk_id: str) -> None:
                    if workers is not None:
                        workers.submit(store.clerk_key(clerk_id))

                ensurer = Ensurer(
                    store, receiver.gateway, writer=receiver.writer, on_write_back=hand_off
                )
                auth = SessionAuth.from_settings(receiver.settings, receiver.gateway)
                self._parts = (auth, ensurer)
            return self._parts

    async def handle(self, request: Request) -> Response:
        receiver = self.receiver
        receiver.start()
        auth, ensurer = self._parts or self._build()
        try:
            if auth.needs_keys:
                user_id = await run_in_threadpool(auth.user_id, request.headers)
            else:
                user_id = auth.user_id(request.headers)
            wait = self.limiter.take(user_id)
            if wait:
                return JSONResponse(
                    {"error": "too many requests for this user"},
                    status_code=429,
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if not receiver.indexes_ready.is_set():
                await run_in_threadpool(receiver.indexes_ready.wait, 2.0)
                if not receiver.indexes_ready.is_set():  # a new user could be written twice
                    return JSONResponse(
                        {"error": "starting: the Clerk-id uniqueness is not enforced yet"},
                        status_code=503,
                        headers={"Retry-After": "5"},
                    )
            doc = await ensurer.ensure_async(user_id)
            view = await run_in_threadpool(user_detail, ensurer.store, doc)
        except ClerkSyncError as exc:
            answer = refusal(exc)
            if answer is None:
                raise
            return JSONResponse(
                {"error": answer.detail}, status_code=answer.status, headers=answer.headers
            )
        return Response(json.dumps(view, default=str), media_type="application/json")


def users_me_route(receiver: Receiver, limiter: PerUser | None = None) -> Any:
    """The route ``create_app(users_me=True)`` adds (``users_me=PerUser(...)``: other
    limits)."""
    from starlette.routing import Route

    return Route(USERS_ME_PATH, UsersMe(receiver, limiter=limiter).handle, methods=["GET"])
