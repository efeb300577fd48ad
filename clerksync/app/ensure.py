"""``ensure_user``: the app's document for a Clerk user id, written from Clerk when missing.

Svix delivers ``user.created`` asynchronously, retries over hours and promises nothing
about when, so the app's first request after a signup can come before it. The app asks for
the document instead: present, it costs one indexed read and no Clerk call; missing, the
user is fetched (``GET /users/{id}``) and written through the one write path, as the
delivery would write it (mapping, ordering, adoption, app id, write-back mark), and the
delivery, when it comes, is a duplicate or older and changes nothing.

A deleted user (its tombstone) is ``UserDeleted``, an id Clerk does not know
``UserNotFound``; nothing is written for either. Clerk failing is a ``ClerkApiError``, the
database a ``StoreUnavailable``. Concurrent calls for one missing user in a process share
one fetch and one write, so fifty first requests cost Clerk one call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from clerksync.clerk.gateway import ClerkGateway
from clerksync.errors import ClerkApiError, ConfigError, InvalidEvent, UserDeleted, UserNotFound
from clerksync.kinds.user import CLERK_USER_ID, USER, parse_clerk_user
from clerksync.settings import Settings, load_settings
from clerksync.store.connect import connect
from clerksync.store.database import Store
from clerksync.store.lookups import find_by_clerk_id
from clerksync.store.users import writer as users_writer
from clerksync.store.writer import Writer

#: a request path waits for Clerk this long (the bulk jobs' gateway waits 10 s)
CLERK_TIMEOUT_MS = 5000


class Ensurer:
    """``ensure`` / ``ensure_async`` over one store and (for missing users) one gateway.

    ``on_write_back`` is told the Clerk id of a user whose write-back a write marked due (the
    receiver hands it to its workers); without it, the mark waits for a running receiver's
    sweep or ``sync-metadata``. ``owns``: ``close`` closes the store and gateway."""

    def __init__(
        self,
        store: Store,
        gateway: ClerkGateway | None = None,
        *,
        writer: Writer | None = None,
        on_write_back: Callable[[str], None] | None = None,
        owns: bool = False,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.writer = writer or users_writer(store)
        self.on_write_back = on_write_back
        self._owns = owns
        self._flights: dict[str, Future[Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Ensurer:
        """The app's database (``MONGODB_URL``) and, with ``CLERK_SECRET_KEY``, Clerk."""
        settings.check("MONGODB_URL", "MONGODB_DB", "CLERK_SECRET_KEY", "CLERK_API_URL")
        if settings.uses_embedded_store:
            raise ConfigError(
                "MONGODB_URL is not set: ensure_user needs your app's database "
                "(the embedded store is for `clerksync serve` demos only)"
            )
        store = connect(settings)
        key = settings.clerk_secret_key
        gateway = (
            ClerkGateway(key, api_url=settings.clerk_api_url, timeout_ms=CLERK_TIMEOUT_MS)
            if key
            else None
        )
        return cls(store, gateway, owns=True)

    def close(self) -> None:
        if self._owns:
            self.store.close()
            if self.gateway is not None:
                self.gateway.close()

    # -- the document ------------------------------------------------------------------------

    def find(self, clerk_user_id: str) -> Mapping[str, Any] | None:
        """The stored document: one equality read on the unique Clerk-id index."""
        return find_by_clerk_id(self.store, clerk_user_id)

    def ensure(self, clerk_user_id: str) -> dict[str, Any]:
        """The app's document for this Clerk user, fetched from Clerk and written when missing
        (module docstring)."""
        user_id = checked_id(clerk_user_id)
        doc = self.find(user_id)
        if doc is not None:
            return dict(doc)
        future, leader = self._join(user_id)
        if leader:
            self._lead(user_id, future)
        return dict(future.result())

    async def ensure_async(self, clerk_user_id: str) -> dict[str, Any]:
        """``ensure`` for an asyncio app: the database and Clerk are called in worker
        threads, so the event loop never blocks; callers waiting for the same missing user
        hold no thread."""
        import asyncio

        from anyio import to_thread

        user_id = checked_id(clerk_user_id)
        doc = await to_thread.run_sync(self.find, user_id)
        if doc is not None:
            return dict(doc)
        future, leader = self._join(user_id)
        if leader:
            await to_thread.run_sync(self._lead, user_id, future)
        written: Mapping[str, Any] = await asyncio.wrap_future(future)
        return dict(written)

    # -- one fetch and one write per missing user ----------------------------------------------

    def _join(self, user_id: str) -> tuple[Future[Mapping[str, Any]], bool]:
        with self._lock:
            found = self._flights.get(user_id)
            if found is not None:
                return found, False
            future: Future[Mapping[str, Any]] = Future()
            self._flights[user_id] = future
            return future, True

    def _lead(self, user_id: str, future: Future[Mapping[str, Any]]) -> None:
        try:
            future.set_result(self._fetch_and_write(user_id))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            with self._lock:
                self._flights.pop(user_id, None)

    def _fetch_and_write(self, user_id: str) -> Mapping[str, Any]:
        # Read again: the document may have landed between the first read and this flight.
        doc = self.find(user_id)
        if doc is not None:
            return doc
        if self.store.is_tombstoned(user_id):
            raise UserDeleted(f"user {user_id} was deleted; it is not brought back")
        if self.gateway is None:
            raise ConfigError(
                f"CLERK_SECRET_KEY is not set: cannot fetch user {user_id} from Clerk "
                "(it is not in the database yet)"
            )
        raw = self.gateway.get_user(user_id)
        try:
            user = parse_clerk_user(raw)
        except InvalidEvent as exc:
            raise ClerkApiError(f"Clerk answered a user clerksync cannot read: {exc}") from None
        if user.id != user_id:
            raise ClerkApiError(f"Clerk answered GET /users/{user_id} with user {user.id}")
        result = self.writer.upsert(USER, user, likely_new=True)
        doc = self.find(user_id)
        if doc is None:  # deleted between the read and the write: the tombstone won
            raise UserDeleted(f"user {user_id} was deleted; it is not brought back")
        if result.wants_write_back and self.on_write_back is not None:
            self.on_write_back(user_id)
        return doc


def checked_id(value: Any) -> str:
    """A Clerk user id, or ``UserNotFound``: ids go into Mongo filters, so only plain
    ``user_…`` strings pass (a dict would be an operator)."""
    if not isinstance(value, str) or not CLERK_USER_ID.match(value):
        shown = repr(value)[:60]
        raise UserNotFound(f"{shown} is not a Clerk user id (user_…)")
    return value


# -- the process's default, from the settings (env, .env.local, .env) --------------------------

_default: Ensurer | None = None
_default_lock = threading.Lock()


def default_ensurer() -> Ensurer:
    """The ``Ensurer`` of ``ensure_user`` without one: built from the settings on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Ensurer.from_settings(load_settings())
    return _default


def close_default() -> None:
    """Close the default ``Ensurer`` (the next call builds it again, from the settings then)."""
    global _default
    with _default_lock:
        found, _default = _default, None
    if found is not None:
        found.close()


def ensure_user(clerk_user_id: str, *, ensurer: Ensurer | None = None) -> dict[str, Any]:
    """The app's document for a Clerk user id; fetched from Clerk (``GET /users/{id}``) and
    written through the one write path when missing; one indexed read when present.

    ``UserDeleted`` for a deleted user, ``UserNotFound`` for an id Clerk does not know (neither
    writes anything); ``ClerkApiError`` / ``StoreUnavailable`` when Clerk or the database fail.
    Without ``ensurer``, the settings (``MONGODB_URL``, ``CLERK_SECRET_KEY``…) are read once."""
    return (ensurer or default_ensurer()).ensure(clerk_user_id)


async def ensure_user_async(
    clerk_user_id: str, *, ensurer: Ensurer | None = None
) -> dict[str, Any]:
    """``ensure_user`` for asyncio apps (FastAPI with Beanie): it never blocks the loop."""
    if ensurer is None:
        from anyio import to_thread

        ensurer = await to_thread.run_sync(default_ensurer)
    return await ensurer.ensure_async(clerk_user_id)
