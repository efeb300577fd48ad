"""The ordering rule, and the MongoDB documents a Clerk state writes. No I/O.

Each document keeps the ``updated_at`` of the Clerk state it holds
(``clerksync.updatedAt``). An upsert filters on ``{"clerksync.updatedAt": {"$not": {"$gte": t}}}``,
one predicate that also matches documents without the field (written by the
app before clerksync) and that the wire servers plan as an index lookup next
to the Clerk-id equality (an ``$or`` would fall to a collection scan on some).
The receiver, reconcile and the benchmarks' baselines all build their writes here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from clerksync.kinds.base import ClerkObject, Kind
from clerksync.kinds.user import ClerkUser
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.sections import Section
from clerksync.mapping.users import UserMapping, user_fields


def is_older(stored: Any, updated_at: int) -> bool:
    """What the ordering filter decides, decided from a read: anything but a number as new or
    newer lets the update through (``$gte`` never matches across BSON types)."""
    return not (isinstance(stored, (int, float)) and stored >= updated_at)


def ordering_filter(clerk_id: str, item: ClerkObject) -> dict[str, Any]:
    """The document holding ``item`` under the Clerk-id field ``clerk_id``, unless it holds
    this state or a newer one."""
    return {clerk_id: item.id, bk.UPDATED_AT: {"$not": {"$gte": item.updated_at}}}


def new_document(update: Mapping[str, Any]) -> dict[str, Any]:
    """The document ``update`` would create if upserted into nothing."""
    return bk.nest({**update["$set"], **update.get("$setOnInsert", {}), **update.get("$inc", {})})


def state_update(kind: Kind, section: Section, item: Any, now: datetime) -> dict[str, Any]:
    """The update one Clerk state makes to its document, for every kind but users
    (``upsert_update``): its fields in ``$set``, the app's timestamps where it keeps them."""
    update: dict[str, Any] = {"$set": section.values(kind, item)}
    if section.updated_at:
        update["$set"][section.updated_at] = now
    on_insert = section.absent_sticky(kind, item)
    if section.created_at:
        on_insert[section.created_at] = now
    if on_insert:
        update["$setOnInsert"] = on_insert
    return update


def upsert_update(
    user: ClerkUser, now: datetime, users: UserMapping, *, app_id: int | None = None
) -> tuple[dict[str, Any], bool]:
    """The update for one Clerk state, and whether it queues a write-back.

    Clerk-owned fields go in ``$set``, app-owned ones in ``$setOnInsert`` (the admin flag
    starts as Clerk's copy says). ``app_id`` is the integer the store allocated for a
    document this write may create (schemas with an app id only).
    The write-back is queued in the same write when Clerk's copy plainly lacks
    our keys (every new user); the rarer mismatch is caught after the write."""
    metadata = user.public_metadata
    fields: dict[str, Any] = {**user_fields(user, users), **users.touched(now)}
    # The admin key is whatever the mapping names it (``users.metadata``), not "isAdmin".
    admin_keys = [key for key, what in users.metadata.items() if what == "admin"]
    admin = any(metadata.get(key) is True for key in admin_keys)
    on_insert = users.insert_values(now, admin=admin)
    if users.app_id and app_id is not None:
        on_insert[users.app_id] = app_id
    update: dict[str, Any] = {"$set": fields, "$setOnInsert": on_insert}
    queued = not users.metadata_complete(metadata)
    if queued:
        fields[bk.DUE] = now
        update["$inc"] = {bk.SEQ: 1}
    return update, queued


def held_positions(
    batch: Sequence[Any],
    versions: Callable[[list[str]], Mapping[str, Any]],
    *,
    any_state: bool = False,
) -> Callable[[list[int]], set[int]]:
    """For ``duplicates_only``: which positions of ``batch`` (Clerk states) are stored
    already (``versions``: Clerk id -> stored version) in a state as new as theirs or newer
    (``any_state``: in any state; an insert refused so goes the ordered way next, where the
    state decides)."""

    def stored(positions: list[int]) -> set[int]:
        held = versions([batch[i].id for i in positions])
        return {
            i
            for i in positions
            if batch[i].id in held
            and (any_state or not is_older(held[batch[i].id], batch[i].updated_at))
        }

    return stored
