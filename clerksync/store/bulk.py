"""Reconcile's bulk writes: a page of Clerk users planned with one read and written with
``insert_many`` and ordered upserts, under the receiver's ordering, tombstone, adoption and
index rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clerksync.kinds.user import ClerkUser
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import (
    held_positions,
    is_older,
    new_document,
    ordering_filter,
    upsert_update,
)
from clerksync.mapping.users import clerk_copy_differs
from clerksync.store.mongo import duplicates_only, translating, utcnow

if TYPE_CHECKING:
    pass
from clerksync.store.adoption import AdoptingStore
from clerksync.store.base import with_mark


@translating
class BulkStore(AdoptingStore):
    """Reconcile's writes: a page of Clerk users at a time, by the receiver's rules."""

    def upsert_many(
        self,
        users: Iterable[ClerkUser],
        *,
        assume_new: bool = False,
        candidates: Mapping[str, list[Any]] | None = None,
        prepared: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, int]:
        """Bulk form of ``upsert_user`` for reconcile: the same rules, a few round trips a batch.

        One read of the stored versions splits the batch: users MongoDB lacks are
        inserted (``insert_many`` costs the server less than upserts), users it holds
        an older state of are updated through the ordering filter, and the rest cost
        no write at all, so a second run writes nothing. The read is only a plan: a
        user inserted meanwhile (by the receiver, say) fails its insert on the unique
        index and takes the ordered upsert instead; and the tombstones are read after
        the writes, for what was inserted, as the receiver does, so a delete racing
        the run cannot be undone by it. ``assume_new`` skips the read and inserts the
        whole batch (the users that are there already fail on the unique index and go
        the ordered way): cheaper when the previous batch was all new, as it is when a
        database missed a stretch of signups or starts empty. Users MongoDB lacks whose
        verified email names one app-created document adopt it instead (``adopted``).
        ``prepared``: the new documents ``new_documents`` made for some of these users
        beforehand (reconcile makes them in its reader thread); the rest are made here.
        """
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        schema = self.schema
        clerk_id = schema.users.clerk_id
        batch = list(users)
        # The plan reads what the metadata comparison needs too: an update whose Clerk copy
        # names every key but disagrees with the document queues its write-back in the same
        # write, as the receiver's does.
        compare = schema.users.projection()
        docs_held = {} if assume_new else self._stored_docs([u.id for u in batch], compare)
        stored = {i: bk.field(d, bk.UPDATED_AT) for i, d in docs_held.items()}
        now = utcnow()
        fresh = [u for u in batch if u.id not in stored]
        older = [u for u in batch if u.id in stored and is_older(stored[u.id], u.updated_at)]
        adopted = 0
        verified = [u for u in fresh if u.email and u.email_verified]
        if verified:
            found = self._candidates_for(verified, candidates)
            gone_now = self.tombstoned_among([u.id for u in verified]) if found else set()
            taken: set[str] = set()
            for user in verified:
                docs = found.get((user.email or "").lower(), [])
                if len(docs) != 1 or user.id in gone_now:
                    continue
                took = self._take_over(user, docs[0], now)
                if took is not None:  # adopted, or adopted and deleted again (stale)
                    if took.outcome == "applied":
                        adopted += 1
                    taken.add(user.id)
            fresh = [u for u in fresh if u.id not in taken]
        inserted: list[str] = []  # Clerk ids of the documents this call created
        if fresh:
            ids = self.allocate_app_ids(len(fresh)) if schema.users.app_id else None
            docs = []
            for n, user in enumerate(fresh):
                doc = None if ids or prepared is None else prepared.get(user.id)
                if doc is None:
                    app_id = ids[n] if ids else None
                    doc = new_document(upsert_update(user, now, schema, app_id=app_id)[0])
                # A new document's id is news to Clerk: its write-back is due either way.
                doc.setdefault(bk.ROOT, {}).update(dueAt=now, seq=1)
                docs.append(doc)
            failed: set[int] = set()
            try:
                self.users.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                failed = duplicates_only(
                    exc,
                    self._ours,
                    self.users.name,
                    stored=held_positions(fresh, self._stored_versions, any_state=True),
                )
            there = [u for i, u in enumerate(fresh) if i in failed]  # there now: filter decides
            if there:
                docs_held.update(self._stored_docs([u.id for u in there], compare))
            older += there
            inserted += [u.id for i, u in enumerate(fresh) if i not in failed]
        updated = 0
        if older:
            # No app id here: these documents are there (the plan, or a failed insert, said
            # so); the rare one gone meanwhile gets its id below, once it is upserted.
            ops = [
                UpdateOne(
                    ordering_filter(u, schema), self._bulk_update(u, now, docs_held), upsert=True
                )
                for u in older
            ]
            try:
                details: Mapping[str, Any] = self.users.bulk_write(
                    ops, ordered=False
                ).bulk_api_result
            except BulkWriteError as exc:
                # a newer state stored meanwhile: nothing to do
                duplicates_only(
                    exc,
                    self._ours,
                    self.users.name,
                    stored=held_positions(older, self._stored_versions),
                )
                details = exc.details
            updated = int(details.get("nModified", 0))
            # Gone between the plan and the write, so upserted: created after all, and
            # with a new id, so its write-back is due.
            upserted = details.get("upserted", [])
            if upserted:
                self.users.update_many(
                    {"_id": {"$in": [entry["_id"] for entry in upserted]}},
                    {"$set": {bk.DUE: now}, "$inc": {bk.SEQ: 1}},
                )
                if schema.users.app_id:
                    field = schema.users.app_id
                    for entry, app_id in zip(
                        upserted, self.allocate_app_ids(len(upserted)), strict=True
                    ):
                        self.users.update_one(
                            {"_id": entry["_id"], field: {"$exists": False}},
                            {"$set": {field: app_id}},
                        )
                inserted += [older[entry["index"]].id for entry in upserted]
        gone = self.tombstoned_among(inserted) if inserted else set()
        if gone:
            self.users.delete_many({clerk_id: {"$in": sorted(gone)}})
        created = len(inserted) - len(gone)
        return {
            "created": created,
            "updated": updated,
            "adopted": adopted,
            "unchanged": len(batch) - len(gone) - created - updated - adopted,
        }

    def new_documents(self, users: Iterable[ClerkUser]) -> dict[str, dict[str, Any]]:
        """The documents ``upsert_many`` would insert for these users, by Clerk id, made
        ahead of the write (none when the schema has an app id: it is allocated at the
        insert)."""
        if self.schema.users.app_id:
            return {}
        now = utcnow()
        return {u.id: new_document(upsert_update(u, now, self.schema)[0]) for u in users}

    def _bulk_update(
        self, user: ClerkUser, now: Any, docs_held: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ordered update of a stored user, marked when Clerk's copy lacks our keys
        (``upsert_update``) or names them all but disagrees with the stored document."""
        update, queued = upsert_update(user, now, self.schema)
        doc = docs_held.get(user.id)
        if (
            not queued
            and doc is not None
            and clerk_copy_differs(user.public_metadata, doc, self.schema.users)
        ):
            return with_mark(update, now)
        return update

    def plan_many(
        self, users: Iterable[ClerkUser], *, candidates: Mapping[str, list[Any]] | None = None
    ) -> dict[str, int]:
        """What ``upsert_many`` would do, writing nothing (reconcile --dry-run)."""
        batch = list(users)
        ids = [u.id for u in batch]
        gone = self.tombstoned_among(ids)
        stored = self._stored_versions(ids)
        counts = {"created": 0, "updated": 0, "adopted": 0, "unchanged": 0}
        found = self._candidates_for(
            [u for u in batch if u.email and u.email_verified and u.id not in stored], candidates
        )
        for user in batch:
            if user.id in gone:
                continue
            if user.id not in stored:
                adoptable = (
                    user.email_verified and len(found.get((user.email or "").lower(), [])) == 1
                )
                counts["adopted" if adoptable else "created"] += 1
            elif is_older(stored[user.id], user.updated_at):
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
        return counts
