"""UserStore: the app's users collection and clerksync's own bookkeeping, over pymongo.

Every field name comes from the schema (``clerksync.schema``): the app's collection, the
app's names. Every write that precedes a webhook's 2xx uses ``w="majority", j=True`` so it
survives a failover. clerksync's unique Clerk-id index is what makes concurrent upserts
safe: two deliveries for one new user race to insert, one wins, the other gets a
duplicate-key error, which here means "someone newer got there". A duplicate-key error
from any *other* index (the app's unique ``username``, say) is a failure
(``IndexRefused``), never taken for that.

Ordering: the rule and the documents a Clerk state writes live in
``clerksync.ordering``; this module applies them.

Deleted users leave a tombstone in ``clerksync_tombstones`` (keyed by Clerk id,
never reused by Clerk), so a late ``user.updated`` cannot bring them back.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clerksync import bookkeeping as bk
from clerksync.errors import Ambiguous, ConfigError, IndexRefused, NotFound, StoreUnavailable
from clerksync.mongo import (
    database_name,
    describe_mongo_error,
    duplicates_only,
    find_in,
    index_refused,
    refused_by,
    translating,
    utcnow,
)
from clerksync.ordering import is_older, new_document, ordering_filter, upsert_update
from clerksync.schema import CLERK_USER_ID, DEFAULT, Schema
from clerksync.users import ClerkUser, agreeing_filter, clerk_copy_differs
from clerksync.writeback_queue import WriteBackQueue

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    from clerksync.config import Settings
    from clerksync.orgstore import Keep, OrgStore

TOMBSTONES = "clerksync_tombstones"
COUNTERS = "clerksync_counters"
LOOKUP_THREADS = 4  # concurrent equality lookups when reconcile plans a page
DUE_INDEX = "clerksync_dueAt"

Outcome = Literal["applied", "duplicate", "stale"]


@dataclass(frozen=True)
class WriteResult:
    """What applying one Clerk state did, and whether Clerk's metadata now needs a write-back.
    ``adopted``: the state took over a document the app had created (same verified email)."""

    outcome: Outcome
    wants_write_back: bool = False
    adopted: bool = False


@dataclass(frozen=True)
class IndexResult:
    """One index clerksync needs: in place, or why not (``error``)."""

    collection: str
    name: str
    error: str | None = None


@dataclass(frozen=True)
class IndexReport:
    """What ``ensure_indexes`` made. Each index is made on its own: one failure (the app's
    data, the app's index of the same name) never keeps the others from being made."""

    results: tuple[IndexResult, ...]
    clerk_id_enforced: bool

    @property
    def failures(self) -> tuple[IndexResult, ...]:
        return tuple(r for r in self.results if r.error)


def with_mark(update: Mapping[str, Any], now: Any) -> dict[str, Any]:
    """``update`` that also marks the write-back due (``clerksync.dueAt``, ``seq`` + 1)."""
    marked = {op: dict(fields) for op, fields in update.items()}
    marked["$set"][bk.DUE] = now
    marked["$inc"] = {**marked.get("$inc", {}), bk.SEQ: 1}
    return marked


@translating
class UserStore:
    """The app's users collection plus clerksync's tombstones, counters, delivery log and
    write-back queue (``queue``: a ``WriteBackQueue`` on the same collection). ``schema``
    names the app's collection and fields."""

    def __init__(self, client: MongoClient[Any], db_name: str, schema: Schema = DEFAULT) -> None:
        from pymongo import WriteConcern

        from clerksync.deliveries import log_collection

        self.client = client
        self.schema = schema
        self.db: Database[Any] = client[db_name]
        durable = WriteConcern(w="majority", j=True)
        self.users: Collection[Any] = self.db.get_collection(
            schema.users.collection, write_concern=durable
        )
        self.tombstones: Collection[Any] = self.db.get_collection(TOMBSTONES, write_concern=durable)
        self.counters: Collection[Any] = self.db.get_collection(COUNTERS, write_concern=durable)
        self.deliveries: Collection[Any] = log_collection(self.db)  # the log's own
        self._counter_seeded = False
        self._email_index: tuple[float, str | None] | None = None
        self._clerk_index_partial: bool | None = None  # learnt from the index list
        self.queue = WriteBackQueue(self.users, schema)

    def pending_write_backs(self) -> int:
        return self.queue.pending()

    def clerk_key(self, clerk_id: str) -> dict[str, Any]:
        """The filter naming one user by Clerk id (what the write-back hand-off claims by)."""
        return {self.schema.users.clerk_id: clerk_id}

    @functools.cached_property
    def orgs(self) -> OrgStore:
        """The organizations and memberships collections, in the same database."""
        from clerksync.orgstore import OrgStore

        return OrgStore(self.db, self.schema)

    @property
    def name(self) -> str:
        return self.db.name

    @property
    def clerk_id(self) -> str:
        """The app's field for the Clerk user id."""
        return self.schema.users.clerk_id

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

    def ensure_indexes(self) -> IndexReport:
        """Make the indexes clerksync needs, each on its own; safe to call on every start.

        clerksync's own collections first (the delivery log's TTL above all: stored payloads
        must expire whatever happens on the app's collection). On the app's collection only
        what clerksync cannot work without: the Clerk-id unique index, *partial* (documents
        without a Clerk id never block it), unless a unique index on that field is there
        already (the app's model may declare one); and the bookkeeping index. Never a key
        pattern the app's model declares (email, username: the app's to index).
        """
        from pymongo import ASCENDING
        from pymongo.errors import PyMongoError

        from clerksync.deliveries import TTL_INDEX, ensure_log_indexes

        results: list[IndexResult] = []

        def attempt(collection: str, name: str, create: Callable[[], object]) -> None:
            try:
                create()
            except PyMongoError as exc:
                results.append(IndexResult(collection, name, _index_error(exc)))
            else:
                results.append(IndexResult(collection, name))

        def make(collection: Collection[Any], keys: Any, name: str, **options: Any) -> None:
            attempt(
                collection.name, name, lambda: collection.create_index(keys, name=name, **options)
            )

        attempt(self.deliveries.name, TTL_INDEX, lambda: ensure_log_indexes(self))
        clerk_id = self.clerk_id
        try:
            enforced = self.has_unique_clerk_index()
        except StoreUnavailable as exc:
            results.append(IndexResult(self.users.name, f"{clerk_id}_1", str(exc)))
            enforced = False
        else:
            if not enforced:
                make(
                    self.users,
                    [(clerk_id, ASCENDING)],
                    f"{clerk_id}_1",
                    unique=True,
                    partialFilterExpression=clerk_id_filter(clerk_id),
                )
                enforced = results[-1].error is None
            else:
                results.append(IndexResult(self.users.name, self.clerk_index_name() or "?"))
        make(self.users, [(bk.DUE, ASCENDING)], DUE_INDEX, sparse=True)
        return IndexReport(tuple(results), enforced)

    def app_indexes(self) -> list[Mapping[str, Any]]:
        """The users collection's indexes (none when it does not exist yet)."""
        from pymongo.errors import PyMongoError

        try:
            return list(self.users.list_indexes())
        except PyMongoError as exc:
            raise StoreUnavailable(describe_mongo_error(exc)) from None

    def clerk_index_name(self) -> str | None:
        """The name of a unique index on the Clerk-id field alone (ours or the app's)."""
        for index in self.app_indexes():
            if dict(index["key"]) == {self.clerk_id: 1} and index.get("unique"):
                self._clerk_index_partial = "partialFilterExpression" in index
                return str(index["name"])
        return None

    def has_unique_clerk_index(self) -> bool:
        return self.clerk_index_name() is not None

    def _ours(self, details: Mapping[str, Any]) -> bool:
        """Did clerksync's Clerk-id index refuse this write (and not one of the app's)?"""
        name, pattern = refused_by(details)
        if pattern:
            return pattern == {self.clerk_id: 1}
        return name == f"{self.clerk_id}_1"

    def _refused(self, exc: Any, what: str) -> Exception:
        return index_refused(exc.details or {}, self.users.name, what)

    # -- lookups -----------------------------------------------------------------------------

    def count(self) -> int:
        return self.users.count_documents({})

    def find_user(self, ident: str) -> Mapping[str, Any]:
        """A user by Mongo id, Clerk id or email; NotFound or Ambiguous otherwise."""
        from bson import ObjectId

        users = self.schema.users
        ident = ident.strip()
        if ObjectId.is_valid(ident):
            doc = self.users.find_one({"_id": ObjectId(ident)})
            if doc:
                return doc
        if "@" in ident and users.email:
            pattern = {"$regex": f"^{re.escape(ident)}$", "$options": "i"}
            matches = list(self.users.find({users.email: pattern}).limit(10))
            if len(matches) > 1:
                listed = ", ".join(f"{m.get(users.clerk_id)} ({m['_id']})" for m in matches)
                raise Ambiguous(
                    f"{len(matches)} users have the email {ident}: {listed}. "
                    "Name one by its Clerk id or Mongo id."
                )
            if matches:
                return matches[0]
        elif "@" not in ident:
            doc = self.users.find_one({users.clerk_id: ident})
            if doc:
                return doc
        raise NotFound(
            f"no user {ident!r} in database {self.name!r} "
            "(give a Clerk id user_…, a Mongo id or an email; `clerksync users list` shows them)"
        )

    def list_users(
        self, *, admins: bool = False, search: str | None = None, limit: int | None = None
    ) -> Iterator[Mapping[str, Any]]:
        users = self.schema.users
        query: dict[str, Any] = {}
        if admins:
            query[users.admin.field] = users.admin.value
        if search:
            pattern = {"$regex": re.escape(search), "$options": "i"}
            query["$or"] = [{field: pattern} for field in users.search_fields] or [
                {users.clerk_id: pattern}
            ]
        cursor = self.users.find(query).sort("_id", -1)
        if limit:
            cursor = cursor.limit(limit)
        yield from cursor

    def scan(
        self, query: Mapping[str, Any], projection: Mapping[str, Any], *, batch: int = 1000
    ) -> Iterator[Mapping[str, Any]]:
        """The users matching ``query``, in natural order (a sort would make the server read
        them all first), a fixed cursor batch (memory stays flat)."""
        yield from self.users.find(query, projection).batch_size(batch)

    def estimated_count(self) -> int:
        return self.users.estimated_document_count()

    def is_tombstoned(self, clerk_id: str) -> bool:
        return self.tombstones.find_one({"_id": clerk_id}, {"_id": 1}) is not None

    def tombstoned_among(self, clerk_ids: list[str]) -> set[str]:
        """Which of these Clerk ids were deleted: one query for a whole batch (it matches few,
        so one ``$in`` of hundreds stays cheap)."""
        query = {"_id": {"$in": clerk_ids}}
        return {t["_id"] for t in self.tombstones.find(query, {"_id": 1})}

    # -- the app id ----------------------------------------------------------------------------

    def allocate_app_ids(self, count: int = 1) -> list[int]:
        """``count`` integers for the schema's app id (``user_id``): from one counter document,
        ``$inc`` is atomic, so concurrent signups never share one, and a number handed out is
        never handed out again (a failed insert just leaves a gap). The counter starts above
        the largest id the collection holds (``$max``), so ids the app allocated itself
        before clerksync are never reused either."""
        from pymongo import ReturnDocument

        field = self.schema.users.app_id
        assert field is not None
        key = f"{self.users.name}.{field}"
        if not self._counter_seeded:
            self._seed_counter(key, field)
        after = self.counters.find_one_and_update(
            {"_id": key},
            {"$inc": {"seq": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert after is not None  # an upsert returning the document after
        last = int(after["seq"])
        return list(range(last - count + 1, last + 1))

    def _seed_counter(self, key: str, field: str) -> None:
        from pymongo.errors import DuplicateKeyError

        top = self.users.find_one({field: {"$type": "number"}}, {field: 1}, sort=[(field, -1)])
        highest = int(top[field]) if top is not None else 0
        try:
            self.counters.update_one({"_id": key}, {"$max": {"seq": highest}}, upsert=True)
        except DuplicateKeyError:  # another process seeded it at the same moment
            self.counters.update_one({"_id": key}, {"$max": {"seq": highest}})
        self._counter_seeded = True

    def _app_id(self) -> int | None:
        return self.allocate_app_ids()[0] if self.schema.users.app_id else None

    # -- applying Clerk state ----------------------------------------------------------------

    def upsert_user(self, user: ClerkUser, *, likely_new: bool = False) -> WriteResult:
        """``apply_user``, once more if the app's own unique index on the app id refused the
        number: the app allocated ids itself since the counter was seeded, so it is seeded
        again above them."""
        try:
            return self.apply_user(user, likely_new=likely_new)
        except IndexRefused as exc:
            if not self.schema.users.app_id or exc.keys != (self.schema.users.app_id,):
                raise
            self._counter_seeded = False
            return self.apply_user(user, likely_new=likely_new)

    def apply_user(self, user: ClerkUser, *, likely_new: bool = False) -> WriteResult:
        """Apply one Clerk state if it is newer than what is stored; one durable write.

        Returns ``stale`` for an older state or a deleted user, ``duplicate`` for
        the same state again (a retried delivery, or the same state re-sent).
        ``doc`` is not returned on this hot path: reading it back costs a round trip.
        ``likely_new`` (a ``user.created``) tries a plain insert first: it costs the
        server less than an upsert, and the unique Clerk-id index turns it into
        the ordered upsert below when the user is already there. A user about to be
        created first takes over an app-created document with its verified email, if
        exactly one (``adopt``), when the app's email field is indexed (the lookup is
        then one index probe; without the index it would scan the collection on every
        signup: ``reconcile`` adopts then, and ``doctor`` says so). When that index is
        unique (the guide's model), the insert goes first and the lookup is made only if
        the email index refuses it: a signup then costs no read for adoption.
        Any other index refusing the write: ``IndexRefused``.
        """
        from pymongo.errors import DuplicateKeyError

        now = utcnow()
        users = self.schema.users
        inserted = False
        adopting = bool(user.email and user.email_verified and self.email_indexed())
        if likely_new:
            # With a unique email index, an app-created document to adopt refuses the
            # insert: look it up then, not before every signup.
            adopt_if_refused = adopting and self.email_unique()
            if adopting and not adopt_if_refused:
                adopted = self.adopt(user, now)
                if adopted is not None:
                    return adopted
            update, queued = upsert_update(user, now, self.schema, app_id=self._app_id())
            try:
                # A new document's id is news to Clerk: its write-back is due either way.
                self.users.insert_one(new_document(update if queued else with_mark(update, now)))
                inserted = True
            except DuplicateKeyError as exc:
                if not self._ours(exc.details or {}):
                    # One of the app's indexes: the email one if there is a document to
                    # adopt (the server may name another index the copy also collides with),
                    # or a second copy of a stored user, or a real conflict.
                    if adopt_if_refused:
                        adopted = self.adopt(user, now)
                        if adopted is not None:
                            return adopted
                    if not self._held(user.id):
                        if self.is_tombstoned(user.id):
                            return WriteResult("stale")  # deleted: nothing to store
                        raise self._refused(exc, f"Clerk user {user.id}") from None
                # stored already under its Clerk id (nothing to adopt): the filter decides
            adopting = False
        if not inserted:
            update, queued = upsert_update(user, now, self.schema)
            # Clerk's copy names every key (usually our own write-back echoed back): the
            # write is tried first with a filter that also requires the document to agree
            # with that copy. If it matches, no write-back is due; if not, every write below
            # carries the mark. Either way one write stores the state and the mark together:
            # no read in between, no second write a crash could lose.
            agrees = None if queued else agreeing_filter(user.public_metadata, self.schema)
            ordered = ordering_filter(user, self.schema)
            if (
                agrees is not None
                and self.users.update_one({**ordered, **agrees}, update).matched_count
            ):
                return WriteResult("applied")
            marked = update if queued else with_mark(update, now)
            if users.app_id or adopting:
                # Update first: a document that is there needs no app id, nor adoption.
                if self.users.update_one(ordered, marked).matched_count:
                    return self._after_write(user, inserted=False)
                if adopting:
                    adopted = self.adopt(user, now)
                    if adopted is not None:
                        return adopted
                if users.app_id:
                    update, queued = upsert_update(user, now, self.schema, app_id=self._app_id())
                    marked = update if queued else with_mark(update, now)
            try:
                result = self.users.update_one(ordered, marked, upsert=True)
            except DuplicateKeyError as exc:
                # The filter missed an existing document: what is stored is as new or newer.
                # Refused by one of the app's indexes, that holds only if the stored state is
                # as new or newer; otherwise the app's index refused this state (a username
                # another user still has, say): a failure, so the retry stores it.
                existing = self.users.find_one({users.clerk_id: user.id}, {bk.UPDATED_AT: 1})
                stored = bk.field(existing, bk.UPDATED_AT) if existing is not None else None
                if not self._ours(exc.details or {}) and (
                    existing is None or is_older(stored, user.updated_at)
                ):
                    raise self._refused(exc, f"Clerk user {user.id}") from None
                if existing is not None and stored == user.updated_at:
                    return WriteResult("duplicate")
                return WriteResult("stale")
            inserted = result.upserted_id is not None
        return self._after_write(user, inserted=inserted)

    def _after_write(self, user: ClerkUser, *, inserted: bool) -> WriteResult:
        """A write that carried the write-back mark went in."""
        users = self.schema.users
        # Only an insert can resurrect a deleted user: a delete writes its tombstone
        # before removing the document, so if ours inserted, a tombstone written
        # before that is visible now. (If ours updated, the removal comes after it.)
        if inserted and self.is_tombstoned(user.id):
            self.users.delete_one({users.clerk_id: user.id, bk.UPDATED_AT: user.updated_at})
            return WriteResult("stale")
        return WriteResult("applied", wants_write_back=True)

    # -- adoption ------------------------------------------------------------------------------

    def email_indexed(self) -> bool:
        """Is the app's email field the first key of an index (checked once a minute)?"""
        return self._email_index_kind() is not None

    def email_unique(self) -> bool:
        """Is there a unique index on the app's email field alone, covering every document
        with the same comparison as equality (no partial filter, no collation)? Then an
        app-created document with a new user's email refuses the user's insert, and the
        receiver can insert first and adopt only when refused: no lookup per signup."""
        return self._email_index_kind() == "unique"

    def _email_index_kind(self) -> str | None:
        """``unique``, ``plain`` or None for the app's email field (checked once a minute)."""
        now = time.monotonic()
        if self._email_index is None or now - self._email_index[0] > 60:
            email = self.schema.users.email
            kind = None
            for index in self.app_indexes() if email else []:
                key = dict(index["key"])
                if next(iter(key), None) != email:
                    continue
                whole = (
                    len(key) == 1
                    and index.get("unique")
                    and "partialFilterExpression" not in index
                    and "collation" not in index
                )
                kind = "unique" if whole else kind or "plain"
            self._email_index = (now, kind)
        return self._email_index[1]

    def adoption_candidates(
        self, emails: Iterable[str], *, limit: int | None = None
    ) -> dict[str, list[Any]]:
        """Documents the app created, by lower-cased email: the email is one of ``emails``
        and the Clerk-id field is missing, null or not a Clerk user id (``clerk_34``).

        Addresses are matched as given and lower-cased, an equality the app's email index
        answers (Clerk keeps addresses lower-case; ``doctor`` names app documents whose
        address has capitals, which this misses)."""
        users = self.schema.users
        wanted = sorted({e for email in emails for e in (email, email.lower())})
        if not users.email or not wanted:
            return {}
        query = {
            users.email: {"$in": wanted},
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
        }
        cursor = self.users.find(query, {users.email: 1, users.clerk_id: 1})
        if limit:
            cursor = cursor.limit(limit)
        found: dict[str, list[Any]] = {}
        for doc in cursor:
            address = doc.get(users.email)
            if isinstance(address, str):
                found.setdefault(address.lower(), []).append(doc)
        return found

    def adoption_map(self, limit: int = 100_000) -> dict[str, list[Any]]:
        """Every document the app created (no Clerk user id) with an email, by lower-cased
        email: one read for a whole reconcile run, instead of one per page (without an index
        on the email field, each would scan the collection)."""
        users = self.schema.users
        if not users.email:
            return {}
        query = {
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
            users.email: {"$type": "string"},
        }
        found: dict[str, list[Any]] = {}
        for doc in self.users.find(query, {users.email: 1, users.clerk_id: 1}).limit(limit):
            found.setdefault(doc[users.email].lower(), []).append(doc)
        return found

    def _candidates_for(
        self, batch: list[ClerkUser], candidates: Mapping[str, list[Any]] | None
    ) -> Mapping[str, list[Any]]:
        emails = [u.email for u in batch if u.email]
        if candidates is None:
            return self.adoption_candidates(emails)
        return {e.lower(): candidates[e.lower()] for e in emails if e.lower() in candidates}

    def adopt(self, user: ClerkUser, now: Any) -> WriteResult | None:
        """Take over the one app-created document with this user's *verified* primary email:
        the Clerk id and the Clerk-owned fields are set, the app's fields kept, no second
        document. None when there is nothing (or more than one thing) to adopt."""

        users = self.schema.users
        if not (user.email and user.email_verified and users.email):
            return None
        found = self.adoption_candidates([user.email], limit=2).get(user.email.lower(), [])
        if len(found) != 1 or self.is_tombstoned(user.id):
            return None
        return self._take_over(user, found[0], now)

    def _take_over(self, user: ClerkUser, found: Mapping[str, Any], now: Any) -> WriteResult | None:
        from pymongo.errors import DuplicateKeyError

        users = self.schema.users
        update, _ = upsert_update(user, now, self.schema)
        fields = {**update["$set"], bk.DUE: now}
        candidate = {"_id": found["_id"], users.clerk_id: found.get(users.clerk_id)}
        try:
            result = self.users.update_one(candidate, {"$set": fields, "$inc": {bk.SEQ: 1}})
        except DuplicateKeyError as exc:
            if not self._ours(exc.details or {}):
                raise self._refused(exc, f"Clerk user {user.id}") from None
            return None  # the user has a document under its Clerk id after all
        if not result.modified_count:
            return None  # adopted or changed by someone else meanwhile
        # A delete that ran before the take-over found no document under the Clerk id; its
        # tombstone, written before that, is visible now (the receiver's insert rule).
        if self.is_tombstoned(user.id):
            self.users.delete_one({"_id": found["_id"], users.clerk_id: user.id})
            return WriteResult("stale")
        return WriteResult("applied", wants_write_back=True, adopted=True)

    def delete_user(self, clerk_id: str, keep: Keep | None = None) -> WriteResult:
        """Tombstone first, then delete: ``duplicate`` when both were already done. ``keep``
        (a prune's journal) sees the memberships the cascade removes before they go."""
        from pymongo import ReturnDocument

        before = self.tombstones.find_one_and_update(
            {"_id": clerk_id},
            {"$setOnInsert": {"deletedAt": utcnow()}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        removed = self.users.delete_one({self.clerk_id: clerk_id}).deleted_count
        removed += self.orgs.remove_user_memberships(clerk_id, keep)  # after the tombstone
        return WriteResult("applied" if removed or before is None else "duplicate")

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
                    exc, self._ours, self.users.name, stored=self._held_among(fresh, any_state=True)
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
                duplicates_only(exc, self._ours, self.users.name, stored=self._held_among(older))
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
            and clerk_copy_differs(user.public_metadata, doc, self.schema)
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

    def _held(self, clerk_id: str) -> bool:
        """Is a document stored under this Clerk id?"""
        return self.users.find_one({self.clerk_id: clerk_id}, {"_id": 1}) is not None

    def _held_among(
        self, batch: list[ClerkUser], *, any_state: bool = False
    ) -> Callable[[list[int]], set[int]]:
        """For ``duplicates_only``: which positions of ``batch`` are stored already in a
        state as new as theirs or newer (``any_state``: in any state; an insert refused so
        goes the ordered way next, where the state decides)."""

        def stored(positions: list[int]) -> set[int]:
            held = self._stored_versions([batch[i].id for i in positions])
            return {
                i
                for i in positions
                if batch[i].id in held
                and (any_state or not is_older(held[batch[i].id], batch[i].updated_at))
            }

        return stored

    def _stored_versions(self, clerk_ids: list[str]) -> dict[str, Any]:
        """Clerk id -> the stored ``clerksync.updatedAt`` (None if the app wrote the document)."""
        held = self._stored_docs(clerk_ids, {})
        return {value: bk.field(doc, bk.UPDATED_AT) for value, doc in held.items()}

    def _stored_docs(
        self, clerk_ids: list[str], fields: Mapping[str, Any]
    ) -> dict[str, Mapping[str, Any]]:
        """Clerk id -> the stored document: ``clerksync.updatedAt``, the Clerk id and
        ``fields``."""
        clerk_id = self.clerk_id
        projection = {**fields, clerk_id: 1, bk.UPDATED_AT: 1}
        if not fields:  # only the version: the id is not wanted
            projection["_id"] = 0
        if self._clerk_index_partial is None:
            self.clerk_index_name()
        if self._clerk_index_partial is False:  # a plain unique index answers an ``$in``
            held = find_in(self.users, clerk_id, clerk_ids, projection)
            return {d[clerk_id]: d for d in held}
        # One equality lookup per id: the partial Clerk-id index answers an equality (it
        # implies the index's filter), while an ``$in`` falls to a collection scan on
        # servers that cannot prove an ``$in`` inside the filter (SecantusDB).
        # A few at a time: a round trip each, and the server answers them in parallel.
        from concurrent.futures import ThreadPoolExecutor

        def lookup(value: str) -> Mapping[str, Any] | None:
            return self.users.find_one({clerk_id: value}, projection)

        with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
            found = pool.map(lookup, clerk_ids)
            return {
                value: doc for value, doc in zip(clerk_ids, found, strict=True) if doc is not None
            }

    # -- admin rights ------------------------------------------------------------------------

    def set_admin(self, doc_id: Any, value: bool) -> Mapping[str, Any]:
        """Set the admin flag (``isAdmin``, or the role) and mark the write-back in the same
        durable write. The mark leaves any claim alone, so a write-back in flight finishes,
        sees ``seq`` moved and keeps the mark for the newest state. (``update_one`` then a
        read: ``findAndModify`` is a collection scan on the wire server.)"""
        users = self.schema.users
        now = utcnow()
        change = with_mark(
            {"$set": {users.admin.field: users.admin.stored(value), **users.touched(now)}}, now
        )
        if not self.users.update_one({"_id": doc_id}, change).matched_count:
            raise NotFound(f"user {doc_id} vanished while being updated")
        doc = self.users.find_one({"_id": doc_id})
        if doc is None:
            raise NotFound(f"user {doc_id} vanished while being updated")
        linked = doc.get(users.clerk_id)
        if not (isinstance(linked, str) and CLERK_USER_ID.match(linked)):
            # The app's own user, not in Clerk: there is nothing to write back.
            self.users.update_one({"_id": doc_id}, {"$unset": {bk.DUE: ""}})
        return doc


def connect(settings: Settings, *, announce: Any = None) -> UserStore:
    """Open the store the settings name; the embedded one when ``MONGODB_URL`` is unset.

    Timeouts are short on purpose: a database that does not answer should cost seconds
    and an actionable message, not pymongo's 30-second default."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError

    url = settings.mongodb_url
    if url is None:
        from clerksync.embedded import ensure_server

        url = ensure_server(settings.state_dir, announce=announce)
    timeout = settings.mongo_timeout_ms
    try:
        client: MongoClient[Any] = MongoClient(
            url,
            serverSelectionTimeoutMS=timeout,
            connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout * 3, 10_000),
            tz_aware=True,
            appname="clerksync",
        )
    except (ConfigurationError, ValueError):
        # pymongo's own message may quote the URL (and its password): a fixed text instead.
        # A malformed URL is the user's to fix, like any malformed variable: exit 2.
        raise ConfigError(
            "MONGODB_URL is not a usable connection string (check its host list, port, "
            "brackets around IPv6 addresses, and options; for mongodb+srv:// the DNS name)"
        ) from None
    return UserStore(client, database_name(settings, client), settings.schema)


def clerk_id_filter(clerk_id: str) -> dict[str, Any]:
    """The Clerk-id index's partial filter: documents whose Clerk id is a Clerk user id (a
    string ``user_…``).

    Documents without one (the app's own users: missing, null, or a placeholder such as
    ``clerk_34``) are not in the index, so any number of them never block it. A string
    range, not ``$type: "string"``: a planner proves that an equality
    ``{clerkId: "user_…"}`` falls inside a range, and so uses the index for every lookup
    and ordered upsert; it cannot prove it implies a ``$type`` filter (measured on the test
    server: a collection scan per delivery)."""
    return {clerk_id: {"$gte": "user_", "$lt": "user`"}}  # "`" follows "_" in byte order


def _index_error(exc: Exception) -> str:
    """Why an index could not be made, and what to do."""
    code = getattr(exc, "code", None)
    if code == 11000:
        return (
            "documents already hold duplicate values for it "
            "(`clerksync doctor` lists them; remove or merge the duplicates, then restart)"
        )
    if code in (85, 86):
        return (
            "an index of that name or on those fields exists with other options "
            "(drop it, and clerksync makes its own on the next start)"
        )
    return describe_mongo_error(exc)
