"""``current_user``: a FastAPI (or Starlette) dependency that hands a route the caller's
document, as a dict, whether or not the ``user.created`` webhook has come yet::

    @app.get("/me")
    async def me(user: dict = Depends(current_user)) -> dict: ...

It authenticates the request's Clerk session token (``clerksync.app.auth``: the
``Authorization: Bearer`` header or the ``__session`` cookie, with the SDK's
``authenticate_request``) and then ensures the user (``clerksync.app.ensure``): one indexed
read for a stored user, a fetch from Clerk and one write for a new one. A missing, malformed,
expired or foreign token, or a deleted user, is a 401; Clerk or the database failing a 503
with ``Retry-After``. Only Starlette is imported (FastAPI's ``Request`` is Starlette's, and it
answers Starlette's ``HTTPException``): ``pip install 'clerksync[fastapi]'`` brings FastAPI.
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from clerksync.app.answers import refusal
from clerksync.app.auth import SessionAuth
from clerksync.app.ensure import Ensurer
from clerksync.errors import ClerkSyncError
from clerksync.settings import Settings, load_settings

__all__ = ["CurrentUser", "current_user"]


class CurrentUser:
    """The dependency. ``current_user`` is the one built from the settings (env,
    ``.env.local``, ``.env``: ``MONGODB_URL``, ``CLERK_SECRET_KEY``, ``CLERK_JWT_KEY``,
    ``CLERK_AUTHORIZED_PARTIES``) on its first request; build another with ``settings``, or
    with an ``ensurer`` and ``auth`` of yours."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        ensurer: Ensurer | None = None,
        auth: SessionAuth | None = None,
    ) -> None:
        self._settings = settings
        self._given = ensurer is not None
        self._parts: tuple[SessionAuth, Ensurer] | None = (
            (auth, ensurer) if auth is not None and ensurer is not None else None
        )
        self._partial = (auth, ensurer)
        self._lock = threading.Lock()

    async def __call__(self, request: Request) -> dict[str, Any]:
        from anyio import to_thread

        parts = self._parts
        if parts is None:
            parts = await to_thread.run_sync(self._build)
        auth, ensurer = parts
        try:
            if auth.needs_keys:  # the instance's keys are fetched once, off the loop
                user_id = await to_thread.run_sync(auth.user_id, request.headers)
            else:
                user_id = auth.user_id(request.headers)
            return await ensurer.ensure_async(user_id)
        except ClerkSyncError as exc:
            answer = refusal(exc)
            if answer is None:
                raise
            raise HTTPException(answer.status, answer.detail, answer.headers) from None

    def _build(self) -> tuple[SessionAuth, Ensurer]:
        with self._lock:
            if self._parts is not None:
                return self._parts
            settings = self._settings or load_settings()
            auth, ensurer = self._partial
            ensurer = ensurer or Ensurer.from_settings(settings)
            auth = auth or SessionAuth.from_settings(settings, ensurer.gateway)
            self._parts = (auth, ensurer)
            return auth, ensurer

    def close(self) -> None:
        """Close the database client and Clerk client it built (not those it was given);
        the next request builds them again, from the settings then."""
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None and not self._given:
            parts[1].close()


current_user = CurrentUser()
