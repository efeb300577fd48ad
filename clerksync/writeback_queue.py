"""The write-back queue: which users' Clerk metadata still needs writing. No collection of
its own: the state lives on the user document, so it is written in the same durable write
as the change that caused it and survives anything the document survives.

``syncDueAt`` (sparse index) marks a user due and, pushed forward, leases it to one worker;
``syncSeq`` counts changes, so finishing an older write-back never clears a newer mark;
``syncAttempts`` drives the backoff and ``syncError`` keeps the last failure;
``doctor`` counts what is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerksync.mongo import utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection


class WriteBackQueue:
    """Queue operations over ``users``; ``UserStore`` inherits them."""

    users: Collection[Any]

    def mark_write_back(self, doc_id: Any) -> Mapping[str, Any] | None:
        from pymongo import ReturnDocument

        return self.users.find_one_and_update(
            {"_id": doc_id},
            {"$set": {"syncDueAt": utcnow()}, "$inc": {"syncSeq": 1}},
            return_document=ReturnDocument.AFTER,
        )

    def pending_write_backs(self) -> int:
        return self.users.count_documents({"syncDueAt": {"$exists": True}})

    def claim_write_back(self, lease: timedelta) -> Mapping[str, Any] | None:
        """Take the most overdue write-back; pushing ``syncDueAt`` forward is the lease,
        so another process skips it, and a crash just lets the lease run out."""
        from pymongo import ReturnDocument

        now = utcnow()
        return self.users.find_one_and_update(
            {"syncDueAt": {"$lte": now}},
            {"$set": {"syncDueAt": now + lease}},
            sort=[("syncDueAt", 1)],
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

        def seen(copy: Mapping[str, Any]) -> dict[str, Any]:
            return {"userMongoId": copy.get("userMongoId"), "isAdmin": copy.get("isAdmin")}

        result = self.users.bulk_write(
            [
                UpdateOne(
                    {"_id": doc["_id"], "syncSeq": doc.get("syncSeq")},
                    {
                        "$set": {"clerkMetadata": seen(copy), "syncAttempts": 0},
                        "$unset": {"syncDueAt": "", "syncError": ""},
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
                    UpdateOne({"_id": doc["_id"]}, {"$set": {"clerkMetadata": seen(copy)}})
                    for doc, copy in done
                ],
                ordered=False,
            )

    def defer_write_back(self, doc: Mapping[str, Any], due: datetime, error: str) -> None:
        self.users.update_one(
            {"_id": doc["_id"], "syncSeq": doc.get("syncSeq")},
            {"$set": {"syncDueAt": due, "syncError": error}, "$inc": {"syncAttempts": 1}},
        )

    def drop_write_back(self, doc: Mapping[str, Any], error: str) -> None:
        """Stop trying (the user is gone from Clerk); the error stays for doctor."""
        self.users.update_one(
            {"_id": doc["_id"], "syncSeq": doc.get("syncSeq")},
            {"$unset": {"syncDueAt": ""}, "$set": {"syncError": error}},
        )
