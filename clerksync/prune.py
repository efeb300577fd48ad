"""Prune safety: the guard that refuses a mass prune, and the journal that undoes a prune.

A prune deletes users Clerk does not list, and every delete writes a
tombstone, so without these a prune against the wrong (or an empty) instance
would be final: the right reconcile afterwards restores nothing and live
``user.updated`` deliveries answer ``stale``. Hence:

- ``prune_refusal``: no prune when Clerk lists no users at all, nor one that
  would remove more than ``MASS_SHARE`` of the database's users (and more than
  ``MASS_MIN``), unless the caller says ``--allow-mass-prune``;
- ``PruneRun``: before a user is deleted, its whole document, and whether it
  had a tombstone already, go to ``clerksync_pruned`` under the run's id;
  ``undo_prune(run_id)`` puts the documents back (same ``_id``, so Clerk's
  ``userMongoId`` stays right) and removes the tombstones the run wrote.
  Journal entries expire after ``KEEP_DAYS`` (they hold personal data).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from clerksync.errors import NotFound
from clerksync.mongo import IN_CHUNK, duplicates_only, refused_by, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.store import UserStore

PRUNED = "clerksync_pruned"
MASS_SHARE = 0.10
MASS_MIN = 10
KEEP_DAYS = 30


def prune_refusal(orphans: int, held: int, clerk_users: int) -> str | None:
    """Why pruning ``orphans`` of ``held`` users must not happen unasked, or None."""
    if orphans == 0:
        return None
    if clerk_users == 0:
        return (
            f"Clerk lists no users at all, so pruning would delete all {orphans} orphans; "
            "is CLERK_SECRET_KEY/CLERK_API_URL the right instance? Nothing was deleted. "
            "Rerun with --allow-mass-prune if this is really meant."
        )
    if orphans > MASS_MIN and orphans > held * MASS_SHARE:
        return (
            f"pruning would delete {orphans} of {held} users (over {MASS_SHARE:.0%}); "
            "is CLERK_SECRET_KEY/CLERK_API_URL the right instance? Nothing was deleted. "
            "Rerun with --allow-mass-prune if this is really meant."
        )
    return None


def journal(store: UserStore) -> Collection[Any]:
    from pymongo import WriteConcern

    return store.db.get_collection(PRUNED, write_concern=WriteConcern(w="majority", j=True))


def ensure_journal_indexes(store: UserStore) -> None:
    from pymongo import ASCENDING

    pruned = journal(store)
    pruned.create_index([("runId", ASCENDING)], name="runId_1")
    pruned.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expiresAt_ttl")


class PruneRun:
    """Deletes users as a prune does, keeping each one (and its tombstone state) for undo."""

    def __init__(self, store: UserStore) -> None:
        self.store = store
        self.run_id = "prune-" + utcnow().strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)
        self.pruned = 0
        ensure_journal_indexes(store)

    def prune(self, clerk_ids: list[str]) -> int:
        """Journal, then tombstone and delete, these users; returns how many were deleted."""
        now = utcnow()
        docs: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(clerk_ids), IN_CHUNK):
            chunk = clerk_ids[start : start + IN_CHUNK]
            for doc in self.store.users.find({self.store.clerk_id: {"$in": chunk}}):
                docs[doc[self.store.clerk_id]] = doc
        had_tombstone = self.store.tombstoned_among(clerk_ids)
        entries = [
            {
                "runId": self.run_id,
                "clerkId": clerk_id,
                "document": docs.get(clerk_id),
                "hadTombstone": clerk_id in had_tombstone,
                "prunedAt": now,
                "expiresAt": now + timedelta(days=KEEP_DAYS),
            }
            for clerk_id in clerk_ids
        ]
        if entries:
            journal(self.store).insert_many(entries)  # before any delete: undo sees all
        deleted = 0
        for clerk_id in clerk_ids:
            if self.store.delete_user(clerk_id).outcome == "applied":
                deleted += 1
        self.pruned += deleted
        return deleted


def undo_prune(store: UserStore, run_id: str) -> dict[str, Any]:
    """Restore a prune run's users and remove the tombstones it wrote.

    ``restored``: documents put back; ``present``: users already there again
    (a delivery or an earlier undo brought them back). Safe to rerun.
    """
    from pymongo.errors import BulkWriteError

    pruned = journal(store)
    entries = list(pruned.find({"runId": run_id}))
    if not entries:
        runs = sorted(pruned.distinct("runId"), reverse=True)[:5]
        known = ", ".join(runs) if runs else "none kept"
        raise NotFound(f"no prune run {run_id!r} (recent runs: {known})")
    ours = [e["clerkId"] for e in entries if not e.get("hadTombstone")]
    for start in range(0, len(ours), IN_CHUNK):
        store.tombstones.delete_many({"_id": {"$in": ours[start : start + IN_CHUNK]}})
    documents = [e["document"] for e in entries if e.get("document")]
    present: set[int] = set()
    if documents:
        try:
            store.users.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            # Already there (its own _id, or its Clerk id on a new document): present.
            # A duplicate on one of the app's indexes is IndexRefused, said as such.
            def already(details: Mapping[str, Any]) -> bool:
                name, pattern = refused_by(details)
                return pattern in ({"_id": 1}, {store.clerk_id: 1}) or name in (
                    "_id_",
                    f"{store.clerk_id}_1",
                )

            present = duplicates_only(exc, already, store.users.name)
    pruned.update_many({"runId": run_id}, {"$set": {"undoneAt": utcnow()}})
    return {
        "run": run_id,
        "restored": len(documents) - len(present),
        "present": len(present),
        "tombstones_removed": len(ours),
    }
