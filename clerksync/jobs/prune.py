"""Prune safety: the guard that refuses a mass prune, and the journal that undoes a prune.

A prune deletes users, organizations and memberships Clerk does not list, and
every delete writes a tombstone, so without these a prune against the wrong
(or an empty) instance would be final: the right reconcile afterwards restores
nothing and live deliveries answer ``stale``. Hence:

- ``prune_refusal``: no prune when Clerk lists no users at all, nor one that
  would remove more than ``MASS_SHARE`` of the database's users (and more than
  ``MASS_MIN``), unless the caller says ``--allow-mass-prune``;
- ``PruneRun``: one per reconcile. Before anything is deleted, each pruned
  user, organization or membership goes to ``clerksync_pruned`` under the
  run's id: its whole document, its ``kind``, and whether it had a tombstone
  already; so does every membership a cascade removes with it (a user's, an
  organization's), marked ``via`` the pruned object's Clerk id (the run writes
  no tombstone for those). Journal first, then delete: a crash between the
  two leaves only entries for documents still there.
  ``clerksync.undo.undo_prune(run_id)`` puts the documents back into their own collections
  (same ``_id``, so Clerk's ``userMongoId`` stays right) and removes only the
  tombstones the run wrote. Entries written before kinds were journaled have
  no ``kind``: they are users. Journal entries expire after ``KEEP_DAYS``
  (they hold personal data).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from clerksync.kinds.base import Kind
from clerksync.kinds.registry import KINDS
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, translating, utcnow
from clerksync.store.owed import Owed
from clerksync.store.rollups import parents_of_docs
from clerksync.store.writer import Keep, Writer

if TYPE_CHECKING:
    from pymongo.collection import Collection

PRUNED = "clerksync_pruned"
MASS_SHARE = 0.10
MASS_MIN = 10
KEEP_DAYS = 30
#: the journal's kinds, and the undo report's key for each
PLURALS = {kind.name: kind.plural for kind in KINDS}


def prune_refusal(orphans: int, held: int, listed: int, name: str = "users") -> str | None:
    """Why pruning ``orphans`` of ``held`` (users, or ``name``: organizations, memberships)
    must not happen unasked, or None; ``listed``: how many Clerk lists."""
    if orphans == 0:
        return None
    if listed == 0:
        return (
            f"Clerk lists no {name} at all, so pruning would delete all {orphans} orphans; "
            "is CLERK_SECRET_KEY/CLERK_API_URL the right instance? Nothing was deleted. "
            "Rerun with --allow-mass-prune if this is really meant."
        )
    if orphans > MASS_MIN and orphans > held * MASS_SHARE:
        return (
            f"pruning would delete {orphans} of {held} {name} (over {MASS_SHARE:.0%}); "
            "is CLERK_SECRET_KEY/CLERK_API_URL the right instance? Nothing was deleted. "
            "Rerun with --allow-mass-prune if this is really meant."
        )
    return None


def journal(store: Store) -> Collection[Any]:
    from pymongo import WriteConcern

    return store.db.get_collection(PRUNED, write_concern=WriteConcern(w="majority", j=True))


def ensure_journal_indexes(store: Store) -> None:
    from pymongo import ASCENDING

    pruned = journal(store)
    pruned.create_index([("runId", ASCENDING)], name="runId_1")
    pruned.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expiresAt_ttl")


@translating
class PruneRun:
    """One reconcile's prune: deletes as the receiver's deletes do (tombstone, then the
    object, then its cascade), journaling first everything each delete removes.

    Made before anything is pruned and cheap until it journals: ``journaled`` counts the
    entries written (the run can be undone once it is above zero), ``pruned`` the objects
    deleted (cascaded ones not counted)."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.store = writer.store
        self.run_id = "prune-" + utcnow().strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)
        self.pruned = 0
        self.journaled = 0
        self._indexed = False

    def prune(self, kind: Kind, clerk_ids: list[str]) -> int:
        """Journal these objects of ``kind`` (and, as the cascade reaches them, what belongs
        to them), then tombstone and delete each; returns how many were deleted."""
        store = self.store
        collection, key = store.collection(kind), store.key(kind)
        docs: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(clerk_ids), IN_CHUNK):
            chunk = clerk_ids[start : start + IN_CHUNK]
            for doc in collection.find({key: {"$in": chunk}}):
                docs[doc[key]] = doc
        # Gone already (a cascade of this run, or a delivery, took it): nothing to prune.
        clerk_ids = [i for i in clerk_ids if i in docs]
        had_tombstone = store.tombstoned(clerk_ids) if clerk_ids else set()
        # Before any delete: undo sees all of them.
        self._journal([self._entry(kind, i, docs[i], i in had_tombstone) for i in clerk_ids])
        # Each delete recomputes the plans its object counted in; stopped between a delete
        # and its recompute, the record has the next reconcile do it (no rerun would: the
        # object is no orphan any more).
        owed = Owed(store, kind)
        if kind.rollups:
            owed.promise(parents_of_docs(store, kind, [docs[i] for i in clerk_ids]))
        deleted = sum(
            1
            for clerk_id in clerk_ids
            if self.writer.delete(
                kind, clerk_id, self._cascade(clerk_id), pruned_by=self.run_id
            ).outcome
            == "applied"
        )
        owed.settle()
        self.pruned += deleted
        return deleted

    def _cascade(self, via: str) -> Keep:
        """What the cascade of deleting ``via`` hands what it removes to, before it removes
        it: the journal (the run writes no tombstone for these)."""

        def keep(kind: Kind, docs: list[Mapping[str, Any]]) -> None:
            key = self.store.key(kind)
            ids = [d.get(key) for d in docs]
            had = self.store.tombstoned([i for i in ids if isinstance(i, str)])
            self._journal(
                [self._entry(kind, i, d, i in had, via=via) for i, d in zip(ids, docs, strict=True)]
            )

        return keep

    def _entry(
        self,
        kind: Kind,
        clerk_id: Any,
        document: Mapping[str, Any] | None,
        had_tombstone: bool,
        via: str | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        entry = {
            "runId": self.run_id,
            "kind": kind.name,
            "clerkId": clerk_id,
            "document": document,
            "hadTombstone": had_tombstone,
            "marks": 1,  # its tombstone carries the run id (entries without: undone as before)
            "prunedAt": now,
            "expiresAt": now + timedelta(days=KEEP_DAYS),
        }
        if via is not None:
            entry["via"] = via
        return entry

    def _journal(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        if not self._indexed:  # only a run that prunes makes the journal
            ensure_journal_indexes(self.store)
            self._indexed = True
        journal(self.store).insert_many(entries)
        self.journaled += len(entries)
