"""The write-back queue: which users' Clerk metadata still needs writing, and who is writing
it. No collection of its own: the state lives on the user document, so the mark is written
in the same durable write as the change that caused it and survives anything the document
survives (the fields are listed in ``clerksync.bookkeeping``).

Marking (``Store.upsert_user``, ``set_admin``, reconcile) sets ``clerksync.dueAt`` and
bumps ``clerksync.seq``, and never touches a claim. Claiming takes a *lease*: an owner id
and a short expiry (``LEASE``), renewed while the write runs (``writeback.LeaseKeeper``).
Another process skips a leased user, and a process killed mid-write holds its users for at
most one lease, so a restart resumes them within seconds. Finishing clears the mark only if
``seq`` is what the claim read: a change made meanwhile keeps its mark and is written next.

Every operation here is a plain ``update_one``/``find`` by ``_id`` or the Clerk id (one index
lookup, about 1 ms at any backlog on the wire server): ``findAndModify`` costs a collection
scan there (80-120 ms at 10,000 users, with or without a sort), and a range over
``clerksync.dueAt`` costs every document it matches, so only ``sweep`` reads one.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.users import seen_copy
from clerksync.store.mongo import IN_CHUNK, translating, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.mapping.schema import Schema
    from clerksync.store.database import Store


#: how long a claim holds without renewal: a killed process's users wait at most this long
LEASE = timedelta(seconds=10)


#: recent metadata writes remembered per user (Clerk allows 10 per 10 s)
KEEP_WRITES = 10


Key = Mapping[str, Any]  # a filter naming one user: {"_id": …} or the Clerk id's


@translating
class WriteBackQueue:
    """Mark, claim, finish, defer and park write-backs on the ``users`` collection.

    ``owner`` names this process in the leases it takes (random unless given)."""

    def __init__(
        self,
        users: Collection[Any],
        schema: Schema,
        *,
        owner: str | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self.users = users
        self.schema = schema
        self.owner = owner or uuid.uuid4().hex
        self.lease = lease

    # -- reading -----------------------------------------------------------------------------

    def pending(self) -> int:
        return self.users.count_documents({bk.DUE: {"$exists": True}})

    def backlog(self) -> tuple[int, float | None]:
        """(users marked, seconds the oldest due one has been due, or None): the receiver's
        ``/metrics`` reads it when scraped. The age is one indexed read (``dueAt``
        ascending); the count costs what is marked, so it is the scrape's, never a
        delivery's."""
        # The count first: a worker finishing between the two reads then shows as a backlog
        # without an age, never as none with an age (the order the other way round did).
        marked = self.pending()
        if not marked:
            return 0, None
        now = utcnow()
        oldest = self.users.find({bk.DUE: {"$lte": now}}, {bk.DUE: 1}).sort(bk.DUE, 1).limit(1)
        due = next((bk.field(doc, bk.DUE) for doc in oldest), None)
        age = (now - due).total_seconds() if isinstance(due, datetime) else None
        return marked, age

    # Write-backs that stopped: no mark (``dueAt``), so ``pending`` cannot see them, but Clerk
    # does not hold what MongoDB says. These read fields with no index (a collection scan):
    # for ``doctor``, never for the hot path.

    #: a parked user: retrying could not fix its write-back (``park``)
    _PARKED = {bk.PARKED: {"$exists": True}, bk.DUE: {"$exists": False}}
    #: a dropped one: Clerk did not have the user (``drop``), the error kept
    _DROPPED = {
        bk.ERROR: {"$exists": True},
        bk.DUE: {"$exists": False},
        bk.PARKED: {"$exists": False},
    }

    def parked(self) -> int:
        """Users whose write-back was parked and not marked again since."""
        return self.users.count_documents(self._PARKED)

    def dropped(self) -> int:
        """Users whose write-back was dropped because Clerk did not know them."""
        return self.users.count_documents(self._DROPPED)

    def stopped_examples(self, limit: int = 3) -> list[tuple[str, str]]:
        """A few stopped write-backs as (Clerk id, last error), parked ones first."""
        clerk_id = self.schema.users.clerk_id
        found: list[tuple[str, str]] = []
        for query in (self._PARKED, self._DROPPED):
            if len(found) >= limit:
                break
            docs = self.users.find(query, {clerk_id: 1, bk.ERROR: 1}).limit(limit - len(found))
            found += [(str(bk.field(d, clerk_id)), str(bk.field(d, bk.ERROR) or "")) for d in docs]
        return found

    def sweep(self, limit: int) -> list[tuple[Any, datetime]]:
        """The most overdue marks, as (``_id``, when it can be claimed): a plain indexed find
        (never findAndModify). Its cost grows with what is due, so the workers call it only
        when their own hand-off queue is idle: at start, and every few seconds after."""
        now = utcnow()
        fields = {"_id": 1, bk.DUE: 1, bk.LEASE_UNTIL: 1}
        found = self.users.find({bk.DUE: {"$lte": now}}, fields).sort(bk.DUE, 1).limit(limit)
        return [(doc["_id"], self._ready_at(doc, now)) for doc in found]

    def next_try(self, key: Key) -> datetime | None:
        """When a user that could not be claimed can be tried again; None: nothing is due."""
        doc = self.users.find_one(key, {bk.DUE: 1, bk.LEASE_UNTIL: 1})
        if doc is None or not bk.has(doc, bk.DUE):
            return None
        return self._ready_at(doc, utcnow())

    @staticmethod
    def _ready_at(doc: Mapping[str, Any], now: datetime) -> datetime:
        due = bk.field(doc, bk.DUE)
        lease = bk.field(doc, bk.LEASE_UNTIL)
        ready = max(due, lease) if isinstance(lease, datetime) else due
        return ready if isinstance(ready, datetime) else now

    # -- claiming ----------------------------------------------------------------------------

    def claim(self, key: Key, *, due_only: bool = True) -> Mapping[str, Any] | None:
        """Lease one user and read it, or None when it is not due (``due_only``), leased by
        someone else, or gone. Two round trips, both index lookups."""
        now = utcnow()
        query: dict[str, Any] = {**key, bk.LEASE_UNTIL: {"$not": {"$gt": now}}}
        if due_only:
            query[bk.DUE] = {"$lte": now}
        taken = self.users.update_one(
            query, {"$set": {bk.LEASE_OWNER: self.owner, bk.LEASE_UNTIL: now + self.lease}}
        )
        if not taken.matched_count:
            return None
        # Read by the key alone, the owner checked here: a find that names one more field
        # is a collection scan on some servers' planners (the test server's: 4 ms at 3,000
        # users, 25 at 20,000, each claim stalling every delivery behind it).
        doc = self.users.find_one(key)
        return doc if doc is not None and bk.field(doc, bk.LEASE_OWNER) == self.owner else None

    def claim_many(self, ids: list[Any]) -> list[Mapping[str, Any]]:
        """Lease every user of ``ids`` nobody else holds, due or not, and read them: a bulk
        job's batch in a few round trips (``$in`` of ``IN_CHUNK`` ids) instead of two each."""
        claimed: list[Mapping[str, Any]] = []
        now = utcnow()
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            self.users.update_many(
                {"_id": {"$in": chunk}, bk.LEASE_UNTIL: {"$not": {"$gt": now}}},
                {"$set": {bk.LEASE_OWNER: self.owner, bk.LEASE_UNTIL: now + self.lease}},
            )
            # by ``_id`` alone, the owner checked here (see ``claim``)
            claimed += [
                doc
                for doc in self.users.find({"_id": {"$in": chunk}})
                if bk.field(doc, bk.LEASE_OWNER) == self.owner
            ]
        return claimed

    def renew(self, ids: Iterable[Any]) -> None:
        """Push our leases on these users forward (the ones we no longer hold stay as they are)."""
        held = list(ids)
        until = utcnow() + self.lease
        for start in range(0, len(held), IN_CHUNK):
            self.users.update_many(
                {"_id": {"$in": held[start : start + IN_CHUNK]}, bk.LEASE_OWNER: self.owner},
                {"$set": {bk.LEASE_UNTIL: until}},
            )

    # -- ending a claim ----------------------------------------------------------------------

    def finish(self, done: list[tuple[Mapping[str, Any], Mapping[str, Any], bool]]) -> int:
        """Record Clerk's copy for claimed users and let go of them: ``(doc, copy, wrote)``.

        The mark is cleared only where ``seq`` is still the claimed one; a user changed
        meanwhile keeps its mark (due now), so the newest state is written next. ``wrote``
        adds the write's time to the user's recent writes (the per-user limit). Returns how
        many kept their mark. Two bulk writes at most, whatever the batch."""
        from pymongo import UpdateOne

        if not done:
            return 0
        now = time.time()

        def update(copy: Mapping[str, Any], wrote: bool, *, clear: bool) -> dict[str, Any]:
            unset = {bk.LEASE_OWNER: "", bk.LEASE_UNTIL: ""}
            if clear:
                unset.update({bk.DUE: "", bk.ERROR: "", bk.PARKED: ""})
            change: dict[str, Any] = {
                "$set": {bk.SEEN: seen_copy(copy, self.schema.users)},
                "$unset": unset,
            }
            if clear:
                change["$set"][bk.ATTEMPTS] = 0
                change["$set"][bk.FAULTS] = 0
            if wrote:
                change["$push"] = {bk.WRITES: {"$each": [now], "$slice": -KEEP_WRITES}}
            return change

        owned = {bk.LEASE_OWNER: self.owner}
        cleared = self.users.bulk_write(
            [
                UpdateOne(
                    {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ), **owned},
                    update(copy, wrote, clear=True),
                )
                for doc, copy, wrote in done
            ],
            ordered=False,
        ).matched_count
        if cleared == len(done):
            return 0
        # Re-marked while we wrote: record what Clerk holds now and let go; the mark stays.
        kept = self.users.bulk_write(
            [
                UpdateOne({"_id": doc["_id"], **owned}, update(copy, wrote, clear=False))
                for doc, copy, wrote in done
            ],
            ordered=False,
        ).matched_count
        return int(kept)

    def settle(self, agreed: list[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
        """Clear the marks of unclaimed users whose Clerk copy already agrees (sync-metadata
        read it): only where nobody holds a lease and ``seq`` has not moved."""
        from pymongo import UpdateOne

        if not agreed:
            return
        now = utcnow()
        self.users.bulk_write(
            [
                UpdateOne(
                    {
                        "_id": doc["_id"],
                        bk.SEQ: bk.field(doc, bk.SEQ),
                        bk.LEASE_UNTIL: {"$not": {"$gt": now}},
                    },
                    {
                        "$set": {
                            bk.SEEN: seen_copy(copy, self.schema.users),
                            bk.ATTEMPTS: 0,
                            bk.FAULTS: 0,
                        },
                        "$unset": {bk.DUE: "", bk.ERROR: "", bk.PARKED: ""},
                    },
                )
                for doc, copy in agreed
            ],
            ordered=False,
        )

    def defer(
        self,
        doc: Mapping[str, Any],
        due: datetime,
        error: str,
        *,
        failed: bool = True,
        fault: bool = False,
    ) -> None:
        """Let go and try again at ``due``; ``failed`` counts an attempt (for the backoff),
        ``fault`` a failure that was not Clerk's (``clerksync.faults``, which parks)."""
        change: dict[str, Any] = {
            "$set": {bk.DUE: due, bk.ERROR: error},
            "$unset": {bk.LEASE_OWNER: "", bk.LEASE_UNTIL: ""},
        }
        if fault:
            change["$inc"] = {bk.FAULTS: 1}
        elif failed:
            change["$inc"] = {bk.ATTEMPTS: 1}
        self.users.update_one({"_id": doc["_id"], bk.LEASE_OWNER: self.owner}, change)

    def drop(self, doc: Mapping[str, Any], error: str) -> None:
        """Stop trying (the user is gone from Clerk); the error stays for doctor."""
        self.users.update_one(
            {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ), bk.LEASE_OWNER: self.owner},
            {
                "$unset": {bk.DUE: "", bk.LEASE_OWNER: "", bk.LEASE_UNTIL: ""},
                "$set": {bk.ERROR: error},
            },
        )
        self.release(doc)  # re-marked meanwhile: the new mark stays

    def park(self, doc: Mapping[str, Any], error: str) -> None:
        """Stop retrying a user whose write-back fails in a way retrying cannot fix; the next
        change to the user (a delivery, promote/demote) marks it again. Like ``drop``, only
        where ``seq`` is still the claimed one: a change made meanwhile keeps its mark."""
        self.users.update_one(
            {"_id": doc["_id"], bk.SEQ: bk.field(doc, bk.SEQ), bk.LEASE_OWNER: self.owner},
            {
                "$unset": {bk.DUE: "", bk.LEASE_OWNER: "", bk.LEASE_UNTIL: ""},
                "$set": {bk.ERROR: f"parked: {error}", bk.PARKED: utcnow()},
            },
        )
        self.release(doc)  # re-marked meanwhile: the new mark stays

    def release(self, doc: Mapping[str, Any]) -> None:
        """Let go of a claim without touching the mark."""
        self.users.update_one(
            {"_id": doc["_id"], bk.LEASE_OWNER: self.owner},
            {"$unset": {bk.LEASE_OWNER: "", bk.LEASE_UNTIL: ""}},
        )


_QUEUES: weakref.WeakKeyDictionary[Any, WriteBackQueue] = weakref.WeakKeyDictionary()


def queue_of(store: Store) -> WriteBackQueue:
    """The store's write-back queue: one per store, so every claim this process makes through
    it (workers, bulk jobs, promote/demote) carries the same lease owner."""
    queue = _QUEUES.get(store)
    if queue is None:
        queue = _QUEUES[store] = WriteBackQueue(store.users, store.schema)
    return queue
