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
  ``undo_prune(run_id)`` puts the documents back into their own collections
  (same ``_id``, so Clerk's ``userMongoId`` stays right) and removes only the
  tombstones the run wrote. Entries written before kinds were journaled have
  no ``kind``: they are users. Journal entries expire after ``KEEP_DAYS``
  (they hold personal data).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from clerksync.errors import IndexRefused, NotFound, StoreUnavailable
from clerksync.mongo import IN_CHUNK, find_in, refused_by, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.orgstore import Keep
    from clerksync.store import UserStore

PRUNED = "clerksync_pruned"
MASS_SHARE = 0.10
MASS_MIN = 10
KEEP_DAYS = 30
#: the journal's kinds, and the undo report's key for each
PLURALS = {"user": "users", "organization": "organizations", "membership": "memberships"}


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
    """One reconcile's prune: deletes as the receiver's deletes do (tombstone, then the
    object, then its cascade), journaling first everything each delete removes.

    Made before anything is pruned and cheap until it journals: ``journaled`` counts the
    entries written (the run can be undone once it is above zero), ``pruned`` the objects
    deleted (cascaded memberships not counted)."""

    def __init__(self, store: UserStore) -> None:
        self.store = store
        self.run_id = "prune-" + utcnow().strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)
        self.pruned = 0
        self.journaled = 0
        self._indexed = False

    def prune(self, clerk_ids: list[str]) -> int:
        """Users: journal them (and, as the cascade reaches them, their memberships), then
        tombstone and delete each; returns how many were deleted."""
        store = self.store
        return self._prune(
            "user",
            store.users,
            store.clerk_id,
            clerk_ids,
            lambda i: store.delete_user(i, self._cascade(i)).outcome == "applied",
        )

    def prune_organizations(self, clerk_ids: list[str]) -> int:
        """Organizations, with their memberships: as ``prune``."""
        orgs = self.store.orgs
        return self._prune(
            "organization",
            orgs.organizations,
            orgs.orgs_map.clerk_id,
            clerk_ids,
            lambda i: orgs.delete_organization(i, self._cascade(i)) == "applied",
        )

    def prune_memberships(self, clerk_ids: list[str]) -> int:
        """Memberships: as ``prune`` (a membership has no cascade)."""
        orgs = self.store.orgs
        return self._prune(
            "membership",
            orgs.memberships,
            orgs.members_map.clerk_id,
            clerk_ids,
            lambda i: orgs.delete_membership(i) == "applied",
        )

    def _prune(
        self,
        kind: str,
        collection: Collection[Any],
        key: str,
        clerk_ids: list[str],
        delete: Callable[[str], bool],
    ) -> int:
        docs: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(clerk_ids), IN_CHUNK):
            chunk = clerk_ids[start : start + IN_CHUNK]
            for doc in collection.find({key: {"$in": chunk}}):
                docs[doc[key]] = doc
        had_tombstone = self.store.tombstoned_among(clerk_ids)
        # Before any delete: undo sees all of them.
        self._journal([self._entry(kind, i, docs.get(i), i in had_tombstone) for i in clerk_ids])
        deleted = sum(1 for clerk_id in clerk_ids if delete(clerk_id))
        self.pruned += deleted
        return deleted

    def _cascade(self, via: str) -> Keep:
        """What the cascade of deleting ``via`` hands its memberships to, before it removes
        them: the journal (the run writes no tombstone for these)."""

        def keep(docs: list[Mapping[str, Any]]) -> None:
            key = self.store.orgs.members_map.clerk_id
            ids = [d.get(key) for d in docs]
            had = self.store.tombstoned_among([i for i in ids if isinstance(i, str)])
            self._journal(
                [
                    self._entry("membership", i, d, i in had, via=via)
                    for i, d in zip(ids, docs, strict=True)
                ]
            )

        return keep

    def _entry(
        self,
        kind: str,
        clerk_id: Any,
        document: Mapping[str, Any] | None,
        had_tombstone: bool,
        via: str | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        entry = {
            "runId": self.run_id,
            "kind": kind,
            "clerkId": clerk_id,
            "document": document,
            "hadTombstone": had_tombstone,
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


def undo_prune(store: UserStore, run_id: str) -> dict[str, Any]:
    """Restore what a prune run removed, each kind into its own collection, and remove the
    tombstones the run wrote.

    Returns the totals, as before organizations were journaled: ``restored`` (documents
    put back), ``present`` (already there again: a delivery, a reconcile or an earlier
    undo brought them back) and ``tombstones_removed`` (by this call); and the same three
    for each kind under ``users``, ``organizations`` and ``memberships`` (cascaded
    memberships count as memberships). Safe to rerun. A duplicate on one of the app's
    own unique indexes is ``IndexRefused``, raised once every kind was tried (the rest is
    restored, that document's tombstone kept; rerun after the fix).
    """
    pruned = journal(store)
    entries = list(pruned.find({"runId": run_id}))
    if not entries:
        runs = sorted(pruned.distinct("runId"), reverse=True)[:5]
        known = ", ".join(runs) if runs else "none kept"
        raise NotFound(f"no prune run {run_id!r} (recent runs: {known})")
    by_kind: dict[str, list[Mapping[str, Any]]] = {kind: [] for kind in PLURALS}
    for entry in entries:
        kind = entry.get("kind") or "user"  # entries from before kinds were journaled
        if kind not in by_kind:
            raise StoreUnavailable(
                f"prune run {run_id!r} holds an entry of unknown kind {kind!r} (written by a "
                "newer clerksync?); nothing was undone"
            )
        by_kind[kind].append(entry)
    report: dict[str, Any] = {"run": run_id, "restored": 0, "present": 0, "tombstones_removed": 0}
    refusal: IndexRefused | None = None
    for kind, kind_entries in by_kind.items():
        part = {"restored": 0, "present": 0, "tombstones_removed": 0}
        report[PLURALS[kind]] = part
        if not kind_entries:
            continue
        restorable = [e for e in kind_entries if e.get("document")]
        documents = [e["document"] for e in restorable]
        present, refused, first = _restore(store, kind, documents)
        refusal = refusal or first
        # Only the tombstones this run wrote, and not one whose document could not go back.
        not_back = {restorable[n].get("clerkId") for n in refused}
        ours = [
            e["clerkId"]
            for e in kind_entries
            if not e.get("hadTombstone")
            and not e.get("via")
            and isinstance(e.get("clerkId"), str)
            and e["clerkId"] not in not_back
        ]
        for start in range(0, len(ours), IN_CHUNK):
            chunk = ours[start : start + IN_CHUNK]
            part["tombstones_removed"] += store.tombstones.delete_many(
                {"_id": {"$in": chunk}}
            ).deleted_count
        part["restored"] = len(documents) - present - len(refused)
        part["present"] = present
        for key in ("restored", "present", "tombstones_removed"):
            report[key] += part[key]
    if refusal is not None:
        raise refusal
    pruned.update_many({"runId": run_id}, {"$set": {"undoneAt": utcnow()}})
    return report


def _restore(
    store: UserStore, kind: str, documents: list[Mapping[str, Any]]
) -> tuple[int, set[int], IndexRefused | None]:
    """Insert ``documents`` into ``kind``'s collection with their own ``_id``: (how many
    were there already, the positions an index of the app's refused, the first refusal)."""
    from pymongo.errors import BulkWriteError

    if not documents:
        return 0, set(), None
    if kind == "user":
        collection, key = store.users, store.clerk_id
    else:
        orgs = store.orgs
        orgs.ensure_indexes()  # the unique Clerk ids tell "already there" from a refusal
        kind_of = orgs.orgs_kind if kind == "organization" else orgs.members_kind
        collection, key = kind_of.collection, kind_of.key

    def already(details: Mapping[str, Any]) -> bool:
        """Its own ``_id``, or its Clerk id on a newer document: there again."""
        name, pattern = refused_by(details)
        if pattern:
            return pattern in ({"_id": 1}, {key: 1})
        return name in ("_id_", f"{key}_1")

    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        for error in errors:
            if error.get("code") != 11000:
                raise StoreUnavailable(f"undo failed: {error.get('errmsg')}") from None
        # The server names one index of those a write collides with (mongod: the first it
        # checks), so one of the app's may be named for a document that is there again.
        others = [e for e in errors if not already(e)]
        held = _stored(collection, key, documents, [int(e["index"]) for e in others])
        refused_errors = [e for e in others if int(e["index"]) not in held]
        refused = {int(e["index"]) for e in refused_errors}
        refusal = _refused(refused_errors[0], collection.name, kind) if refused_errors else None
        return len(errors) - len(refused), refused, refusal
    return 0, set(), None


def _stored(
    collection: Collection[Any],
    key: str,
    documents: list[Mapping[str, Any]],
    positions: list[int],
) -> set[int]:
    """Which of these positions are in the collection already, by ``_id`` or Clerk id."""
    if not positions:
        return set()
    ids = [documents[n]["_id"] for n in positions]
    clerk_ids = [documents[n].get(key) for n in positions]
    found_ids = {d["_id"] for d in find_in(collection, "_id", ids, {"_id": 1})}
    found_clerk = {
        d.get(key) for d in find_in(collection, key, [c for c in clerk_ids if c], {key: 1})
    }
    return {
        n
        for n, i, c in zip(positions, ids, clerk_ids, strict=True)
        if i in found_ids or (c and c in found_clerk)
    }


def _refused(details: Mapping[str, Any], collection: str, kind: str) -> IndexRefused:
    """An undo one of the app's unique indexes refused: names the index and its fields
    (never the value: it can be an email) and what finishes the job."""
    name, pattern = refused_by(details)
    fields = ", ".join(pattern) or "?"
    return IndexRefused(
        f"the unique index {name!r} ({collection}: {fields}) refused putting back a pruned "
        f"{kind}: another document holds its value now. Everything else was put back, and "
        "this one's tombstone kept; resolve the clash in that collection, then rerun the "
        "same --undo-prune to finish",
        index=name,
        collection=collection,
        keys=tuple(pattern),
    )
