"""Reconcile's page writes: a page of Clerk states planned with one read and written with
``insert_many`` and ordered upserts, under the one write path's ordering, tombstone,
adoption and index rules (``clerksync.store.writer``), for every kind.

One read of the stored versions splits the page: objects MongoDB lacks are inserted
(``insert_many`` costs the server less than upserts), objects it holds an older state of are
updated through the ordering filter, and the rest cost no write at all, so a second run
writes nothing. The read is only a plan: an object inserted meanwhile (by the receiver, say)
fails its insert on the unique index and takes the ordered upsert instead; and the
tombstones are read after the writes, for every object the page stores (one read, or a
probe that finds none kept: ``Store.tombstones_of``), so a delete racing the run cannot be
undone by it, nor by an earlier run whose read never came.
Fields the kind keeps on its parents (a payer's plan) are recomputed for the parents of what
the page wrote (by reconcile after its pages: ``clerksync.store.owed``), and those other
kinds keep on it for what it created (``clerksync.store.rollups``): a page that wrote
nothing recomputes nothing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from clerksync.errors import ClerkSyncError, IndexRefused
from clerksync.kinds.base import Kind
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import held_positions, is_older, ordering_filter
from clerksync.store import rollups
from clerksync.store.mongo import duplicates_only, translated, utcnow
from clerksync.store.owed import Owed
from clerksync.store.writer import Writer, remove_refused


@dataclass(frozen=True)
class PageCounts:
    """What a page write did (or, planned, would do), by object."""

    created: int = 0
    updated: int = 0
    adopted: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@translated
def write_page(
    writer: Writer,
    kind: Kind,
    items: Iterable[Any],
    *,
    assume_new: bool = False,
    candidates: Mapping[str, list[Any]] | None = None,
    prepared: Mapping[str, dict[str, Any]] | None = None,
    owed: Owed | None = None,
) -> PageCounts:
    """Write a page of one kind's Clerk states (see the module docstring).

    ``assume_new`` skips the planning read and inserts the whole page (what is there
    already fails on the unique index and goes the ordered way): cheaper when the previous
    page was all new, as it is when a database missed a stretch of signups or starts empty.
    ``candidates``: the app's own documents users may adopt, read once for a run.
    ``prepared``: documents ``Hooks.prepare`` made for some of these items beforehand.
    ``owed``: where the parents' recomputes go, to be done after the run's pages
    (``clerksync.store.owed``); without it, they are done before this returns.
    """
    from pymongo import UpdateOne
    from pymongo.errors import BulkWriteError

    store, hooks = writer.store, writer.hooks(kind)
    store.ready(kind)
    collection, key = store.collection(kind), store.key(kind)
    ours = functools.partial(store.ours, kind)
    versions = functools.partial(store.stored_versions, kind)
    what = f"a Clerk {kind.name}'s document"
    batch = list(items)
    fields = hooks.plan_fields()
    held = {} if assume_new else dict(store.stored_docs(kind, [i.id for i in batch], fields))
    stored = {i: bk.field(d, bk.UPDATED_AT) for i, d in held.items()}
    now = utcnow()
    fresh = [i for i in batch if i.id not in stored]
    older = [i for i in batch if i.id in stored and is_older(stored[i.id], i.updated_at)]
    if owed is not None and kind.rollups and (fresh or older):
        owed.promise(rollups.parents_of_items(kind, [*fresh, *older]))
    taken, adopted = hooks.take_over_page(fresh, now, candidates)
    fresh = [i for i in fresh if i.id not in taken]
    inserted: list[Any] = []  # the objects whose documents this call created
    if fresh:
        docs = hooks.new_documents(fresh, now, prepared)
        failed: set[int] = set()
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            try:
                failed = duplicates_only(
                    exc,
                    ours,
                    collection.name,
                    what,
                    stored=held_positions(fresh, versions, any_state=True),
                )
            except IndexRefused:  # the app's index refused one: the others went in
                with contextlib.suppress(ClerkSyncError):  # else a rerun reads the tombstones
                    went = _went_in(fresh, exc.details)
                    _after_writes(writer, kind, went, {i.id for i in went}, taken)
                raise
        there = [i for n, i in enumerate(fresh) if n in failed]  # there now: the filter decides
        if there and fields:
            held.update(store.stored_docs(kind, [i.id for i in there], fields))
        older += there
        inserted += [i for n, i in enumerate(fresh) if n not in failed]
    updated = 0
    if older:
        ops = [
            UpdateOne(ordering_filter(key, i), hooks.page_update(i, now, held), upsert=True)
            for i in older
        ]
        try:
            details: Mapping[str, Any] = collection.bulk_write(ops, ordered=False).bulk_api_result
        except BulkWriteError as exc:
            details = exc.details
            try:  # a newer state stored meanwhile: nothing to do
                duplicates_only(
                    exc, ours, collection.name, what, stored=held_positions(older, versions)
                )
            except IndexRefused:  # what the writes created is settled first
                made = list(details.get("upserted", []))
                if made:
                    hooks.upserted(made, now)
                went = [*inserted, *(older[e["index"]] for e in made)]
                with contextlib.suppress(ClerkSyncError):  # else a rerun reads the tombstones
                    _after_writes(writer, kind, went, {i.id for i in went}, taken)
                raise
        updated = int(details.get("nModified", 0))
        upserted = list(details.get("upserted", []))
        if upserted:
            hooks.upserted(upserted, now)
            inserted += [older[entry["index"]] for entry in upserted]
    # The tombstones of all the page stores, not only of what it inserted: one read either
    # way, and an earlier run's insert whose read failed or never came (a timeout, a crash)
    # is held now, and would never be read again. What this page inserted goes if any
    # tombstone refuses it; what it found stored, if a real delete's does (a prune's is the
    # prune's to journal, and its undo's to lift).
    written = {i.id for i in inserted}
    gone = _after_writes(writer, kind, [i for i in batch if i.id not in taken], written, taken)
    created = len(written) - len(gone & written)
    # an ordered update of an object deleted since is no update
    updated = max(0, updated - len({i.id for i in older if i.id in gone} - written))
    new = [i for i in inserted if i.id not in gone]
    if kind.rollups:
        if owed is not None:
            owed.owe(new, older)
        else:
            rollups.refresh(store, kind, rollups.parents_of_items(kind, [*new, *older]))
    return PageCounts(
        created=created,
        updated=updated,
        adopted=adopted,
        unchanged=len(batch) - len(gone) - created - updated - adopted,
    )


@translated
def plan_page(
    writer: Writer,
    kind: Kind,
    items: Iterable[Any],
    *,
    candidates: Mapping[str, list[Any]] | None = None,
) -> PageCounts:
    """What ``write_page`` would do, writing nothing (reconcile --dry-run)."""
    store, hooks = writer.store, writer.hooks(kind)
    batch = list(items)
    stored = store.stored_versions(kind, [i.id for i in batch])
    fresh = [i for i in batch if i.id not in stored]
    older = [i for i in batch if i.id in stored and is_older(stored[i.id], i.updated_at)]
    gone = _tombstoned(writer, kind, fresh)
    new = [i for i in fresh if i.id not in gone]
    adoptable = hooks.adoptable_in(new, candidates)
    return PageCounts(
        created=len(new) - len(adoptable),
        updated=len(older),
        adopted=len(adoptable),
        unchanged=len(batch) - len(fresh) - len(older),
    )


def _tombstoned(writer: Writer, kind: Kind, items: list[Any]) -> set[str]:
    """The ids of ``items`` a tombstone refuses (their own, or a parent's)."""
    keys = sorted({k for i in items for k in kind.tombstone_keys(i)})
    if not keys:
        return set()
    gone = writer.store.tombstoned(keys)
    return {i.id for i in items if gone.intersection(kind.tombstone_keys(i))}


def _after_writes(
    writer: Writer, kind: Kind, items: list[Any], written: set[str], taken: Iterable[str]
) -> set[str]:
    """After a page's writes (or the part of them that went in): the tombstones of
    ``items`` (what one refuses goes, ``_refuse_tombstoned``), read with the markers of the
    documents the page created (``written``) or adopted (``taken``), as an insert's read is
    on the one write path; then the fields other kinds keep on those documents
    (``rollups.created``): one a marker names (its objects came before it) gets them and a
    token even if those objects have gone since, and a refused one's marker goes. The ids
    refused."""
    store, taken = writer.store, set(taken)
    gone, waited = _refuse_tombstoned(
        writer,
        kind,
        items,
        real_only=lambda i: i not in written,
        markers=rollups.waiting_keys_of(store, kind, sorted(written | taken)),
    )
    marked = waited - gone
    rollups.created(store, kind, sorted(((written - gone) | taken) - marked))
    if marked:
        rollups.created(store, kind, sorted(marked), awaited=True)
    if waited & gone:  # deleted: nothing will read their markers
        rollups.answered(store, sorted(waited & gone))
    return gone


def _refuse_tombstoned(
    writer: Writer,
    kind: Kind,
    items: list[Any],
    *,
    real_only: Callable[[str], bool] | None = None,
    markers: list[str] | None = None,
) -> tuple[set[str], set[str]]:
    """Remove the documents of ``items`` a tombstone refuses, whatever state they hold; their
    ids. (A document a page wrote after the object's delete, or an earlier run's.) For the
    ids ``real_only`` names, only a real delete's tombstone refuses, not a prune run's.
    ``markers`` (``rollups.waiting_keys_of``) are read in the same query; returns the ids
    refused, then the parent ids whose marker was found."""
    keys = sorted({k for i in items for k in kind.tombstone_keys(i)} | set(markers or ()))
    stones = writer.store.tombstones_of(keys) if keys else {}
    every, real = set(stones), {k for k, run in stones.items() if run is None}
    gone = set()
    for i in items:
        refusing = real if real_only is not None and real_only(i.id) else every
        if refusing.intersection(kind.tombstone_keys(i)):
            gone.add(i.id)
    if gone:
        remove_refused(writer.store, kind, sorted(gone))
    waited = {k.removeprefix(rollups.WAITING) for k in markers or () if k in stones}
    return gone, waited


def _went_in(fresh: list[Any], details: Mapping[str, Any]) -> list[Any]:
    """The objects of an unordered ``insert_many`` whose documents went in."""
    failed = {int(e["index"]) for e in details.get("writeErrors", [])}
    return [i for n, i in enumerate(fresh) if n not in failed]
