"""``Store``: the database clerksync writes into, one collection per kind.

The app's collections (users, organizations, memberships… named by the schema) and
clerksync's own (tombstones, counters, the delivery log), their indexes, and the reads
every writer shares: tombstones, stored versions, and whose index refused a write. Every
write that precedes a webhook's 2xx uses ``w="majority", j=True`` so it survives a
failover; the writes themselves are ``clerksync.store.writer``'s.

Indexes: the users' Clerk-id index is made at start (``ensure_indexes``: the receiver
refuses deliveries until it holds, since it is what makes concurrent upserts safe); every
other kind's indexes are made before its first write in each process (``ready``), so an
app that never uses a kind never gets its collection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerksync.errors import IndexRefused, StoreUnavailable
from clerksync.kinds.base import Kind
from clerksync.kinds.user import USER
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.schema import DEFAULT, Schema
from clerksync.mapping.sections import Section
from clerksync.mapping.users import UserMapping
from clerksync.store.mongo import (
    IN_CHUNK,
    describe_mongo_error,
    find_in,
    index_refused,
    refused_by,
    translating,
)

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

TOMBSTONES = "clerksync_tombstones"
#: on a tombstone a prune wrote, the prune run's id; any other delete of the object removes
#: it, so ``undo_prune`` can tell the run's tombstones from those of real deletes since
PRUNE_RUN = "pruneRun"
COUNTERS = "clerksync_counters"
#: the delivery log's collection and its one index (``clerksync.deliverylog``)
DELIVERIES = "clerksync_deliveries"
TTL_INDEX = "expiresAt_ttl"
DUE_INDEX = "clerksync_dueAt"
LOOKUP_THREADS = 4  # concurrent equality lookups when reconcile plans a page of users


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


def clerk_id_filter(clerk_id: str) -> dict[str, Any]:
    """The users' Clerk-id index's partial filter: documents whose Clerk id is a Clerk user id
    (a string ``user_…``).

    Documents without one (the app's own users: missing, null, or a placeholder such as
    ``clerk_34``) are not in the index, so any number of them never block it. A string
    range, not ``$type: "string"``: a planner proves that an equality
    ``{clerkId: "user_…"}`` falls inside a range, and so uses the index for every lookup
    and ordered upsert; it cannot prove it implies a ``$type`` filter (measured on the test
    server: a collection scan per delivery)."""
    return {clerk_id: {"$gte": "user_", "$lt": "user`"}}  # "`" follows "_" in byte order


@translating
class Store:
    """One database: a collection per kind under the schema's names, clerksync's own
    collections, indexes and shared reads. ``close`` closes the client it was given."""

    def __init__(self, client: MongoClient[Any], db_name: str, schema: Schema = DEFAULT) -> None:
        from pymongo import WriteConcern

        self.client = client
        self.schema = schema
        self.db = client[db_name]
        durable = WriteConcern(w="majority", j=True)
        self._collections: dict[str, Collection[Any]] = {
            kind.name: self.db.get_collection(
                str(schema.names(kind).collection), write_concern=durable
            )
            for kind in schema.kinds
        }
        self.tombstones: Collection[Any] = self.db.get_collection(TOMBSTONES, write_concern=durable)
        self.counters: Collection[Any] = self.db.get_collection(COUNTERS, write_concern=durable)
        # The log is diagnostics, not state: an acknowledged w=1 write is enough.
        self.deliveries: Collection[Any] = self.db.get_collection(
            DELIVERIES, write_concern=WriteConcern(w=1)
        )
        self._ready: set[str] = set()  # kinds whose indexes this process made
        self._ready_lock = threading.Lock()
        self._clerk_index_partial: bool | None = None  # learnt from the users' index list

    # -- names -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.db.name

    @property
    def users(self) -> Collection[Any]:
        """The app's users collection."""
        return self._collections["user"]

    @property
    def clerk_id(self) -> str:
        """The app's field for the Clerk user id."""
        return self.schema.users.clerk_id

    def collection(self, kind: Kind) -> Collection[Any]:
        return self._collections[kind.name]

    def stores(self, kind: Kind) -> bool:
        """Does the app keep this kind (the schema gives it a collection)?"""
        return kind.name in self._collections

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kinds the app keeps, parents first."""
        return self.schema.kinds

    def names(self, kind: Kind) -> UserMapping | Section:
        return self.schema.names(kind)

    def key(self, kind: Kind) -> str:
        """The app's field holding the kind's Clerk id."""
        return self.schema.names(kind).clerk_id

    def clerk_key(self, clerk_id: str) -> dict[str, Any]:
        """The filter naming one user by Clerk id (what the write-back hand-off claims by)."""
        return {self.schema.users.clerk_id: clerk_id}

    # -- the connection --------------------------------------------------------------------

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

    # -- indexes ---------------------------------------------------------------------------

    def ensure_indexes(self) -> IndexReport:
        """Make the indexes clerksync needs at start, each on its own; safe on every start.

        clerksync's own collections first (the delivery log's TTL above all: stored payloads
        must expire whatever happens on the app's collection). On the app's users collection
        only what clerksync cannot work without: the Clerk-id unique index, *partial*
        (documents without a Clerk id never block it), unless a unique index on that field
        is there already (the app's model may declare one); and the write-back index. Never
        a key pattern the app's model declares (email, username: the app's to index).
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

        attempt(self.deliveries.name, TTL_INDEX, self.ensure_log_index)
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

    def ensure_log_index(self) -> None:
        """The delivery log's one index: TTL on ``expiresAt`` (records and their payloads
        expire). The log's writer makes it before its first bucket too."""
        from pymongo import ASCENDING

        self.deliveries.create_index(
            [("expiresAt", ASCENDING)], expireAfterSeconds=0, name=TTL_INDEX
        )

    def index_specs(self, kind: Kind) -> list[tuple[str, bool]]:
        """A kind's indexes (not users'): (field, unique). The unique Clerk id makes
        concurrent upserts safe; the others serve lookups and cascades."""
        names = self.schema.section(kind)
        specs = [(names.clerk_id, True)]
        specs += [(name, False) for f in kind.indexed if (name := names.field(f)) is not None]
        return specs

    def ready(self, kind: Kind) -> None:
        """Make a kind's indexes before its first write in this process (idempotent; users'
        are ``ensure_indexes``' at start)."""
        if kind.name in self._ready or kind is USER:
            return
        from pymongo import ASCENDING

        with self._ready_lock:
            if kind.name in self._ready:
                return
            collection = self.collection(kind)
            for field, unique in self.index_specs(kind):
                collection.create_index([(field, ASCENDING)], name=f"{field}_1", unique=unique)
            self._ready.add(kind.name)

    def app_indexes(self) -> list[Mapping[str, Any]]:
        """The users collection's indexes (none when it does not exist yet)."""
        from pymongo.errors import PyMongoError

        try:
            return list(self.users.list_indexes())
        except PyMongoError as exc:
            raise StoreUnavailable(describe_mongo_error(exc)) from None

    def clerk_index_name(self) -> str | None:
        """The name of a unique index on the users' Clerk-id field alone (ours or the app's)."""
        for index in self.app_indexes():
            if dict(index["key"]) == {self.clerk_id: 1} and index.get("unique"):
                self._clerk_index_partial = "partialFilterExpression" in index
                return str(index["name"])
        return None

    def has_unique_clerk_index(self) -> bool:
        return self.clerk_index_name() is not None

    # -- whose index refused a write ---------------------------------------------------------

    def ours(self, kind: Kind, details: Mapping[str, Any]) -> bool:
        """Did clerksync's Clerk-id index refuse this write (and not one of the app's)?"""
        key = self.key(kind)
        name, pattern = refused_by(details)
        return pattern == {key: 1} if pattern else name == f"{key}_1"

    def refused(self, kind: Kind, details: Mapping[str, Any], clerk_id: str) -> IndexRefused:
        return index_refused(details, self.collection(kind).name, f"Clerk {kind.name} {clerk_id}")

    # -- shared reads ------------------------------------------------------------------------

    def tombstoned(self, clerk_ids: list[str]) -> set[str]:
        """Which of these Clerk ids were deleted (tombstones are keyed by Clerk id, which
        carries its kind: ``user_``, ``org_``… never collide). One equality lookup for one id;
        one ``$in`` for a batch (it matches few, so it stays cheap)."""
        if len(clerk_ids) == 1:
            found = self.tombstones.find_one({"_id": clerk_ids[0]}, {"_id": 1})
            return {clerk_ids[0]} if found is not None else set()
        query = {"_id": {"$in": clerk_ids}}
        return {t["_id"] for t in self.tombstones.find(query, {"_id": 1})}

    def is_tombstoned(self, clerk_id: str) -> bool:
        return bool(self.tombstoned([clerk_id]))

    def tombstones_of(self, clerk_ids: list[str]) -> dict[str, str | None]:
        """The tombstones of these Clerk ids: id -> the prune run that wrote it, or None for
        a real delete's: one ``$in``; for a reconcile page's ids (``IN_CHUNK`` or more; or a
        first fill's items before their payers' recompute, up to ``owed.MOST_VIEWS``), a
        probe for any tombstone first, and no ``$in`` while none is kept, as while a database
        is first filled. As exact as the ``$in`` (both read what is there then); the probe
        costs the test server 0.6 ms where an ``$in`` of 500-1,000 ids costs 6-20 ms, and
        0.6 ms more once anything is kept."""
        if not clerk_ids:
            return {}
        if len(clerk_ids) >= IN_CHUNK and self.tombstones.find_one({}, {"_id": 1}) is None:
            return {}
        query = {"_id": {"$in": clerk_ids}}
        found = self.tombstones.find(query, {PRUNE_RUN: 1})
        runs = {t["_id"]: t.get(PRUNE_RUN) for t in found}
        return {i: run if isinstance(run, str) else None for i, run in runs.items()}

    def empty(self, kind: Kind) -> bool:
        """Does the kind's collection hold no document at all (a database first filled)?"""
        return self.collection(kind).find_one({}, {"_id": 1}) is None

    def held(self, kind: Kind, clerk_id: str) -> bool:
        """Is a document stored under this Clerk id?"""
        found = self.collection(kind).find_one({self.key(kind): clerk_id}, {"_id": 1})
        return found is not None

    def stored_docs(
        self, kind: Kind, clerk_ids: list[str], fields: Mapping[str, Any] | None = None
    ) -> dict[str, Mapping[str, Any]]:
        """Clerk id -> the stored document: ``clerksync.updatedAt``, the Clerk id and
        ``fields``, for those of ``clerk_ids`` stored."""
        key, collection = self.key(kind), self.collection(kind)
        projection = {**(fields or {}), key: 1, bk.UPDATED_AT: 1}
        if not fields:  # only the version: the id is not wanted
            projection["_id"] = 0
        if kind is USER and self._clerk_index_partial is None:
            self.clerk_index_name()
        if kind is not USER or self._clerk_index_partial is False:
            return {d[key]: d for d in find_in(collection, key, clerk_ids, projection)}

        # One equality lookup per id: the partial Clerk-id index answers an equality (it
        # implies the index's filter), while an ``$in`` falls to a collection scan on
        # servers that cannot prove an ``$in`` inside the filter (SecantusDB).
        # A few at a time: a round trip each, and the server answers them in parallel.
        def lookup(value: str) -> Mapping[str, Any] | None:
            return collection.find_one({key: value}, projection)

        with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
            found = pool.map(lookup, clerk_ids)
            return {v: d for v, d in zip(clerk_ids, found, strict=True) if d is not None}

    def stored_versions(self, kind: Kind, clerk_ids: list[str]) -> dict[str, Any]:
        """Clerk id -> the stored ``clerksync.updatedAt`` (None if the app wrote the
        document)."""
        held = self.stored_docs(kind, clerk_ids)
        return {value: bk.field(doc, bk.UPDATED_AT) for value, doc in held.items()}

    def held_ids(self, kind: Kind, *, batch: int = 1000) -> Iterator[str]:
        """Every Clerk id of the kind the collection holds, in natural order (a sort would
        make the server read them all first), flat memory. Documents without one of the
        kind's ids (the app's own users) are left out."""
        key, pattern = self.key(kind), kind.id_re
        cursor = self.collection(kind).find({}, {key: 1, "_id": 0}).batch_size(batch)
        return (d[key] for d in cursor if isinstance(d.get(key), str) and pattern.match(d[key]))

    def scan(
        self, query: Mapping[str, Any], projection: Mapping[str, Any], *, batch: int = 1000
    ) -> Iterator[Mapping[str, Any]]:
        """The users matching ``query``, in natural order, a fixed cursor batch (memory stays
        flat)."""
        yield from self.users.find(query, projection).batch_size(batch)

    def count(self, kind: Kind = USER) -> int:
        return self.collection(kind).count_documents({})

    def estimated_count(self, kind: Kind = USER) -> int:
        return self.collection(kind).estimated_document_count()


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
