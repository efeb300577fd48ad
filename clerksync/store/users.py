"""What only users need on the one write path (``UserHooks``): the app id, adoption of the
documents the app created itself, and the write-back mark; and the admin flag.

The app id (the fastapi preset's ``user_id``) comes from one counter document: ``$inc`` is
atomic, so concurrent signups never share one, and a number handed out is never handed out
again. Adoption (docs/schema.md, "Adoption"): a Clerk user with no document under its Clerk id,
whose primary email is *verified* and matches exactly one document the app created (no
Clerk user id), takes that document over instead of getting a second one. The mark
(``clerksync.dueAt``, ``seq``) is written in the same write as the state that needs it, so
a crash cannot lose a write-back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from clerksync.errors import IndexRefused, NotFound
from clerksync.kinds.base import Kind
from clerksync.kinds.user import CLERK_USER_ID, USER, ClerkUser
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import new_document, upsert_update
from clerksync.mapping.users import agreeing_filter, clerk_copy_differs
from clerksync.store.adoption import AppDocuments
from clerksync.store.database import Store
from clerksync.store.group import Group
from clerksync.store.hooks import Hooks, WriteResult
from clerksync.store.mongo import translated, translating, utcnow
from clerksync.store.writer import Writer

log = logging.getLogger("clerksync.store")

#: what adoption by email relies on, by the kind of index the app's email field has
EMAIL_INDEX_USE = {
    "unique": "a new user whose email an app document holds is adopted when the index refuses it",
    "plain": "a new user with a verified email is looked up by it and adopts the app's document",
    None: "no index: a new user's email is looked for by a scan while the app has documents",
}


def with_mark(update: Mapping[str, Any], now: Any) -> dict[str, Any]:
    """``update`` that also marks the write-back due (``clerksync.dueAt``, ``seq`` + 1)."""
    marked = {op: dict(fields) for op, fields in update.items()}
    marked["$set"][bk.DUE] = now
    marked["$inc"] = {**marked.get("$inc", {}), bk.SEQ: 1}
    return marked


def writer(store: Store) -> Writer:
    """The write path with users' hooks: what every caller that writes Clerk states uses."""
    return Writer(
        store, hooks=lambda s, kind: UserHooks(s, kind) if kind is USER else Hooks(s, kind)
    )


@translating
class UserHooks(Hooks):
    """Users on the one write path: see the module docstring."""

    writes_back = True

    def __init__(self, store: Store, kind: Kind = USER) -> None:
        super().__init__(store, kind)
        self.users = store.schema.users
        self._counter_seeded = False
        self._email_index: tuple[float, str | None] | None = None
        read = self._read_email_index
        self._index_reads: Group[None, str | None] = Group(lambda a: [read()] * len(a))
        self._app_docs = AppDocuments(store)

    # -- one state ---------------------------------------------------------------------------

    def update(self, item: Any, now: datetime, *, creating: bool = False) -> tuple[dict, bool]:
        app_id = self.allocate_app_ids()[0] if creating and self.users.app_id else None
        return upsert_update(item, now, self.users, app_id=app_id)

    def agreeing(self, item: Any) -> dict[str, Any] | None:
        return agreeing_filter(item.public_metadata, self.users)

    def mark(self, update: dict[str, Any], now: datetime) -> dict[str, Any]:
        return with_mark(update, now)

    def needs_create_values(self) -> bool:
        return bool(self.users.app_id)

    def unused(self, update: Mapping[str, Any]) -> None:
        # The app id of an insert that lost a race goes back to the counter when no other
        # was handed out since: no document ever held it, so two never will.
        field = self.users.app_id
        app_id = (update.get("$setOnInsert") or {}).get(field) if field else None
        if isinstance(app_id, int):
            key = f"{self.store.users.name}.{field}"
            self.store.counters.update_one({"_id": key, "seq": app_id}, {"$inc": {"seq": -1}})

    def may_adopt(self, item: Any) -> bool:
        return bool(item.email and item.email_verified and self.users.email)

    def adoptable(self, item: Any) -> bool:
        # With the app's email field indexed, the lookup is one index probe. Without, it
        # scans the collection: only while the app has documents of its own to adopt
        # (``app_documents``), so a signup where there is nothing to adopt stays one write.
        if not self.may_adopt(item):
            return False
        return self.email_indexed() or self.app_documents()

    def adopt_when_refused(self) -> bool:
        return self.email_unique()

    def retry_refused(self, exc: IndexRefused) -> bool:
        # The app allocated ids itself since the counter was seeded: seed it again above them.
        if not self.users.app_id or exc.keys != (self.users.app_id,):
            return False
        self._counter_seeded = False
        return True

    # -- the app id --------------------------------------------------------------------------

    def allocate_app_ids(self, count: int = 1) -> list[int]:
        """``count`` integers for the schema's app id, from one counter (module docstring).
        It starts above the largest id the collection holds (``$max``), so ids the app
        allocated itself before clerksync are never reused either."""
        from pymongo import ReturnDocument

        field = self.users.app_id
        assert field is not None
        key = f"{self.store.users.name}.{field}"
        if not self._counter_seeded:
            self._seed_counter(key, field)
        after = self.store.counters.find_one_and_update(
            {"_id": key},
            {"$inc": {"seq": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert after is not None  # an upsert returning the document after
        last = int(after["seq"])
        return list(range(last - count + 1, last + 1))

    def _seed_counter(self, key: str, field: str) -> None:
        from pymongo.errors import DuplicateKeyError

        top = self.store.users.find_one(
            {field: {"$type": "number"}}, {field: 1}, sort=[(field, -1)]
        )
        highest = int(top[field]) if top is not None else 0
        counters = self.store.counters
        try:
            counters.update_one({"_id": key}, {"$max": {"seq": highest}}, upsert=True)
        except DuplicateKeyError:  # another process seeded it at the same moment
            counters.update_one({"_id": key}, {"$max": {"seq": highest}})
        self._counter_seeded = True

    # -- adoption ----------------------------------------------------------------------------

    def email_indexed(self) -> bool:
        """Is the app's email field the first key of an index (checked once a minute)?"""
        return self._email_index_kind() is not None

    def email_unique(self) -> bool:
        """Is there a unique index on the app's email field alone, covering every document
        with the same comparison as equality (no partial filter, no collation)? Then an
        app-created document with a new user's email refuses the user's insert, and the
        receiver can insert first and adopt only when refused: no lookup per signup."""
        return self._email_index_kind() == "unique"

    def _email_index_kind(self) -> str | None:
        """The kind of the email field's index, read once a minute; while the field has none,
        at each use (one listIndexes, shared by the signups of the same moment), so an index
        the app creates while the receiver runs is used from the next signup on."""
        cached = self._email_index
        if cached is None or cached[1] is None or time.monotonic() - cached[0] > 60:
            # Signups at the same moment share one read, made after each of them asked.
            return self._index_reads(None)
        return cached[1]

    def _read_email_index(self) -> str | None:
        email = self.users.email
        kind = None
        for index in self.store.app_indexes() if email else []:
            key = dict(index["key"])
            if next(iter(key), None) != email:
                continue
            whole = (
                len(key) == 1
                and index.get("unique")
                and "partialFilterExpression" not in index
                and "collation" not in index
            )
            kind = "unique" if whole else kind or "plain"
        previous = self._email_index
        if previous is not None and previous[1] != kind:
            where = f"{self.store.users.name}.{email}"
            log.warning("the app's index on %s changed: %s", where, EMAIL_INDEX_USE[kind])
        self._email_index = (time.monotonic(), kind)
        return kind

    def app_documents(self) -> bool:
        """Does the collection hold a document the app created (``AppDocuments``)?"""
        return self._app_docs.exist()

    def adoption_candidates(
        self, emails: Iterable[str], *, limit: int | None = None
    ) -> dict[str, list[Any]]:
        """Documents the app created, by lower-cased email: the email is one of ``emails``
        and the Clerk-id field is missing, null or not a Clerk user id (``clerk_34``).

        Addresses are matched as given and lower-cased, an equality the app's email index
        answers (Clerk keeps addresses lower-case; ``doctor`` names app documents whose
        address has capitals, which this misses)."""
        users = self.users
        wanted = sorted({e for email in emails for e in (email, email.lower())})
        if not users.email or not wanted:
            return {}
        query = {
            users.email: {"$in": wanted},
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
        }
        cursor = self.store.users.find(query, {users.email: 1, users.clerk_id: 1})
        if limit:
            cursor = cursor.limit(limit)
        found: dict[str, list[Any]] = {}
        for doc in cursor:
            address = doc.get(users.email)
            if isinstance(address, str):
                found.setdefault(address.lower(), []).append(doc)
        return found

    def adoption_map(self, limit: int = 100_000) -> dict[str, list[Any]]:
        """Every document the app created (no Clerk user id) with an email, by lower-cased
        email: one read for a whole reconcile run, instead of one per page (without an index
        on the email field, each would scan the collection)."""
        users = self.users
        if not users.email:
            return {}
        query = {
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
            users.email: {"$type": "string"},
        }
        found: dict[str, list[Any]] = {}
        for doc in self.store.users.find(query, {users.email: 1, users.clerk_id: 1}).limit(limit):
            found.setdefault(doc[users.email].lower(), []).append(doc)
        return found

    def candidates_for(
        self, batch: list[ClerkUser], candidates: Mapping[str, list[Any]] | None
    ) -> Mapping[str, list[Any]]:
        emails = [u.email for u in batch if u.email]
        if candidates is None:
            return self.adoption_candidates(emails)
        return {e.lower(): candidates[e.lower()] for e in emails if e.lower() in candidates}

    def adopt(self, item: Any, now: datetime) -> WriteResult | None:
        """Take over the one app-created document with this user's *verified* primary email:
        the Clerk id and the Clerk-owned fields are set, the app's fields kept, no second
        document. None when there is nothing (or more than one thing) to adopt."""
        if not (item.email and item.email_verified and self.users.email):
            return None
        found = self.adoption_candidates([item.email], limit=2).get(item.email.lower(), [])
        if len(found) != 1 or self.store.is_tombstoned(item.id):
            return None
        return self.take_over(item, found[0], now)

    def take_over(self, user: ClerkUser, found: Mapping[str, Any], now: Any) -> WriteResult | None:
        from pymongo.errors import DuplicateKeyError

        users, store = self.users, self.store
        update, _ = upsert_update(user, now, users)
        fields = {**update["$set"], bk.DUE: now}
        candidate = {"_id": found["_id"], users.clerk_id: found.get(users.clerk_id)}
        try:
            result = store.users.update_one(candidate, {"$set": fields, "$inc": {bk.SEQ: 1}})
        except DuplicateKeyError as exc:
            if not store.ours(USER, exc.details or {}):
                raise store.refused(USER, exc.details or {}, user.id) from None
            return None  # the user has a document under its Clerk id after all
        if not result.modified_count:
            return None  # adopted or changed by someone else meanwhile
        # A delete that ran before the take-over found no document under the Clerk id; its
        # tombstone, written before that, is visible now (the receiver's insert rule).
        if store.is_tombstoned(user.id):
            store.users.delete_one({"_id": found["_id"], users.clerk_id: user.id})
            return WriteResult("stale")
        return WriteResult("applied", wants_write_back=True, adopted=True)

    # -- a page of states (reconcile) --------------------------------------------------------

    def page_candidates(self) -> Mapping[str, list[Any]] | None:
        return self.adoption_map()

    def plan_fields(self) -> dict[str, int]:
        # what the metadata comparison needs: an update whose Clerk copy names every key but
        # disagrees with the document queues its write-back in the same write
        return self.users.projection()

    def take_over_page(
        self, fresh: list[Any], now: datetime, candidates: Mapping[str, list[Any]] | None
    ) -> tuple[set[str], int]:
        verified = [u for u in fresh if u.email and u.email_verified]
        if not verified:
            return set(), 0
        found = self.candidates_for(verified, candidates)
        gone = self.store.tombstoned([u.id for u in verified]) if found else set()
        taken: set[str] = set()
        adopted = 0
        for user in verified:
            docs = found.get((user.email or "").lower(), [])
            if len(docs) != 1 or user.id in gone:
                continue
            took = self.take_over(user, docs[0], now)
            if took is not None:  # adopted, or adopted and deleted again (stale)
                adopted += took.outcome == "applied"
                taken.add(user.id)
        return taken, adopted

    def adoptable_in(
        self, fresh: list[Any], candidates: Mapping[str, list[Any]] | None
    ) -> set[str]:
        found = self.candidates_for([u for u in fresh if u.email and u.email_verified], candidates)
        return {
            u.id
            for u in fresh
            if u.email_verified and len(found.get((u.email or "").lower(), [])) == 1
        }

    def prepare(self, items: Iterable[Any], now: datetime) -> dict[str, dict[str, Any]]:
        # none when the schema has an app id: it is allocated at the insert
        if self.users.app_id:
            return {}
        return {u.id: new_document(upsert_update(u, now, self.users)[0]) for u in items}

    def new_documents(
        self, fresh: list[Any], now: datetime, prepared: Mapping[str, dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        ids = self.allocate_app_ids(len(fresh)) if self.users.app_id else None
        docs = []
        for n, user in enumerate(fresh):
            doc = None if ids or prepared is None else prepared.get(user.id)
            if doc is None:
                app_id = ids[n] if ids else None
                doc = new_document(upsert_update(user, now, self.users, app_id=app_id)[0])
            # A new document's id is news to Clerk: its write-back is due either way.
            doc.setdefault(bk.ROOT, {}).update(dueAt=now, seq=1)
            docs.append(doc)
        return docs

    def page_update(
        self, item: Any, now: datetime, held: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ordered update of a stored user, marked when Clerk's copy lacks our keys
        (``upsert_update``) or names them all but disagrees with the stored document."""
        update, queued = upsert_update(item, now, self.users)
        doc = held.get(item.id)
        if (
            not queued
            and doc is not None
            and clerk_copy_differs(item.public_metadata, doc, self.users)
        ):
            return with_mark(update, now)
        return update

    def upserted(self, entries: list[Mapping[str, Any]], now: datetime) -> None:
        """Gone between the plan and the write, so upserted: created after all, and with a
        new id, so its write-back is due (and its app id allocated)."""
        store, users = self.store, self.users
        store.users.update_many(
            {"_id": {"$in": [entry["_id"] for entry in entries]}},
            {"$set": {bk.DUE: now}, "$inc": {bk.SEQ: 1}},
        )
        if users.app_id:
            field = users.app_id
            for entry, app_id in zip(entries, self.allocate_app_ids(len(entries)), strict=True):
                store.users.update_one(
                    {"_id": entry["_id"], field: {"$exists": False}}, {"$set": {field: app_id}}
                )


@translated
def set_admin(store: Store, doc_id: Any, value: bool) -> Mapping[str, Any]:
    """Set the admin flag (``isAdmin``, or the role) and mark the write-back in the same
    durable write. The mark leaves any claim alone, so a write-back in flight finishes,
    sees ``seq`` moved and keeps the mark for the newest state. (``update_one`` then a
    read: ``findAndModify`` is a collection scan on the wire server.)"""
    users = store.schema.users
    now = utcnow()
    change = with_mark(
        {"$set": {users.admin.field: users.admin.stored(value), **users.touched(now)}}, now
    )
    if not store.users.update_one({"_id": doc_id}, change).matched_count:
        raise NotFound(f"user {doc_id} vanished while being updated")
    doc = store.users.find_one({"_id": doc_id})
    if doc is None:
        raise NotFound(f"user {doc_id} vanished while being updated")
    linked = doc.get(users.clerk_id)
    if not (isinstance(linked, str) and CLERK_USER_ID.match(linked)):
        # The app's own user, not in Clerk: there is nothing to write back.
        store.users.update_one({"_id": doc_id}, {"$unset": {bk.DUE: ""}})
    return doc
