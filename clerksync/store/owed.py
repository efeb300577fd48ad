"""The recomputes a bulk job owes its parents (``clerksync.store.rollups``: a payer's plan),
written down before the writes that owe them and done together after them.

Reconcile writes a kind's pages, then recomputes once the parents they touched: a parent
whose objects span several pages (an organization paying for many items) is read (on a first
fill, taken from what the pages wrote: ``rollups``) and updated once, not once a page.
Before each page's writes, a record naming the parents they may touch goes into
``clerksync_meta`` (``_id`` ``rollups-owed:…``); it is removed once they are recomputed. A
job stopped in between (a crash, Ctrl-C, the database gone) leaves it, and the next
reconcile recomputes what it names first (``sweep``): without it nothing would, as a rerun
finds those pages' objects unchanged and writes nothing for them.
A prune writes one before its deletes (each recomputes at once): a rerun would not, as what
it deleted is no orphan any more.

The sweep removes a record only once it is ``STALE_AFTER`` old (a job still running may
write more of what it owes); until then each sweep recomputes it again, which is harmless.
(The age is read on the sweeping machine's clock against the writer's: clocks minutes
apart shorten or lengthen it.)
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from clerksync.kinds.base import Kind
from clerksync.kinds.registry import BY_NAME
from clerksync.store import rollups
from clerksync.store.database import Store
from clerksync.store.instance import meta_collection
from clerksync.store.mongo import translated, translating, utcnow

#: ``clerksync_meta``'s ``_id`` prefix of a record (and the end of their range: ':' + 1)
PREFIX, PREFIX_END = "rollups-owed:", "rollups-owed;"
#: every record
RECORDS = {"_id": {"$gte": PREFIX, "$lt": PREFIX_END}}

#: a record this old belongs to no running job: longer than any page's writes take
STALE_AFTER = timedelta(minutes=10)

#: parents owed before the job recomputes them (and forgets them): bounds its memory, and
#: how long a plan lags behind its objects during a long run
MOST_OWED = 5_000

#: objects a first fill's guess holds between two recomputes; past it, that stretch's guess
#: reads them instead (a stretch of payers paying for one item each never gets there)
MOST_VIEWS = 2 * MOST_OWED


@translating
class Owed:
    """One job's owed recomputes, for one kind's objects (``child``)."""

    def __init__(self, store: Store, child: Kind, *, first_fill: bool = False) -> None:
        """``first_fill``: the kind's collection was empty when the job began, so the guessed
        recomputes take the objects the job wrote instead of reading them, less those a
        tombstone refuses by then (``rollups``); after a failure, or past ``MOST_VIEWS``
        objects, they read."""
        self.store, self.child, self.first_fill = store, child, first_fill
        self._records: list[str] = []
        self._parents: dict[str, set[str]] = defaultdict(set)
        self._known: dict[str, set[str]] = defaultdict(set)  # recomputed before: a token
        # parent kind -> parent id -> what the pages wrote; None: the guess reads
        self._wrote: list[Any] | None = [] if first_fill else None  # None: the guess reads

    def promise(self, parents: rollups.Parents) -> None:
        """Before a page's writes: the record of the parents they may touch (a superset:
        what the page plans to insert or update)."""
        named = {p: sorted(ids) for p, ids in parents.items() if ids}
        if not named:
            return
        record = f"{PREFIX}{uuid.uuid4().hex}"
        meta_collection(self.store).insert_one(
            {"_id": record, "since": utcnow(), "child": self.child.name, "parents": named}
        )
        self._records.append(record)

    def owe(self, created: list[Any], updated: list[Any]) -> None:
        """After a page's writes: the objects it created, whose parents' recompute guesses
        they hold no token, and those it updated, which were recomputed onto their parents
        before, so their tokens are read."""
        for parent, ids in rollups.parents_of_items(self.child, created).items():
            self._parents[parent].update(ids)
        for parent, ids in rollups.parents_of_items(self.child, updated).items():
            self._known[parent].update(ids)
        if self._wrote is not None:
            self._wrote.extend(created)
            if len(self._wrote) > MOST_VIEWS:  # payers of many objects: this stretch reads
                self._wrote = None

    @property
    def full(self) -> bool:
        owed = (*self._parents.values(), *self._known.values())
        return sum(len(ids) for ids in owed) >= MOST_OWED

    def settle(self, *, failed: bool = False) -> None:
        """Recompute what is owed (a bulk recompute: ``refresh(guess=True)``), then remove
        the records; ``failed`` (the walk failed): keep them for the next sweep, as a failed
        page's writes are not all known (some went in; one that timed out may still), and
        read the objects for the guess, first fill or not."""
        known = self._known
        guessed = {p: ids - known.get(p, set()) for p, ids in self._parents.items()}
        if any(guessed.values()):
            wrote = self._written() if not failed else None
            rollups.refresh(self.store, self.child, guessed, guess=True, wrote=wrote)
        if known:
            rollups.refresh(self.store, self.child, known)
        self._parents, self._known = defaultdict(set), defaultdict(set)
        self._wrote = [] if self.first_fill else None
        if self._records and not failed:
            meta_collection(self.store).delete_many({"_id": {"$in": self._records}})
            self._records = []

    def _written(self) -> dict[str, dict[str, list[dict[str, Any]]]] | None:
        """What the pages wrote (None: the guess reads), less what a delete has tombstoned
        since: its tombstone comes before its delete, and the recompute after it may never
        come. What a read now would find, but for a document a delete has tombstoned and not
        yet removed (left out: the delete, or the next page's tombstone read, removes it)."""
        wrote = self._wrote
        if wrote is None:
            return None
        gone = set(self.store.tombstones_of(sorted({i.id for i in wrote})))
        kept = [i for i in wrote if i.id not in gone]
        return rollups.views_of_items(self.store, self.child, kept)


def parents_named(record: Mapping[str, Any]) -> dict[str, set[str]]:
    """Parent kind -> the Clerk ids a record names (what this version can read of it)."""
    named = record.get("parents")
    if not isinstance(named, dict):
        return {}
    return {
        str(p): {i for i in ids if isinstance(i, str)}
        for p, ids in named.items()
        if isinstance(ids, list)
    }


@translated
def sweep(store: Store) -> int:
    """Recompute what stopped jobs owed, the records removed once stale (module docstring),
    and the stored parents whose marker no one read (``rollups.answer_stored``). How many
    records were read."""
    rollups.answer_stored(store)
    meta = meta_collection(store)
    records = list(meta.find(RECORDS))
    done = []
    for record in records:
        child = BY_NAME.get(str(record.get("child")))
        if child is None or not isinstance(record.get("parents"), dict):
            continue  # not one this version can read: left for the one that wrote it
        rollups.refresh(store, child, parents_named(record))
        done.append(record["_id"])
    if done:
        meta.delete_many(
            {
                "_id": {"$in": done},
                "since": {"$lt": utcnow() - STALE_AFTER},
            }
        )
    return len(records)


@translated
def stopped(store: Store) -> list[dict[str, Any]]:
    """The records a stopped job left (``STALE_AFTER`` old: no running job's), for doctor."""
    return list(meta_collection(store).find({**RECORDS, "since": {"$lt": utcnow() - STALE_AFTER}}))
