"""Short forms of the one write path for tests: one ``Writer`` per store (its hooks keep
their caches, as a receiver's do), results as the library returns them."""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from typing import Any

from clerksync.kinds.base import Kind
from clerksync.store.database import Store
from clerksync.store.hooks import WriteResult
from clerksync.store.pages import plan_page, write_page
from clerksync.store.users import UserHooks, writer
from clerksync.store.writer import Writer

_WRITERS: weakref.WeakKeyDictionary[Store, Writer] = weakref.WeakKeyDictionary()


def writer_of(store: Store) -> Writer:
    found = _WRITERS.get(store)
    if found is None:
        found = _WRITERS[store] = writer(store)
    return found


def user_hooks(store: Store) -> UserHooks:
    from clerksync.kinds.user import USER

    hooks = writer_of(store).hooks(USER)
    assert isinstance(hooks, UserHooks)
    return hooks


def upsert(store: Store, kind: Kind, item: Any, *, likely_new: bool = False) -> WriteResult:
    return writer_of(store).upsert(kind, item, likely_new=likely_new)


def delete(store: Store, kind: Kind, clerk_id: str, **options: Any) -> WriteResult:
    return writer_of(store).delete(kind, clerk_id, **options)


def page(store: Store, kind: Kind, items: Iterable[Any], **options: Any) -> dict[str, int]:
    return write_page(writer_of(store), kind, items, **options).as_dict()


def plan(store: Store, kind: Kind, items: Iterable[Any], **options: Any) -> dict[str, int]:
    return plan_page(writer_of(store), kind, items, **options).as_dict()


def deliver(store: Store, body: dict[str, Any]) -> str:
    """A webhook body (verified already) through the receiver's apply: its outcome."""
    from clerksync.mapping.events import parse_event
    from clerksync.store.apply import apply_event

    return apply_event(writer_of(store), parse_event(json.dumps(body).encode(), store.schema))[0]


def upsert_outcome(store: Store, kind: Kind, item: Any, *, likely_new: bool = False) -> str:
    """``upsert``'s outcome alone: ``applied``, ``duplicate`` or ``stale``."""
    return upsert(store, kind, item, likely_new=likely_new).outcome


def delete_outcome(store: Store, kind: Kind, clerk_id: str, **options: Any) -> str:
    return delete(store, kind, clerk_id, **options).outcome


def seed_user(store: Store, user_id: str, **fields: Any) -> WriteResult:
    """A Clerk user stored through the one write path, as a delivery stores it
    (``clerk_user``'s keywords: ``email``, ``username``, ``first_name``…)."""
    from clerksync.devtools.payloads import clerk_user
    from clerksync.kinds.user import USER, parse_clerk_user

    return upsert(store, USER, parse_clerk_user(clerk_user(user_id=user_id, **fields)))
