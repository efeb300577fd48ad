"""The write-back queue: which users' Clerk metadata still needs writing. No collection of
its own: the state lives on the user document, so it is written in the same durable write
as the change that caused it and survives anything the document survives.

``clerksync.dueAt`` (sparse index) marks a user due and, pushed forward, leases it to one
worker; ``clerksync.seq`` counts changes, so finishing an older write-back never clears a
newer mark; ``clerksync.attempts`` drives the backoff and ``clerksync.error`` keeps the last
failure (see ``clerksync.bookkeeping``);
``doctor`` counts what is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerksync import bookkeeping as bk
from clerksync.mongo import translating, utcnow
from clerksync.schema import Schema

if TYPE_CHECKING:
    from pymongo.collection import Collection


@translating
class WriteBackQueue:
    """Queue operations over ``users``; ``UserStore`` inherits them."""

    users: Collection[Any]
    schema: Schema

    def mark_write_back(self, doc_id: Any) -> Mapping[str, Any] | None:
        from pymongo import ReturnDocument

        return self.users.find_one_and_update(
            {"_id": doc_id},
            {"$set": {bk.DUE: utcnow()}, "$inc": {bk.SEQ: 1}},
            return_document=ReturnDocument.AFTER,
        )

    def pending_write_backs(self) -> int:
        return self.users.count_documents({bk.DUE: {"$exists": True}})

    def claim_write_back(self, lease: timedelta) -> Mapping[str, Any] | None:
        """Take the most overdue write-back; pushing ``clerksync.dueAt`` forward is the lease,
        so another process skips it, and a crash just lets the lease run out."""
        from pymongo import ReturnDocument

        now = utcnow()
        return self.users.find_one_and_update(
            {bk.DUE: {"$lte": now}},
            {"$set": {bk.DUE: now + lease}},
            sort=[(bk.DUE, 1)],
            return_document=ReturnDocument.AFTER,
        )

    def finish_write_back(self, doc: Mapping[str, Any], clerk_copy: Mapping[str, Any]) -> None:
        """Record Clerk's new copy; clear the due mark unless a newer change re-marked it."""
        self.finish_write_backs([(doc, clerk_copy)])

    def finish_write_backs(self, done: list[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
        """``finish_write_back`` for many users in one bulk write (the bulk jobs' form)."""
        from pymongo import UpdateOne

        if not done:
            return

        keys = tuple(self.schema.users.metadata)

        def seen(copy: Mapping[str, Any]) -> dict[str, Any]:
            return {key: copy.get(key) for key in keys}

        result = self.users.bulk_write(
            [
                UpdateOne(
                    {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ)},
                    {
                        "$set": {bk.SEEN: seen(copy), bk.ATTEMPTS: 0},
                        "$unset": {bk.DUE: "", bk.ERROR: ""},
                    },
                )
                for doc, copy in done
            ],
            ordered=False,
        )
        if result.matched_count < len(done):
            # Some were re-marked meanwhile: keep their mark, but still record Clerk's copy.
            self.users.bulk_write(
                [
                    UpdateOne({"_id": doc["_id"]}, {"$set": {bk.SEEN: seen(copy)}})
                    for doc, copy in done
                ],
                ordered=False,
            )

    def defer_write_back(self, doc: Mapping[str, Any], due: datetime, error: str) -> None:
        self.users.update_one(
            {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ)},
            {"$set": {bk.DUE: due, bk.ERROR: error}, "$inc": {bk.ATTEMPTS: 1}},
        )

    def drop_write_back(self, doc: Mapping[str, Any], error: str) -> None:
        """Stop trying (the user is gone from Clerk); the error stays for doctor."""
        self.users.update_one(
            {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ)},
            {"$unset": {bk.DUE: ""}, "$set": {bk.ERROR: error}},
        )
