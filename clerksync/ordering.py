"""The ordering rule, and the MongoDB documents a Clerk state writes. No I/O.

Each document keeps the ``updated_at`` of the Clerk state it holds
(``clerksync.updatedAt``). An upsert filters on ``{"clerksync.updatedAt": {"$not": {"$gte": t}}}``,
one predicate that also matches documents without the field (written by the
app before clerksync) and that the wire servers plan as an index lookup next
to the ``clerkId`` equality (an ``$or`` would fall to a collection scan on some).
The receiver, reconcile and the benchmarks' baselines all build their writes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clerksync import bookkeeping as bk
from clerksync.users import ClerkUser, user_fields


def is_older(stored: Any, updated_at: int) -> bool:
    """What the ordering filter decides, decided from a read: anything but a number as new or
    newer lets the update through (``$gte`` never matches across BSON types)."""
    return not (isinstance(stored, (int, float)) and stored >= updated_at)


def ordering_filter(user: ClerkUser) -> dict[str, Any]:
    return {"clerkId": user.id, bk.UPDATED_AT: {"$not": {"$gte": user.updated_at}}}


def new_document(update: Mapping[str, Any]) -> dict[str, Any]:
    """The document ``update`` would create if upserted into nothing."""
    return bk.nest({**update["$set"], **update["$setOnInsert"], **update.get("$inc", {})})


def upsert_update(user: ClerkUser, now: datetime) -> tuple[dict[str, Any], bool]:
    """The update for one Clerk state, and whether it queues a write-back.

    The write-back is queued in the same write when Clerk's copy plainly lacks
    our keys (every new user); the rarer mismatch is caught after the write."""
    metadata = user.public_metadata
    fields: dict[str, Any] = {**user_fields(user), "updatedAt": now}
    update: dict[str, Any] = {
        "$set": fields,
        "$setOnInsert": {"createdAt": now, "isAdmin": metadata.get("isAdmin") is True},
    }
    queued = not (
        isinstance(metadata.get("userMongoId"), str) and isinstance(metadata.get("isAdmin"), bool)
    )
    if queued:
        fields[bk.DUE] = now
        update["$inc"] = {bk.SEQ: 1}
    return update, queued
