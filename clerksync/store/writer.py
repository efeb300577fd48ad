"""The one write path every Clerk object takes: one state (the receiver, replay,
``ensure_user``), a page of states (reconcile, ``clerksync.store.pages``), a delete with its
tombstone and cascades (deliveries and prunes).

Ordering: each document keeps the ``updated_at`` of the Clerk state it holds
(``clerksync.updatedAt``) and every write filters on it (``ordering_filter``), so a late,
older delivery changes nothing. The unique Clerk-id index makes concurrent upserts safe: two
deliveries for one new object race to insert, one wins, the other is refused on that index,
which here means "someone newer got there". A refusal by any *other* index (the app's unique
``username``, say) is a failure (``IndexRefused``), unless what is stored under the Clerk id
is as new or newer (a second copy of a stored object collides with both indexes, and the
server names just one).

Deletes are final whatever their ``updated_at``: the tombstone first (keyed by Clerk id,
never reused by Clerk), then the document, then the cascade (the kinds that name it as a
parent). Only an insert can bring something back, so the tombstones (its own and its
parents') are read after an insert: a delete that wrote its tombstone earlier is seen then,
and one that writes it later removes what the insert wrote.

What only users need (the app id, adoption of the app's own documents, the write-back mark)
are ``Hooks`` on this path (``clerksync.store.users``), not a second path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from clerksync.errors import IndexRefused
from clerksync.kinds.base import Kind
from clerksync.kinds.registry import children
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import is_older, new_document, ordering_filter, state_update
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, translating, utcnow

Outcome = Literal["applied", "duplicate", "stale"]

#: on a tombstone a prune wrote, the prune run's id; any other delete of the object removes
#: it, so ``undo_prune`` can tell the run's tombstones from those of real deletes since
PRUNE_RUN = "pruneRun"

#: handed the documents of a kind a cascade is about to remove (a prune journals them)
Keep = Callable[[Kind, list[Mapping[str, Any]]], None]


@dataclass(frozen=True)
class WriteResult:
    """What one write did: ``applied``, ``duplicate`` (this state again) or ``stale`` (an
    older state, or a deleted object); whether Clerk's metadata now needs a write-back; and
    whether the state took over a document the app had created (``adopted``)."""

    outcome: Outcome
    wants_write_back: bool = False
    adopted: bool = False


APPLIED = WriteResult("applied")
DUPLICATE = WriteResult("duplicate")
STALE = WriteResult("stale")


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


class Hooks:
    """How a kind's states become writes. The plain kinds' answers; users' override them
    (``clerksync.store.users.UserHooks``)."""

    #: a stored state means Clerk's metadata may need a write-back (users)
    writes_back = False

    def __init__(self, store: Store, kind: Kind) -> None:
        self.store = store
        self.kind = kind

    def update(self, item: Any, now: datetime, *, creating: bool = False) -> tuple[dict, bool]:
        """The update for one state, and whether it is final as it is: it carries its own
        write-back mark (a user whose Clerk copy lacks our keys), or the kind has no
        write-back. Otherwise the writer adds the mark, or first tries the write with the
        ``agreeing`` filter. ``creating``: the write may create the document."""
        return state_update(self.kind, self.store.schema.section(self.kind), item, now), True

    def agreeing(self, item: Any) -> dict[str, Any] | None:
        """A filter matching only a document that needs no write-back for this state."""
        return None

    def mark(self, update: dict[str, Any], now: datetime) -> dict[str, Any]:
        """``update`` with the write-back marked due."""
        return update

    def unused(self, update: Mapping[str, Any]) -> None:
        """A creating ``update`` that created nothing (its insert was refused): what it
        allocated may be handed out again (users' app id)."""

    def needs_create_values(self) -> bool:
        """Does a created document get values an update must not (the app id)?"""
        return False

    def may_adopt(self, item: Any) -> bool:
        """Could this state take over a document the app created, by what it says alone
        (no database read)? ``adoptable`` then says whether it is worth looking."""
        return False

    def adoptable(self, item: Any) -> bool:
        """Could this state take over a document the app created itself?"""
        return False

    def adopt_when_refused(self) -> bool:
        """Is an adoptable document sure to refuse the insert (a unique email index)? Then it
        is looked up only when the insert is refused."""
        return False

    def adopt(self, item: Any, now: datetime) -> WriteResult | None:
        return None

    def retry_refused(self, exc: IndexRefused) -> bool:
        """May the write be tried once more after this refusal (the app's own app id index:
        the counter is reseeded above the app's ids)?"""
        return False

    # -- a page of states (``clerksync.store.pages``) ----------------------------------------

    def page_candidates(self) -> Mapping[str, list[Any]] | None:
        """What a walk of every page reads once for the run (users: the app's documents to
        adopt, by email), handed to each page write."""
        return None

    def plan_fields(self) -> dict[str, int]:
        """What the page's planning read takes of each stored document, besides its version."""
        return {}

    def take_over_page(
        self, fresh: list[Any], now: datetime, candidates: Mapping[str, list[Any]] | None
    ) -> tuple[set[str], int]:
        """Adopt what the page's new objects can: (their ids, how many were adopted)."""
        return set(), 0

    def adoptable_in(
        self, fresh: list[Any], candidates: Mapping[str, list[Any]] | None
    ) -> set[str]:
        """The ids of ``fresh`` a page write would adopt (a dry run's count)."""
        return set()

    def prepare(self, items: Iterable[Any], now: datetime) -> dict[str, dict[str, Any]]:
        """The documents a page write would insert, by Clerk id, made ahead of it (reconcile
        makes them in its reader thread while the page before is written)."""
        return {item.id: self._document(item, now) for item in items}

    def new_documents(
        self, fresh: list[Any], now: datetime, prepared: Mapping[str, dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        """The documents a page inserts for ``fresh``: those ``prepare`` made, or new ones."""
        made = prepared or {}
        return [made.get(item.id) or self._document(item, now) for item in fresh]

    def _document(self, item: Any, now: datetime) -> dict[str, Any]:
        section = self.store.schema.section(self.kind)
        return new_document(state_update(self.kind, section, item, now))

    def page_update(
        self, item: Any, now: datetime, held: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ordered update of a stored object (``held``: the planning read's documents)."""
        return self.update(item, now)[0]

    def upserted(self, entries: list[Mapping[str, Any]], now: datetime) -> None:
        """Documents a page's ordered updates created (gone between the plan and the write)."""


@translating
class Writer:
    """The one write path over a ``Store`` (see the module docstring). ``hooks`` makes each
    kind's ``Hooks``: the plain ones, or users' (``clerksync.store.users.writer``)."""

    def __init__(self, store: Store, hooks: Callable[[Store, Kind], Hooks] | None = None) -> None:
        self.store = store
        self._hooks: dict[str, Hooks] = {}
        self._make = hooks or Hooks

    def hooks(self, kind: Kind) -> Hooks:
        found = self._hooks.get(kind.name)
        if found is None:
            found = self._hooks[kind.name] = self._make(self.store, kind)
        return found

    # -- one state ---------------------------------------------------------------------------

    def upsert(self, kind: Kind, item: Any, *, likely_new: bool = False) -> WriteResult:
        """Apply one Clerk state if it is newer than what is stored; one durable write.

        ``likely_new`` (a ``*.created`` event) tries a plain insert first: it costs the
        server less than an upsert, and the unique Clerk-id index turns it into the ordered
        upsert when the object is there already."""
        hooks = self.hooks(kind)
        self.store.ready(kind)
        try:
            return self._upsert(kind, hooks, item, likely_new)
        except IndexRefused as exc:
            if not hooks.retry_refused(exc):
                raise
            return self._upsert(kind, hooks, item, likely_new)

    def _upsert(self, kind: Kind, hooks: Hooks, item: Any, likely_new: bool) -> WriteResult:
        from pymongo.errors import DuplicateKeyError

        store = self.store
        collection, key = store.collection(kind), store.key(kind)
        now = utcnow()
        inserted = False
        held: Mapping[str, Any] | None = None  # our index refused the insert: its details
        adopting = hooks.may_adopt(item)
        if likely_new:
            adopting = adopting and hooks.adoptable(item)
            # With a unique email index, an app-created document to adopt refuses the
            # insert: look it up then, not before every signup.
            adopt_if_refused = adopting and hooks.adopt_when_refused()
            if adopting and not adopt_if_refused:
                adopted = hooks.adopt(item, now)
                if adopted is not None:
                    return adopted
            update, marked = hooks.update(item, now, creating=True)
            try:
                # A new document's id is news to Clerk: its write-back is due either way.
                collection.insert_one(new_document(update if marked else hooks.mark(update, now)))
                inserted = True
            except DuplicateKeyError as exc:
                hooks.unused(update)
                if store.ours(kind, exc.details or {}):
                    held = exc.details or {}  # stored under its Clerk id: no insert below
                else:
                    # One of the app's indexes: the email one if there is a document to
                    # adopt (the server may name another index the copy also collides with),
                    # or a second copy of a stored object, or a real conflict.
                    if adopt_if_refused:
                        adopted = hooks.adopt(item, now)
                        if adopted is not None:
                            return adopted
                    if not store.held(kind, item.id):
                        if store.tombstoned(kind.tombstone_keys(item)):
                            return STALE  # deleted: nothing to store
                        raise store.refused(kind, exc.details or {}, item.id) from None
                    # stored already under its Clerk id (nothing to adopt): the filter decides
                    held = {}
            adopting = False
        if not inserted:
            update, marked = hooks.update(item, now)
            ordered = ordering_filter(key, item)
            # A copy of Clerk's that names every key (usually our own write-back echoed
            # back): the write is tried first with a filter that also requires the document
            # to agree with it. If it matches, no write-back is due; if not, every write below
            # carries the mark. Either way one write stores the state and the mark together.
            agrees = None if marked else hooks.agreeing(item)
            if (
                agrees is not None
                and collection.update_one({**ordered, **agrees}, update).matched_count
            ):
                return APPLIED
            change = update if marked else hooks.mark(update, now)
            if hooks.needs_create_values() or adopting:
                # Update first: a document that is there needs no app id, nor adoption.
                try:
                    matched = collection.update_one(ordered, change).matched_count
                except DuplicateKeyError as exc:  # the app's index refused the new state
                    return self._refused_upsert(kind, item, exc.details or {})
                if matched:
                    return self._after_write(kind, hooks, item, inserted=False)
                if adopting and hooks.adoptable(item):  # asked only now: an update rarely misses
                    adopted = hooks.adopt(item, now)
                    if adopted is not None:
                        return adopted
                if held:
                    # Our index refused the insert and the ordered update missed: what is
                    # stored is as new or newer (or deleted since). An upsert would be
                    # refused too: no app id is allocated for it.
                    return self._refused_upsert(kind, item, held)
                update, marked = hooks.update(item, now, creating=True)
                change = update if marked else hooks.mark(update, now)
            try:
                result = collection.update_one(ordered, change, upsert=True)
            except DuplicateKeyError as exc:
                if hooks.needs_create_values():
                    hooks.unused(change)
                return self._refused_upsert(kind, item, exc.details or {})
            inserted = result.upserted_id is not None
        return self._after_write(kind, hooks, item, inserted=inserted)

    def _refused_upsert(self, kind: Kind, item: Any, details: Mapping[str, Any]) -> WriteResult:
        """The ordered upsert missed a stored document and its insert was refused: what is
        stored is as new or newer (a duplicate or a stale state). Refused by one of the app's
        indexes, that holds only if the stored state is as new or newer; otherwise the app's
        index refused this state (a username another user still has, say): a failure, so
        the retry stores it."""
        store = self.store
        existing = store.collection(kind).find_one({store.key(kind): item.id}, {bk.UPDATED_AT: 1})
        stored = bk.field(existing, bk.UPDATED_AT) if existing is not None else None
        if not store.ours(kind, details) and (
            existing is None or is_older(stored, item.updated_at)
        ):
            raise store.refused(kind, details, item.id) from None
        if existing is not None and stored == item.updated_at:
            return DUPLICATE
        return STALE

    def _after_write(self, kind: Kind, hooks: Hooks, item: Any, *, inserted: bool) -> WriteResult:
        # Only an insert can resurrect a deleted object: a delete writes its tombstone
        # before removing the document, so if ours inserted, a tombstone written before that
        # is visible now. (If ours updated, the removal comes after it.)
        if inserted and self.store.tombstoned(kind.tombstone_keys(item)):
            self.store.collection(kind).delete_one(
                {self.store.key(kind): item.id, bk.UPDATED_AT: item.updated_at}
            )
            return STALE
        return WriteResult("applied", wants_write_back=hooks.writes_back)

    # -- deletes -----------------------------------------------------------------------------

    def delete(
        self, kind: Kind, clerk_id: str, keep: Keep | None = None, *, pruned_by: str | None = None
    ) -> WriteResult:
        """Tombstone, then the document, then what belongs to it (final): ``duplicate`` when
        all was done already. ``keep`` (a prune's journal) is handed what the cascade removes
        before it goes; ``pruned_by`` marks the tombstone as that prune run's."""
        from pymongo import ReturnDocument

        store = self.store
        store.ready(kind)
        before = store.tombstones.find_one_and_update(
            {"_id": clerk_id},
            tombstone_update(utcnow(), kind=kind.name, pruned_by=pruned_by),
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        removed = store.collection(kind).delete_one({store.key(kind): clerk_id}).deleted_count
        for child, field in children(kind):  # after the tombstone
            query = {store.schema.section(child).require(field): clerk_id}
            removed += self.remove(child, query, keep)
        return APPLIED if removed or before is None else DUPLICATE

    def remove(self, kind: Kind, query: Mapping[str, Any], keep: Keep | None = None) -> int:
        """A cascade. Without ``keep``, one ``delete_many``. With it, a few documents at a
        time: each lot is handed to ``keep`` and then deleted by ``_id``, so nothing goes
        that ``keep`` did not see first (one stored meanwhile is found by the next read, and
        one stored after the tombstone removes itself, as the receiver's do)."""
        collection = self.store.collection(kind)
        if keep is None:
            return int(collection.delete_many(query).deleted_count)
        removed = 0
        while True:
            docs = list(collection.find(query).limit(IN_CHUNK))
            if not docs:
                return removed
            keep(kind, docs)
            ids = [d["_id"] for d in docs]
            removed += int(collection.delete_many({"_id": {"$in": ids}}).deleted_count)
