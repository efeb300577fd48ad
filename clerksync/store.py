"""UserStore: the ``users`` collection and clerksync's own bookkeeping, over pymongo.

Every write that precedes a webhook's 2xx uses ``w="majority", j=True`` so it
survives a failover. The unique ``clerkId`` index is what makes concurrent
upserts safe: two deliveries for one new user race to insert, one wins, the
other gets a duplicate-key error, which here means "someone newer got there".

Ordering: the rule and the documents a Clerk state writes live in
``clerksync.ordering``; this module applies them.

Deleted users leave a tombstone in ``clerksync_tombstones`` (keyed by Clerk id,
never reused by Clerk), so a late ``user.updated`` cannot bring them back.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clerksync import bookkeeping as bk
from clerksync.errors import Ambiguous, NotFound, StoreUnavailable
from clerksync.mongo import describe_mongo_error, duplicates_only, find_in, utcnow
from clerksync.ordering import is_older, new_document, ordering_filter, upsert_update
from clerksync.users import ClerkUser, metadata_differs
from clerksync.writeback_queue import WriteBackQueue

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    from clerksync.orgstore import OrgStore

USERS = "users"
TOMBSTONES = "clerksync_tombstones"
DELIVERIES = "clerksync_deliveries"

Outcome = Literal["applied", "duplicate", "stale"]


@dataclass(frozen=True)
class WriteResult:
    """What applying one Clerk state did, and whether Clerk's metadata now needs a write-back."""

    outcome: Outcome
    wants_write_back: bool = False


class UserStore(WriteBackQueue):
    """The users collection plus clerksync's tombstones, delivery log and write-back queue."""

    def __init__(self, client: MongoClient[Any], db_name: str) -> None:
        from pymongo import WriteConcern

        self.client = client
        self.db: Database[Any] = client[db_name]
        durable = WriteConcern(w="majority", j=True)
        self.users: Collection[Any] = self.db.get_collection(USERS, write_concern=durable)
        self.tombstones: Collection[Any] = self.db.get_collection(TOMBSTONES, write_concern=durable)
        # The log is diagnostics, not state: an acknowledged w=1 write is enough.
        self.deliveries: Collection[Any] = self.db.get_collection(
            DELIVERIES, write_concern=WriteConcern(w=1)
        )

    @functools.cached_property
    def orgs(self) -> OrgStore:
        """The organizations and memberships collections, in the same database."""
        from clerksync.orgstore import OrgStore

        return OrgStore(self.db)

    @property
    def name(self) -> str:
        return self.db.name

    def close(self) -> None:
        self.client.close()

    # -- health ------------------------------------------------------------------------------

    def ping(self) -> tuple[str, float]:
        """Server version and round-trip in ms, or StoreUnavailable."""
        from pymongo.errors import PyMongoError

        try:
            started = time.perf_counter()
            self.client.admin.command("ping")
            elapsed = (time.perf_counter() - started) * 1000
            version = self.client.server_info().get("version", "?")
        except PyMongoError as exc:
            raise StoreUnavailable(describe_mongo_error(exc)) from None
        return str(version), elapsed

    def ensure_indexes(self) -> None:
        """Create the indexes clerksync relies on; safe to call on every start."""
        from pymongo import ASCENDING

        self.users.create_index([("clerkId", ASCENDING)], unique=True, name="clerkId_1")
        self.users.create_index([("email", ASCENDING)], name="email_1")
        self.users.create_index([("username", ASCENDING)], name="username_1")
        self.users.create_index([(bk.DUE, ASCENDING)], sparse=True, name="clerksync_dueAt")
        self.deliveries.create_index(
            [("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expiresAt_ttl"
        )
        self.orgs.ensure_indexes()

    def has_unique_clerk_index(self) -> bool:
        for index in self.users.list_indexes():
            if dict(index["key"]) == {"clerkId": 1} and index.get("unique"):
                return True
        return False

    # -- lookups -----------------------------------------------------------------------------

    def count(self) -> int:
        return self.users.count_documents({})

    def find_user(self, ident: str) -> Mapping[str, Any]:
        """A user by Mongo id, Clerk id or email; NotFound or Ambiguous otherwise."""
        from bson import ObjectId

        ident = ident.strip()
        if ObjectId.is_valid(ident):
            doc = self.users.find_one({"_id": ObjectId(ident)})
            if doc:
                return doc
        if "@" in ident:
            pattern = {"$regex": f"^{re.escape(ident)}$", "$options": "i"}
            matches = list(self.users.find({"email": pattern}).limit(10))
            if len(matches) > 1:
                listed = ", ".join(f"{m['clerkId']} ({m['_id']})" for m in matches)
                raise Ambiguous(
                    f"{len(matches)} users have the email {ident}: {listed}. "
                    "Name one by its Clerk id or Mongo id."
                )
            if matches:
                return matches[0]
        else:
            doc = self.users.find_one({"clerkId": ident})
            if doc:
                return doc
        raise NotFound(
            f"no user {ident!r} in database {self.name!r} "
            "(give a Clerk id user_…, a Mongo id or an email; `clerksync users list` shows them)"
        )

    def list_users(
        self, *, admins: bool = False, search: str | None = None, limit: int | None = None
    ) -> Iterator[Mapping[str, Any]]:
        query: dict[str, Any] = {}
        if admins:
            query["isAdmin"] = True
        if search:
            pattern = {"$regex": re.escape(search), "$options": "i"}
            query["$or"] = [
                {field: pattern} for field in ("email", "firstName", "lastName", "username")
            ]
        cursor = self.users.find(query).sort("_id", -1)
        if limit:
            cursor = cursor.limit(limit)
        return iter(cursor)

    def is_tombstoned(self, clerk_id: str) -> bool:
        return self.tombstones.find_one({"_id": clerk_id}, {"_id": 1}) is not None

    def tombstoned_among(self, clerk_ids: list[str]) -> set[str]:
        """Which of these Clerk ids were deleted: one query for a whole batch (it matches few,
        so one ``$in`` of hundreds stays cheap, unlike ``find_in``'s case)."""
        query = {"_id": {"$in": clerk_ids}}
        return {t["_id"] for t in self.tombstones.find(query, {"_id": 1})}

    # -- applying Clerk state ----------------------------------------------------------------

    def upsert_user(self, user: ClerkUser, *, likely_new: bool = False) -> WriteResult:
        """Apply one Clerk state if it is newer than what is stored; one durable write.

        Returns ``stale`` for an older state or a deleted user, ``duplicate`` for
        the same state again (a retried delivery, or the same state re-sent).
        ``doc`` is not returned on this hot path: reading it back costs a round trip.
        ``likely_new`` (a ``user.created``) tries a plain insert first: it costs the
        server less than an upsert, and the unique ``clerkId`` index turns it into
        the ordered upsert below when the user is already there.
        """
        from pymongo.errors import DuplicateKeyError

        now = utcnow()
        update, queued = upsert_update(user, now)
        inserted = False
        if likely_new:
            try:
                self.users.insert_one(new_document(update))
                inserted = True
            except DuplicateKeyError:
                pass  # stored already: the ordering filter decides
        if not inserted:
            try:
                result = self.users.update_one(ordering_filter(user), update, upsert=True)
            except DuplicateKeyError:
                # The filter missed an existing document: what is stored is as new or newer.
                existing = self.users.find_one({"clerkId": user.id}, {bk.UPDATED_AT: 1})
                if existing is not None and bk.field(existing, bk.UPDATED_AT) == user.updated_at:
                    return WriteResult("duplicate")
                return WriteResult("stale")
            inserted = result.upserted_id is not None
        # Only an insert can resurrect a deleted user: a delete writes its tombstone
        # before removing the document, so if ours inserted, a tombstone written
        # before that is visible now. (If ours updated, the removal comes after it.)
        if inserted and self.is_tombstoned(user.id):
            self.users.delete_one({"clerkId": user.id, bk.UPDATED_AT: user.updated_at})
            return WriteResult("stale")
        if queued:
            return WriteResult("applied", wants_write_back=True)
        # Clerk's copy names an id and a role: usually our own write-back echoed back.
        # Check it against the stored document, and queue a write-back if it differs.
        doc = self.users.find_one({"clerkId": user.id}, {"isAdmin": 1, bk.SEEN: 1, bk.DUE: 1})
        if doc is not None and metadata_differs(doc):
            if not bk.has(doc, bk.DUE):
                self.mark_write_back(doc["_id"])
            return WriteResult("applied", wants_write_back=True)
        return WriteResult("applied")

    def delete_user(self, clerk_id: str) -> WriteResult:
        """Tombstone first, then delete: ``duplicate`` when both were already done."""
        from pymongo import ReturnDocument

        before = self.tombstones.find_one_and_update(
            {"_id": clerk_id},
            {"$setOnInsert": {"deletedAt": utcnow()}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        removed = self.users.delete_one({"clerkId": clerk_id}).deleted_count
        removed += self.orgs.remove_user_memberships(clerk_id)  # the cascade, after the tombstone
        return WriteResult("applied" if removed or before is None else "duplicate")

    def upsert_many(
        self, users: Iterable[ClerkUser], *, assume_new: bool = False
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
        database missed a stretch of signups or starts empty.
        """
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        batch = list(users)
        stored = {} if assume_new else self._stored_versions([u.id for u in batch])
        now = utcnow()
        fresh = [u for u in batch if u.id not in stored]
        older = [u for u in batch if u.id in stored and is_older(stored[u.id], u.updated_at)]
        inserted: list[str] = []  # Clerk ids of the documents this call created
        if fresh:
            docs = []
            for user in fresh:
                doc = new_document(upsert_update(user, now)[0])
                # A new document's id is news to Clerk: its write-back is due either way.
                doc.setdefault(bk.ROOT, {}).update(dueAt=now, seq=1)
                docs.append(doc)
            failed: set[int] = set()
            try:
                self.users.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                failed = duplicates_only(exc)
            older += [u for i, u in enumerate(fresh) if i in failed]  # there now: filter decides
            inserted += [u.id for i, u in enumerate(fresh) if i not in failed]
        updated = 0
        if older:
            ops = [
                UpdateOne(ordering_filter(u), upsert_update(u, now)[0], upsert=True) for u in older
            ]
            try:
                details: Mapping[str, Any] = self.users.bulk_write(
                    ops, ordered=False
                ).bulk_api_result
            except BulkWriteError as exc:
                duplicates_only(exc)  # the filter missed a newer state: nothing to do
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
                inserted += [older[entry["index"]].id for entry in upserted]
        gone = self.tombstoned_among(inserted) if inserted else set()
        if gone:
            self.users.delete_many({"clerkId": {"$in": sorted(gone)}})
        created = len(inserted) - len(gone)
        return {
            "created": created,
            "updated": updated,
            "unchanged": len(batch) - len(gone) - created - updated,
        }

    def plan_many(self, users: Iterable[ClerkUser]) -> dict[str, int]:
        """What ``upsert_many`` would do, writing nothing (reconcile --dry-run)."""
        batch = list(users)
        ids = [u.id for u in batch]
        gone = self.tombstoned_among(ids)
        stored = self._stored_versions(ids)
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for user in batch:
            if user.id in gone:
                continue
            if user.id not in stored:
                counts["created"] += 1
            elif is_older(stored[user.id], user.updated_at):
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
        return counts

    def _stored_versions(self, clerk_ids: list[str]) -> dict[str, Any]:
        """Clerk id -> the stored ``clerksync.updatedAt`` (None if the app wrote the document)."""
        projection = {"clerkId": 1, bk.UPDATED_AT: 1, "_id": 0}
        found = find_in(self.users, "clerkId", clerk_ids, projection)
        return {d["clerkId"]: bk.field(d, bk.UPDATED_AT) for d in found}

    # -- admin rights ------------------------------------------------------------------------

    def set_admin(self, doc_id: Any, value: bool) -> Mapping[str, Any]:
        """Set ``isAdmin`` and queue the write-back in the same durable write."""
        from pymongo import ReturnDocument

        now = utcnow()
        doc = self.users.find_one_and_update(
            {"_id": doc_id},
            {
                "$set": {"isAdmin": value, "updatedAt": now, bk.DUE: now},
                "$inc": {bk.SEQ: 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"user {doc_id} vanished while being updated")
        return doc
