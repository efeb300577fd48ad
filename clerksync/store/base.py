"""The store's foundation: the app's users collection, clerksync's tombstones and counters,
the indexes, lookups, and the app id counter. ``clerksync.store.UserStore`` builds on it
(adoption in ``clerksync.adoption``, reconcile's bulk writes in ``clerksync.bulkwrite``,
the receiver's writes in ``clerksync.store``)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clerksync.errors import Ambiguous, NotFound, StoreUnavailable
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.schema import DEFAULT, Schema
from clerksync.store.mongo import (
    describe_mongo_error,
    find_in,
    index_refused,
    refused_by,
    translating,
)

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    from clerksync.store.orgs import OrgStore
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database


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


#: on a tombstone a prune wrote, the prune run's id; any other delete of the object removes
#: it, so ``undo_prune`` can tell the run's tombstones from those of real deletes since
PRUNE_RUN = "pruneRun"


def tombstone_update(
    now: Any, *, kind: str | None = None, pruned_by: str | None = None
) -> dict[str, Any]:
    """The upsert that writes a tombstone: ``pruned_by`` (a prune run) marks a new one as
    that run's; a real delete (no ``pruned_by``) claims the tombstone whoever wrote it."""
    on_insert: dict[str, Any] = {"deletedAt": now}
    if kind:
        on_insert["kind"] = kind
    if pruned_by:
        return {"$setOnInsert": {**on_insert, PRUNE_RUN: pruned_by}}
    return {"$setOnInsert": on_insert, "$unset": {PRUNE_RUN: ""}}


def with_mark(update: Mapping[str, Any], now: Any) -> dict[str, Any]:
    """``update`` that also marks the write-back due (``clerksync.dueAt``, ``seq`` + 1)."""
    marked = {op: dict(fields) for op, fields in update.items()}
    marked["$set"][bk.DUE] = now
    marked["$inc"] = {**marked.get("$inc", {}), bk.SEQ: 1}
    return marked


@translating
class StoreBase:
    """The collections, indexes, lookups, tombstones and app ids every part of the store
    builds on (``UserStore`` is the whole)."""

    def __init__(self, client: MongoClient[Any], db_name: str, schema: Schema = DEFAULT) -> None:
        from pymongo import WriteConcern

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

    def clerk_key(self, clerk_id: str) -> dict[str, Any]:
        """The filter naming one user by Clerk id (what the write-back hand-off claims by)."""
        return {self.schema.users.clerk_id: clerk_id}

    @functools.cached_property
    def orgs(self) -> OrgStore:
        """The organizations and memberships collections, in the same database."""
        from clerksync.store.orgs import OrgStore

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

    def _held(self, clerk_id: str) -> bool:
        """Is a document stored under this Clerk id?"""
        return self.users.find_one({self.clerk_id: clerk_id}, {"_id": 1}) is not None

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


#: the log's collection and its one index: this module owns both
COLLECTION = "clerksync_deliveries"


TTL_INDEX = "expiresAt_ttl"


def log_collection(db: Database[Any]) -> Collection[Any]:
    """The log's collection (``UserStore.deliveries``). The log is diagnostics, not state:
    an acknowledged w=1 write is enough."""
    from pymongo import WriteConcern

    return db.get_collection(COLLECTION, write_concern=WriteConcern(w=1))


def ensure_log_indexes(store: StoreBase) -> None:
    """The log's one index: TTL on ``expiresAt`` (records, payloads included, expire).
    The log's writer makes it before its first bucket; ``UserStore.ensure_indexes`` calls
    this too, so there is one definition of it."""
    from pymongo import ASCENDING

    store.deliveries.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0, name=TTL_INDEX)
