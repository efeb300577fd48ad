"""Fields a kind keeps on its parents' documents (``Kind.rollups``: a user's and an
organization's plan, from their subscription items), kept right by the one write path.

After every write of such an object (a delivery, a page of reconcile, a prune's delete, an
undo) the parent's fields are recomputed from every object stored for that parent: one
indexed read of those objects, one update of the parent. The same is done when a parent's
document is created or adopted, so objects that arrived before their parent count. So the
order deliveries arrive in never matters: each recompute reads what is stored.

Two recomputes can race (two items of one payer delivered at once). Each update is ordered
by a token, the sum of the versions (``clerksync.updatedAt``) of the objects it was computed
from, kept in ``clerksync.rollups.<plural>``: versions only grow, so the read that saw every
write has the largest sum, and an update computed from a staler read changes nothing. A
delete makes the sum smaller: the recompute after one writes whatever the token holds, then
recomputes once more, ordered, from a read after that write: an object written meanwhile
whose own recompute landed first is counted again, not undone by the delete's. Known gap:
a recompute whose read still saw the deleted object carries a larger sum than any made
after the delete, so if it lands last (an item's update racing a prune's delete of another
item of its payer; two deletes of one payer's items at once) the parent keeps a plan that
counts the deleted item until the payer's next item event. No Clerk event deletes an item:
a prune does, or a deleted payer's cascade (its other payer is recomputed).

A parent's creation reads its objects only when one is waiting: an object written while its
parent was not stored leaves a marker (``WAITING`` + the parent's id) in the tombstones
collection, then recomputes once more; the parent's insert reads its tombstone and that
marker in one query (``waiting_keys``). So a signup costs no read of its own, and either
the marker is seen or the second recompute finds the parent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from clerksync.kinds.base import Kind, Rollup
from clerksync.kinds.registry import BY_NAME, rollups_onto
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, find_in, utcnow

#: parent kind name -> the Clerk ids of the parents a write touched
Parents = Mapping[str, set[str]]

#: the tombstones collection's ``_id`` of a marker: an object for this parent is waiting
WAITING = "rollups-waiting:"


def answered(store: Store, parent_ids: list[str]) -> None:
    """Remove these parents' markers: created (and recomputed) or deleted, none is read again."""
    store.tombstones.delete_many({"_id": {"$in": [WAITING + p for p in parent_ids]}})


def waiting_keys(store: Store, parent: Kind, parent_id: str) -> list[str]:
    """The marker a new ``parent`` document reads with its tombstone: none when the app keeps
    no field another kind rolls up onto it."""
    return [WAITING + parent_id] if store.schema.derived(parent) else []


def token_field(child: Kind) -> str:
    return f"{bk.ROLLUPS}.{child.plural}"


def parents_of_items(child: Kind, items: Iterable[Any]) -> dict[str, set[str]]:
    """The parents validated objects of ``child`` name, by parent kind."""
    found: dict[str, set[str]] = defaultdict(set)
    for item in items:
        values = child.values(item)
        for rollup in child.rollups:
            parent = values.get(rollup.via)
            if isinstance(parent, str) and parent:
                found[rollup.parent].add(parent)
    return found


def parents_of_docs(
    store: Store, child: Kind, docs: Iterable[Mapping[str, Any]]
) -> dict[str, set[str]]:
    """The parents stored documents of ``child`` name, by parent kind."""
    found: dict[str, set[str]] = defaultdict(set)
    if not child.rollups:
        return found
    section = store.schema.section(child)
    for doc in docs:
        for rollup in child.rollups:
            parent = doc.get(section.require(rollup.via))
            if isinstance(parent, str) and parent:
                found[rollup.parent].add(parent)
    return found


def fields_read(store: Store, child: Kind) -> dict[str, int]:
    """What a delete must read of a document before it goes (the parents it names)."""
    section = store.schema.section(child)
    return {section.require(rollup.via): 1 for rollup in child.rollups}


def refresh(store: Store, child: Kind, parents: Parents, *, after_delete: bool = False) -> None:
    """Recompute ``child``'s fields on these parents from what is stored (see the module
    docstring); ``after_delete``: whatever the token holds, then ordered."""
    if not child.rollups or not store.stores(child):
        return
    for rollup in child.rollups:
        ids = parents.get(rollup.parent)
        if not ids:
            continue
        if after_delete:
            _apply(store, child, rollup, ids, ordered=False, only_found=False)
        if _apply(store, child, rollup, ids, ordered=True, only_found=False):
            _mark_missing(store, child, rollup, ids, ordered=True)


def created(store: Store, parent: Kind, ids: Iterable[str]) -> None:
    """Parents whose documents were just created (or adopted): their fields from the
    objects stored for them already, if any (nothing is written for one that has none)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return
    for child, rollup in rollups_onto(parent):
        if not store.stores(child):
            continue
        if len(wanted) > IN_CHUNK and not store.collection(child).estimated_document_count():
            continue  # a page of new users while no item is stored: one command, not a read
        _apply(store, child, rollup, wanted, ordered=True, only_found=True)


def _apply(
    store: Store,
    child: Kind,
    rollup: Rollup,
    parent_ids: set[str],
    *,
    ordered: bool,
    only_found: bool,
) -> bool:
    """Recompute; whether some parent's update matched nothing (not stored, or newer)."""
    from pymongo import UpdateOne

    parent = BY_NAME[rollup.parent]
    names = {f: n for f, n in store.schema.derived(parent).items() if f in rollup.fields}
    if not names:
        return False  # the app keeps no such fields (or not the parent)
    found = _objects(store, child, rollup, parent_ids)
    key, token_path = store.key(parent), token_field(child)
    ops = []
    for parent_id in sorted(parent_ids):
        objects = found.get(parent_id, [])
        if only_found and not objects:
            continue
        token = sum(o["updated_at"] for o in objects if isinstance(o["updated_at"], int))
        values = rollup.derive(objects)
        change = {"$set": {**{n: values.get(f) for f, n in names.items()}, token_path: token}}
        query: dict[str, Any] = {key: parent_id}
        if ordered:
            query[token_path] = {"$not": {"$gt": token}}
        ops.append(UpdateOne(query, change))
    matched = store.collection(parent).bulk_write(ops, ordered=False).matched_count if ops else 0
    if only_found and found:  # the parents' markers are answered
        answered(store, sorted(found))
    return matched < len(ops)


def _mark_missing(
    store: Store, child: Kind, rollup: Rollup, parent_ids: set[str], *, ordered: bool
) -> None:
    """Leave a marker for the parents not stored, then recompute once more (module
    docstring)."""
    from pymongo import UpdateOne

    parent = BY_NAME[rollup.parent]
    if not store.schema.derived(parent):
        return
    key = store.key(parent)
    stored = find_in(store.collection(parent), key, sorted(parent_ids), {key: 1})
    present = {d.get(key) for d in stored}
    # A deleted parent never comes back: nothing will read its marker.
    missing = parent_ids - present
    missing -= store.tombstoned(sorted(missing)) if missing else set()
    if missing:
        marks = [
            UpdateOne({"_id": WAITING + p}, {"$setOnInsert": {"since": utcnow()}}, upsert=True)
            for p in sorted(missing)
        ]
        store.tombstones.bulk_write(marks, ordered=False)
    # Again for all: one found present now may have been created after the first recompute
    # and have read its tombstone before the marker (the ordering token keeps this safe).
    _apply(store, child, rollup, parent_ids, ordered=ordered, only_found=False)


def _objects(
    store: Store, child: Kind, rollup: Rollup, parent_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every stored object of ``child`` naming one of these parents, in logical names, by
    parent: one indexed read (``$in`` chunks)."""
    section = store.schema.section(child)
    via = section.require(rollup.via)
    reads = {f: section.require(f) for f in rollup.reads}
    projection = {via: 1, section.clerk_id: 1, bk.UPDATED_AT: 1, "_id": 0}
    projection.update({name: 1 for name in reads.values()})
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in find_in(store.collection(child), via, sorted(parent_ids), projection):
        view = {"clerk_id": doc.get(section.clerk_id), "updated_at": bk.field(doc, bk.UPDATED_AT)}
        view.update({f: doc.get(name) for f, name in reads.items()})
        found[str(doc.get(via))].append(view)
    return found
