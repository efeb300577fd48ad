"""Fields a kind keeps on its parents' documents (``Kind.rollups``: a user's and an
organization's plan, from their subscription items), kept right by the one write path.

After every write of such an object (a delivery, a page of reconcile, a prune's delete, an
undo) the parent's fields are recomputed from every object stored for that parent: a read of
the parents' tokens, one indexed read of those objects (a bulk job's first fill: what it
wrote, below), one update of the parent. The same is done when a parent's document is
created or adopted, so objects that arrived before their parent count. So the order
deliveries arrive in never matters: each recompute reads what is stored.

Two recomputes can race (two items of one payer delivered at once, an item's update and a
prune's delete of another). Each is optimistic: it reads the parents' tokens
(``clerksync.rollups.<plural>``), then their objects, and updates each parent only if its
token is still the one read, writing a new one; a parent whose token changed meanwhile
(another recompute wrote first) is read and recomputed again. So the update that lands last
was computed from a read made after every earlier one landed: deletes included, the parent
ends as what is stored says. (A token an older clerksync wrote, a sum of versions, is
matched the same way.) Two tries are enough: a try loses only to a write that landed after
its token read; when the second loses too, the write that beat it read the token, then the
objects, after the first's winner landed, so after the object this recompute is for was
written: that write counted it.

A bulk job's recompute (``refresh(..., guess=True)``: reconcile's, ``clerksync.store.owed``)
skips the first token read and guesses that its parents hold none, as they do while a
database is first filled: an update that finds no token on a parent proves no recompute
ever landed there, which is all that reading "none" just before the objects would have
shown (a token, once written, is only ever replaced). A parent that holds one fails the
guess and takes the two tries above. A parent created after the guess read its objects is
updated too, with that read: right, unless one of them went meanwhile; then the parent's
creation found the marker that object's recompute left for it (or adopted the app's own
document) and wrote its fields with a token (``created(awaited=True)``), so the guess fails.

While a database is first filled (the kind's collection was empty when the job began), the
guess is computed from the objects the job's pages wrote, without reading them back, less
those a tombstone refuses by then (``Owed``): every other object stored for a parent that
holds no token was written meanwhile by a write whose own recompute has yet to land (it
then fails against the guess's token or makes the guess fail: the two tries above; a
redelivery's duplicate recomputes again), and a delete writes its tombstone before it
removes anything. (A parent that gained objects earlier in the same job was recomputed
then: it holds a token. A job whose walk failed reads: ``Owed.settle``.)

A parent's creation reads its objects only when one is waiting: an object written while its
parent was not stored leaves a marker (``WAITING`` + the parent's id) in the tombstones
collection, then recomputes once more; the parent's insert reads its tombstone and that
marker in one query (``waiting_keys``; a reconcile page's, its page's tombstones and their
markers). So a signup costs no read of its own, and either the marker is seen or the second
recompute finds the parent (and removes the marker). A writer stopped between a parent's
insert and that read leaves the marker beside a stored parent: reconcile's sweep recomputes
such parents first (``answer_stored``), and doctor names them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import bson
from bson import ObjectId

from clerksync.kinds.base import Kind, Rollup
from clerksync.kinds.registry import BY_NAME, rollups_onto
from clerksync.mapping import bookkeeping as bk
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, WRITE_CHUNK, find_in, translated, utcnow

#: parent kind name -> the Clerk ids of the parents a write touched
Parents = Mapping[str, set[str]]

#: the tombstones collection's ``_id`` of a marker: an object for this parent is waiting
WAITING = "rollups-waiting:"
#: every marker: the ``_id``s from ``WAITING`` up to the string after all that start with it
MARKERS = {"_id": {"$gte": WAITING, "$lt": WAITING[:-1] + chr(ord(WAITING[-1]) + 1)}}

#: tries of one recompute: when both lose to other writes, the second of those read after the
#: first landed, so after what this one recomputes for (module docstring)
TRIES = 2

#: a parent that holds no token yet (none of its objects was ever recomputed onto it)
NO_TOKEN = object()


def answered(store: Store, parent_ids: list[str]) -> None:
    """Remove these parents' markers: created (and recomputed) or deleted, none is read again."""
    store.tombstones.delete_many({"_id": {"$in": [WAITING + p for p in parent_ids]}})


@translated
def stored_waiting(store: Store, *, before: datetime | None = None) -> dict[str, list[str]]:
    """Parent kind name -> the stored parents that still hold a marker: a writer stopped
    between such a parent's insert and its marker read, and nothing else reads that marker.
    ``before`` (doctor's): only markers written before it, of parents inserted before it
    where the document's ``ObjectId`` tells (a writer that inserted one since may still be
    about to read its marker)."""
    parents = [kind for kind in store.kinds if store.schema.derived(kind)]
    if not parents:
        return {}
    query: dict[str, Any] = dict(MARKERS)
    if before is not None:
        query["since"] = {"$lt": before}
    ids = [str(m["_id"])[len(WAITING) :] for m in store.tombstones.find(query, {"_id": 1})]
    found: dict[str, list[str]] = {}
    for parent in parents:
        named = sorted(i for i in ids if parent.id_re.match(i))
        key = store.key(parent)
        held = sorted(
            d[key]
            for d in find_in(store.collection(parent), key, named, {key: 1})
            if isinstance(d.get(key), str) and not _newer(d.get("_id"), before)
        )
        if held:
            found[parent.name] = held
    return found


def _newer(document_id: Any, before: datetime | None) -> bool:
    """Was this document inserted at or after ``before``, as far as its ``_id`` tells?"""
    if before is None or not isinstance(document_id, ObjectId):
        return False
    return bool(document_id.generation_time >= before)


def answer_stored(store: Store) -> None:
    """Recompute the stored parents that hold a marker (``stored_waiting``), as their
    creation would have, and remove the markers."""
    for name, ids in stored_waiting(store).items():
        created(store, BY_NAME[name], ids, awaited=True)


def waiting_keys(store: Store, parent: Kind, parent_id: str) -> list[str]:
    """The marker a new ``parent`` document reads with its tombstone: none when the app keeps
    no field another kind rolls up onto it."""
    return waiting_keys_of(store, parent, [parent_id])


def waiting_keys_of(store: Store, parent: Kind, parent_ids: Iterable[str]) -> list[str]:
    """``waiting_keys`` of many new ``parent`` documents (a reconcile page's)."""
    return [WAITING + p for p in parent_ids] if store.schema.derived(parent) else []


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


def views_of_items(
    store: Store, child: Kind, items: Iterable[Any]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Parent kind -> parent's Clerk id -> these validated objects as ``_objects`` reads them
    once stored (their ``$set``: ``Section.values``): what a bulk job wrote, not read back."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    section = store.schema.section(child)
    kept = [r for r in child.rollups if store.schema.derived(BY_NAME[r.parent])]
    for item in items:
        stored = section.values(child, item)
        for rollup in kept:
            parent = stored.get(section.require(rollup.via))
            if isinstance(parent, str) and parent:
                view = {"clerk_id": item.id, "updated_at": item.updated_at}
                view.update({f: stored.get(section.require(f)) for f in rollup.reads})
                found[rollup.parent][parent].append(view)
    return found


def fields_read(store: Store, child: Kind) -> dict[str, int]:
    """What a delete must read of a document before it goes (the parents it names)."""
    section = store.schema.section(child)
    return {section.require(rollup.via): 1 for rollup in child.rollups}


def refresh(
    store: Store,
    child: Kind,
    parents: Parents,
    *,
    guess: bool = False,
    wrote: Mapping[str, Mapping[str, list[dict[str, Any]]]] | None = None,
) -> None:
    """Recompute ``child``'s fields on these parents from what is stored (see the module
    docstring); ``guess``: skip the first token read (bulk jobs, whose parents mostly hold
    none); ``wrote`` (with ``guess``, a first fill): every object of these parents, by
    ``views_of_items``, so the guess reads none."""
    if not child.rollups or not store.stores(child):
        return
    for rollup in child.rollups:
        ids = parents.get(rollup.parent)
        given = wrote.get(rollup.parent, {}) if wrote is not None and guess else None
        missing = (
            _apply(store, child, rollup, ids, only_found=False, guess=guess, wrote=given)
            if ids
            else set()
        )
        if missing:
            _mark_missing(store, child, rollup, missing)


def created(store: Store, parent: Kind, ids: Iterable[str], *, awaited: bool = False) -> None:
    """Parents whose documents were just created (or adopted): their fields from the
    objects stored for them already, if any (nothing is written for one that has none).
    ``awaited``: objects were stored for them before (a marker, an adoption): their fields
    are written even if those have gone since, and so is a token, which a bulk recompute
    that read them and guessed no token (module docstring) can then not land over; their
    markers are answered."""
    wanted = {i for i in ids if i}
    if not wanted:
        return
    for child, rollup in rollups_onto(parent):
        if not store.stores(child):
            continue
        if (
            not awaited
            and len(wanted) > IN_CHUNK
            and not store.collection(child).estimated_document_count()
        ):
            continue  # a page of new users while no item is stored: one command, not a read
        _apply(store, child, rollup, wanted, only_found=not awaited)
    if awaited and store.schema.derived(parent):
        answered(store, sorted(wanted))  # even if their objects have gone


def _apply(
    store: Store,
    child: Kind,
    rollup: Rollup,
    parent_ids: set[str],
    *,
    only_found: bool,
    guess: bool = False,
    wrote: Mapping[str, list[dict[str, Any]]] | None = None,
) -> set[str]:
    """Recompute, each parent's update conditional on the token read before its objects
    were, or guessed absent (module docstring); a parent whose token changed meanwhile is
    recomputed once more. ``wrote``: the guess's objects, not read (a first fill). The
    parents not stored."""
    parent = BY_NAME[rollup.parent]
    names = {f: n for f, n in store.schema.derived(parent).items() if f in rollup.fields}
    if not names:
        return set()  # the app keeps no such fields (or not the parent)
    if only_found:  # most new parents have no object yet: one read for them, no token read
        parent_ids = parent_ids & set(_objects(store, child, rollup, parent_ids))
        if not parent_ids:
            return set()
    collection, key, token_path = store.collection(parent), store.key(parent), token_field(child)
    if guess:  # a parent not stored, or holding a token, fails its update and is read then
        tokens, missing = dict.fromkeys(parent_ids, NO_TOKEN), set()
    else:
        tokens = _tokens(collection, key, token_path, parent_ids)
        missing = parent_ids - tokens.keys()
    had_objects: set[str] = set()
    for attempt in range(TRIES + guess):
        if attempt == 0 and wrote is not None:
            found: Mapping[str, list[dict[str, Any]]] = wrote
        else:
            found = _objects(store, child, rollup, set(tokens))
        had_objects.update(found)
        stamp, changes = ObjectId(), []  # (parent, token read, update)
        for parent_id in sorted(tokens):
            objects = found.get(parent_id, [])
            if only_found and not objects:
                continue
            values = rollup.derive(objects)
            change = {"$set": {**{n: values.get(f) for f, n in names.items()}, token_path: stamp}}
            read = tokens[parent_id]
            held = {"$exists": False} if read is NO_TOKEN else read  # cheaper than a null
            changes.append((parent_id, held, change))
        if _matched(collection, key, token_path, changes) == len(changes):  # none, or all landed
            break
        sent = {parent_id for parent_id, _, _ in changes}
        now = _tokens(collection, key, token_path, sent)  # the next try's token read
        missing |= sent - now.keys()  # deleted meanwhile
        tokens = {p: token for p, token in now.items() if token != stamp}
        if not tokens:
            break
    if only_found and had_objects:  # the parents' markers are answered, their fields written
        answered(store, sorted(had_objects))
    return missing


def _matched(
    collection: Any, key: str, token_path: str, changes: list[tuple[str, Any, dict[str, Any]]]
) -> int:
    """Update each parent still holding the token read, in commands of ``WRITE_CHUNK``
    parents, all sent even when one refuses some, then raise the first refusal; how many
    matched. Parents given one change from one token share an update, ``IN_CHUNK`` at a
    time: most share a plan, and the test server takes half as long as one update each (a
    count per parent: writers run only once the Clerk id is unique). pymongo retries no
    such command, so a lost connection gets one resend: a parent the first send updated
    holds the new token, fails the resend's condition and is read again."""
    from pymongo import UpdateMany, UpdateOne
    from pymongo.errors import BulkWriteError, ConnectionFailure, ServerSelectionTimeoutError

    matched, refused = 0, None
    for at in range(0, len(changes), WRITE_CHUNK):
        alike: dict[bytes, tuple[Any, dict[str, Any], list[str]]] = {}
        for parent_id, held, change in changes[at : at + WRITE_CHUNK]:
            same = bson.encode({"held": held, "change": change})  # exact: 1 and 1.0 differ
            alike.setdefault(same, (held, change, []))[2].append(parent_id)
        ops = [
            UpdateOne({key: ids[0], token_path: held}, change)
            if len(ids) == 1
            else UpdateMany({key: {"$in": ids[i : i + IN_CHUNK]}, token_path: held}, change)
            for held, change, ids in alike.values()
            for i in range(0, len(ids), IN_CHUNK)
        ]
        try:
            try:
                matched += collection.bulk_write(ops, ordered=False).matched_count
            except ServerSelectionTimeoutError:
                raise  # never sent: no server to resend to either (pymongo's rule too)
            except ConnectionFailure:
                matched += collection.bulk_write(ops, ordered=False).matched_count
        except BulkWriteError as exc:
            if refused is None:
                refused = exc
    if refused is not None:
        raise refused
    return matched


def _tokens(collection: Any, key: str, token_path: str, ids: set[str]) -> dict[str, Any]:
    """Clerk id -> the token stored (``NO_TOKEN`` when none is) of the parents stored."""
    stored = find_in(collection, key, sorted(ids), {key: 1, token_path: 1})
    return {
        str(d[key]): bk.field(d, token_path, NO_TOKEN)
        for d in stored
        if isinstance(d.get(key), str)
    }


def _mark_missing(store: Store, child: Kind, rollup: Rollup, missing: set[str]) -> None:
    """Leave a marker for the parents not stored, then recompute them once more (module
    docstring)."""
    from pymongo import UpdateOne

    # A deleted parent never comes back: nothing will read its marker.
    waiting = missing - store.tombstoned(sorted(missing))
    if waiting:
        marks = [
            UpdateOne({"_id": WAITING + p}, {"$setOnInsert": {"since": utcnow()}}, upsert=True)
            for p in sorted(waiting)
        ]
        store.tombstones.bulk_write(marks, ordered=False)
    # Again: one found present now may have been created after the first recompute and
    # have read its tombstone before the marker. Those found are recomputed from a read
    # made after their insert and the marker: nothing needs their markers any more.
    found = waiting - _apply(store, child, rollup, missing, only_found=False)
    # (A marker is the parent's, not this kind's: kept when another kind rolls up onto the
    # parent too, whose objects this recompute did not read.)
    if found and len(rollups_onto(BY_NAME[rollup.parent])) == 1:
        answered(store, sorted(found))


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
