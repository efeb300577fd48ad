"""Undoing a prune run (``reconcile --undo-prune RUN``): what ``clerksync.prune``'s journal
holds goes back, each kind into its own collection, and only the tombstones the run wrote go.

A prune's tombstones carry its run id (``PRUNE_RUN``) and any real delete since takes them
over, so what was deleted for real after the prune stays deleted; a membership comes back
only with its user and organization; each journal entry is settled once (``undoneAt``), so
a rerun retries only what failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerksync.errors import IndexRefused, NotFound, StoreUnavailable
from clerksync.jobs.prune import PLURALS, journal
from clerksync.kinds.base import Kind
from clerksync.kinds.registry import BY_NAME, KINDS
from clerksync.store import rollups
from clerksync.store.mongo import IN_CHUNK, find_in, refused_by, translated, utcnow
from clerksync.store.writer import PRUNE_RUN, remove_refused

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from clerksync.store.database import Store


@translated
def undo_prune(store: Store, run_id: str) -> dict[str, Any]:
    """Restore what a prune run removed, each kind into its own collection, and remove the
    tombstones the run wrote.

    The run's tombstones carry its id (``PRUNE_RUN``) and any real delete since removes
    it, so an object deleted for real after the prune (a ``user.deleted``, an
    ``organization.deleted``) stays deleted: it is not put back, its tombstone stays, and
    it counts as ``deleted_since``. A membership a cascade took comes back only with what
    took it (its user or organization back or there), and no membership comes back under
    a tombstone that is not the run's (itself, its organization, its user). Each entry is
    marked undone once settled, so a rerun retries only what failed, never a later prune's
    or a later delete's work. Entries from before kinds were journaled are users, undone
    as then (put back, the tombstone removed unless it was there before).

    Returns the totals ``restored`` (put back), ``present`` (there again already: a
    delivery or a reconcile), ``tombstones_removed`` (by this call), ``deleted_since`` and
    ``already_undone`` (settled by an earlier call); and the same for each kind under
    ``users``, ``organizations`` and ``memberships`` (cascaded memberships count as
    memberships). A duplicate on one of the
    app's own unique indexes is ``IndexRefused``, raised once every kind was tried (the
    rest is restored, that document's tombstone kept; rerun after the fix).
    """
    pruned = journal(store)
    entries = list(pruned.find({"runId": run_id}))
    if not entries:
        runs = sorted(pruned.distinct("runId"), reverse=True)[:5]
        known = ", ".join(runs) if runs else "none kept"
        raise NotFound(f"no prune run {run_id!r} (recent runs: {known})")
    for entry in entries:
        if entry.get("kind", "user") not in PLURALS:
            raise StoreUnavailable(
                f"prune run {run_id!r} holds an entry of unknown kind {entry.get('kind')!r} "
                "(written by a newer clerksync?); nothing was undone"
            )
    counts = (
        "restored",
        "present",
        "tombstones_removed",
        "deleted_since",
        "already_undone",
        "waiting",
    )
    report: dict[str, Any] = {"run": run_id, **dict.fromkeys(counts, 0)}
    parts = {kind: dict.fromkeys(counts, 0) for kind in PLURALS}
    pending = [e for e in entries if not e.get("undoneAt")]
    for entry in entries:
        if entry.get("undoneAt"):
            parts[entry.get("kind") or "user"]["already_undone"] += 1
    tombstones = _tombstones(store, pending)
    back: set[str] = set()  # Clerk ids of the users and organizations there now
    refusal: IndexRefused | None = None
    settled: list[Any] = []  # journal entry ids done with (restored, present, deleted since)
    for kind_of in KINDS:  # parents before what belongs to them
        kind = kind_of.name
        if not store.stores(kind_of):  # the mapping keeps it no more: left for a rerun
            parts[kind]["waiting"] += sum(1 for e in pending if e.get("kind", "user") == kind)
            continue
        if kind_of.parents:
            back = _parents_there(store, kind_of, [e for e in pending if e.get("kind") == kind])
        chosen: list[Mapping[str, Any]] = []
        for entry in (e for e in pending if e.get("kind", "user") == kind):
            verdict = _verdict(store, run_id, entry, tombstones, back)
            if verdict == "restore":
                chosen.append(entry)
            elif verdict == "deleted since":
                parts[kind]["deleted_since"] += 1
                settled.append(entry["_id"])
            else:  # its user or organization is not back (refused, or pruned again later)
                parts[kind]["waiting"] += 1  # left for a rerun
        documents = [e["document"] for e in chosen]
        there, refused, first = _restore(store, kind_of, documents)
        present = len(there)
        refusal = refusal or first
        done = [e for n, e in enumerate(chosen) if n not in refused]
        _recount(store, kind_of, [e["document"] for e in done])
        settled += [e["_id"] for e in done]
        parts[kind]["restored"] = len(documents) - present - len(refused)
        parts[kind]["present"] = present
        # The run's own tombstones of what is back now (a legacy entry's: as then, unmarked).
        for legacy in (False, True):
            ours = [
                str(e["clerkId"])
                for e in done
                if not e.get("via")
                and not e.get("hadTombstone")
                and bool(e.get("marks")) != legacy
                and isinstance(e.get("clerkId"), str)
            ]
            for start in range(0, len(ours), IN_CHUNK):
                query: dict[str, Any] = {"_id": {"$in": ours[start : start + IN_CHUNK]}}
                if not legacy:
                    query[PRUNE_RUN] = run_id
                removed = store.tombstones.delete_many(query).deleted_count
                parts[kind]["tombstones_removed"] += removed
        put_back = [e for n, e in enumerate(chosen) if n not in refused and n not in there]
        gone = _deleted_meanwhile(store, kind_of, put_back, tombstones)
        parts[kind]["restored"] -= gone
        parts[kind]["deleted_since"] += gone
    for start in range(0, len(settled), IN_CHUNK):
        pruned.update_many(
            {"_id": {"$in": settled[start : start + IN_CHUNK]}}, {"$set": {"undoneAt": utcnow()}}
        )
    for kind, part in parts.items():
        report[PLURALS[kind]] = part
        for key in counts:
            report[key] += part[key]
    if refusal is not None:
        raise refusal
    return report


def _deleted_meanwhile(
    store: Store, kind: Kind, done: list[Mapping[str, Any]], before: Mapping[str, Any]
) -> int:
    """A real delete that came while the undo ran (after its tombstones were read, before
    its insert) claimed the run's tombstone, and found nothing to remove: what was put back
    goes again, as an insert after a delete does (``Writer``). A tombstone of a real delete
    read ``before`` the undo is not one (what it bears on was put back "as then"), nor are
    entries restored as then (legacy, or with a tombstone before the prune). How many went."""
    keys = {
        str(e["clerkId"]): [str(e["clerkId"]), *_parent_ids(store, e)]
        for e in done
        if e.get("marks") and not e.get("hadTombstone") and isinstance(e.get("clerkId"), str)
    }
    if not keys:
        return 0
    found = store.tombstoned(sorted({k for ids in keys.values() for k in ids}))
    new = {k for k in found if k not in before or before[k] is not None}  # None: a real delete
    gone = sorted(i for i, ids in keys.items() if new.intersection(ids))
    if not gone:
        return 0
    remove_refused(store, kind, gone)
    return len(gone)


def _recount(store: Store, kind: Kind, documents: list[Mapping[str, Any]]) -> None:
    """What restored documents count in: their parents' fields (a payer's plan) and, for
    a restored parent, the fields its objects keep on it."""
    if documents:
        rollups.refresh(store, kind, rollups.parents_of_docs(store, kind, documents))
        key = store.key(kind)
        rollups.created(store, kind, [str(d.get(key)) for d in documents])


def _parent_ids(store: Store, entry: Mapping[str, Any]) -> list[str]:
    """The Clerk ids of what a journaled object belongs to (a membership's organization and
    user), read from its journaled document."""
    kind = BY_NAME.get(str(entry.get("kind") or "user"))
    if kind is None or not kind.parents:
        return []
    section = store.schema.section(kind)
    doc = entry.get("document") or {}
    return [str(doc.get(section.require(field))) for field in kind.parents.values()]


def _tombstones(store: Store, entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The tombstones that bear on these entries (their objects, and what they belong to):
    Clerk id -> the prune run that wrote it (None: a real delete)."""
    ids: set[str] = set()
    for entry in entries:
        ids.add(str(entry.get("clerkId")))
        ids |= set(_parent_ids(store, entry))
    found: dict[str, Any] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), IN_CHUNK):
        chunk = listed[start : start + IN_CHUNK]
        for stone in store.tombstones.find({"_id": {"$in": chunk}}, {PRUNE_RUN: 1}):
            found[stone["_id"]] = stone.get(PRUNE_RUN)
    return found


def _parents_there(store: Store, kind: Kind, entries: list[Mapping[str, Any]]) -> set[str]:
    """Of what these entries belong to (and were taken by), the Clerk ids MongoDB holds now."""
    wanted: dict[str, set[str]] = {parent: set() for parent in kind.parents}
    section = store.schema.section(kind)
    for entry in entries:
        doc = entry.get("document") or {}
        for parent, field in kind.parents.items():
            wanted[parent].add(str(doc.get(section.require(field))))
    there: set[str] = set()
    for parent, ids in wanted.items():
        parent_kind = BY_NAME[parent]
        if not store.stores(parent_kind):
            continue
        key = store.key(parent_kind)
        found = find_in(store.collection(parent_kind), key, sorted(ids), {key: 1, "_id": 0})
        there |= {str(d.get(key)) for d in found}
    return there


def _verdict(
    store: Store,
    run_id: str,
    entry: Mapping[str, Any],
    tombstones: Mapping[str, Any],
    back: set[str],
) -> str:
    """``restore``, ``deleted since`` (a real delete came after the prune) or ``wait``."""
    if not entry.get("document"):
        return "deleted since"  # nothing was journaled to put back
    clerk_id = str(entry.get("clerkId"))
    if not entry.get("marks"):
        return "restore"  # from before runs marked their tombstones: undone as then

    def deleted_for_real(object_id: str) -> bool:
        # A real delete leaves no run id; another run's id is a later prune: undo it first.
        return object_id in tombstones and tombstones[object_id] is None

    def later_prune(object_id: str) -> bool:
        return tombstones.get(object_id) not in (None, run_id)

    if not entry.get("hadTombstone") and later_prune(clerk_id):
        return "wait"

    if deleted_for_real(clerk_id) and not entry.get("hadTombstone"):
        return "deleted since"  # its tombstone is a real delete's now
    parents = _parent_ids(store, entry)
    if parents:
        for parent in parents:
            if parent in back:
                continue  # its user or organization is there (put back, or there again)
            if deleted_for_real(parent):
                return "deleted since"
            if tombstones.get(parent) is not None:
                return "wait"  # its user or organization, pruned (by this run or a later
                # one), is not back
        if entry.get("via") and str(entry["via"]) not in back:
            return "wait"  # comes back with what took it, not before
    return "restore"


def _restore(
    store: Store, kind: Kind, documents: list[Mapping[str, Any]]
) -> tuple[set[int], set[int], IndexRefused | None]:
    """Insert ``documents`` into ``kind``'s collection with their own ``_id``: (the positions
    that were there already, those an index of the app's refused, the first refusal)."""
    from pymongo.errors import BulkWriteError

    if not documents:
        return set(), set(), None
    store.ready(kind)  # the unique Clerk ids tell "already there" from a refusal
    collection, key = store.collection(kind), store.key(kind)

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
        concern = exc.details.get("writeConcernErrors") or []
        if concern:  # what went in is not known durable: a rerun finishes the undo
            message = f"undo: write concern failed: {concern[0].get('errmsg')}"
            raise StoreUnavailable(message) from None
        # The server names one index of those a write collides with (mongod: the first it
        # checks), so one of the app's may be named for a document that is there again.
        others = [e for e in errors if not already(e)]
        held = _stored(collection, key, documents, [int(e["index"]) for e in others])
        refused_errors = [e for e in others if int(e["index"]) not in held]
        refused = {int(e["index"]) for e in refused_errors}
        refusal = (
            _refused(refused_errors[0], collection.name, kind.name) if refused_errors else None
        )
        return {int(e["index"]) for e in errors} - refused, refused, refusal
    return set(), set(), None


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
