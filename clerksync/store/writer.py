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
are ``Hooks`` on this path (``clerksync.store.users``), not a second path. Fields a kind
keeps on its parents (a user's plan) are recomputed after each write of it, and when a
parent is created while one of them waits for it (``clerksync.store.rollups``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clerksync.errors import IndexRefused
from clerksync.kinds.base import Kind
from clerksync.kinds.registry import children
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import is_older, new_document, ordering_filter
from clerksync.store import rollups
from clerksync.store.database import PRUNE_RUN, Store
from clerksync.store.group import Groups
from clerksync.store.hooks import APPLIED, DUPLICATE, STALE, Hooks, WriteResult
from clerksync.store.mongo import IN_CHUNK, find_in, translating, utcnow

#: handed the documents of a kind a cascade is about to remove (a prune journals them)
Keep = Callable[[Kind, list[Mapping[str, Any]]], None]


def remove_refused(store: Store, kind: Kind, clerk_ids: list[str]) -> None:
    """Remove what is stored under these Clerk ids, which a tombstone refuses: documents an
    insert made after the delete. They go whatever state they hold now (another write may
    have updated one since, seeing no tombstone: only inserts read them), and the fields they
    counted in on their parents (a payer's plan) are recomputed."""
    collection, key = store.collection(kind), store.key(kind)
    held = (
        list(find_in(collection, key, clerk_ids, {"_id": 0, **rollups.fields_read(store, kind)}))
        if kind.rollups
        else []
    )
    collection.delete_many({key: {"$in": clerk_ids}})
    if held:
        parents = rollups.parents_of_docs(store, kind, held)
        rollups.refresh(store, kind, parents)


def deleted_for_real(store: Store, clerk_ids: list[str]) -> bool:
    """Is one of these ids tombstoned by a real delete (not by a prune run)?"""
    return any(run is None for run in store.tombstones_of(clerk_ids).values())


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


@translating
class Writer:
    """The one write path over a ``Store`` (see the module docstring). ``hooks`` makes each
    kind's ``Hooks``: the plain ones, or users' (``clerksync.store.users.writer``)."""

    def __init__(self, store: Store, hooks: Callable[[Store, Kind], Hooks] | None = None) -> None:
        self.store = store
        self._groups = Groups(store)  # concurrent callers' writes as one command
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
            result = self._upsert(kind, hooks, item, likely_new)
        except IndexRefused as exc:
            if not hooks.retry_refused(exc):
                raise
            result = self._upsert(kind, hooks, item, likely_new)
        if result.outcome != "stale":
            # A duplicate too: the delivery that stored it may have stopped before this.
            rollups.refresh(self.store, kind, rollups.parents_of_items(kind, [item]))
            if result.adopted or result.outcome == "duplicate":  # an insert asked already
                rollups.created(self.store, kind, [item.id], awaited=result.adopted)
        return result

    def _upsert(self, kind: Kind, hooks: Hooks, item: Any, likely_new: bool) -> WriteResult:
        from pymongo.errors import DuplicateKeyError

        store = self.store
        update_one, key = self._groups.updater(kind), store.key(kind)
        now = utcnow()
        inserted = False
        found: set[str] | None = None  # read with the insert: the tombstones asked about
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
                # Its tombstones are read once it is in, with others' (``_after_write``).
                document = new_document(update if marked else hooks.mark(update, now))
                found = self._groups.inserter(kind)((document, self._asked(kind, item)))
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
                and update_one(({**ordered, **agrees}, update, False)).matched_count
            ):
                return APPLIED
            change = update if marked else hooks.mark(update, now)
            if hooks.needs_create_values() or adopting:
                # Update first: a document that is there needs no app id, nor adoption.
                try:
                    matched = update_one((ordered, change, False)).matched_count
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
                result = update_one((ordered, change, True))
            except DuplicateKeyError as exc:
                if hooks.needs_create_values():
                    hooks.unused(change)
                return self._refused_upsert(kind, item, exc.details or {})
            inserted = result.upserted_id is not None
        return self._after_write(kind, hooks, item, inserted=inserted, found=found)

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
        if existing is not None and deleted_for_real(store, kind.tombstone_keys(item)):
            # Deleted, yet stored: an insert (this delivery's, or an older state's) whose
            # tombstone read failed or never came (a timeout, a crash). Its retry ends here.
            # A prune's tombstone is left to the prune (its cascade journals what it removes)
            # and its undo (which puts documents back before it removes the tombstones).
            return self._gone(kind, item)
        if existing is not None and stored == item.updated_at:
            return DUPLICATE
        return STALE

    def _gone(self, kind: Kind, item: Any) -> WriteResult:
        """A tombstone refuses ``item``, yet a document is stored under its id: an insert
        that came after the delete (``remove_refused``). ``stale``: nothing is stored."""
        remove_refused(self.store, kind, [item.id])
        return STALE

    def _asked(self, kind: Kind, item: Any) -> list[str]:
        """The ids read after an insert: its tombstones, and its waiting marker."""
        return [*kind.tombstone_keys(item), *rollups.waiting_keys(self.store, kind, item.id)]

    def _after_write(
        self, kind: Kind, hooks: Hooks, item: Any, *, inserted: bool, found: set[str] | None = None
    ) -> WriteResult:
        # Only an insert can resurrect a deleted object: a delete writes its tombstone
        # before removing the document, so if ours inserted, a tombstone written before that
        # is visible now. (If ours updated, the removal comes after it.)
        # The same read says whether objects that count in its fields wait for it (a
        # subscription item delivered before its payer): only then are they read.
        # ``found``: that read, made already (with the insert, ``Groups.inserter``).
        if inserted:
            waiting = rollups.waiting_keys(self.store, kind, item.id)
            if found is None:
                found = self.store.tombstoned([*kind.tombstone_keys(item), *waiting])
            if found.difference(waiting):
                result = self._gone(kind, item)
                if found.intersection(waiting):  # deleted: nothing will read it
                    rollups.answered(self.store, [item.id])
                return result
            if found:  # and its marker answered, even if its objects have gone
                rollups.created(self.store, kind, [item.id], awaited=True)
        return WriteResult("applied", wants_write_back=hooks.writes_back, created=inserted)

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
        if rollups.waiting_keys(store, kind, clerk_id):
            rollups.answered(store, [clerk_id])  # no document will read it now
        collection, key = store.collection(kind), store.key(kind)
        held = (  # the parents whose fields it counts in (a payer's plan)
            collection.find_one({key: clerk_id}, rollups.fields_read(store, kind))
            if kind.rollups
            else None
        )
        removed = collection.delete_one({key: clerk_id}).deleted_count
        if held is not None:
            rollups.refresh(store, kind, rollups.parents_of_docs(store, kind, [held]))
        for child, field in children(kind):  # after the tombstone
            if store.stores(child):
                query = {store.schema.section(child).require(field): clerk_id}
                removed += self._cascade(kind, child, query, keep)
        return APPLIED if removed or before is None else DUPLICATE

    def _cascade(self, kind: Kind, child: Kind, query: Mapping[str, Any], keep: Keep | None) -> int:
        """Remove what belongs to a deleted object, and recompute what those documents
        counted in on their other parents (the deleted one is gone)."""
        others = [r for r in child.rollups if r.parent != kind.name]
        fields = rollups.fields_read(self.store, child) if others else {}
        docs = list(self.store.collection(child).find(query, fields)) if others else []
        removed = self.remove(child, query, keep)
        if docs:
            parents = rollups.parents_of_docs(self.store, child, docs)
            parents = {p: ids for p, ids in parents.items() if p != kind.name}
            rollups.refresh(self.store, child, parents)
        return removed

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
