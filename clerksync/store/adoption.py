"""Adoption: a Clerk user takes over the one document the app created for its verified
email, instead of getting a second one (README, "Adoption")."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clerksync.kinds.user import CLERK_USER_ID, ClerkUser
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import upsert_update
from clerksync.store.mongo import translating

if TYPE_CHECKING:
    pass
from clerksync.store.base import StoreBase, WriteResult


@translating
class AdoptingStore(StoreBase):
    """Taking over the documents the app created itself (a verified email, exactly one
    candidate): the receiver's and reconcile's shared rules."""

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
        """``unique``, ``plain`` or None for the app's email field (checked once a minute)."""
        now = time.monotonic()
        if self._email_index is None or now - self._email_index[0] > 60:
            email = self.schema.users.email
            kind = None
            for index in self.app_indexes() if email else []:
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
            self._email_index = (now, kind)
        return self._email_index[1]

    def adoption_candidates(
        self, emails: Iterable[str], *, limit: int | None = None
    ) -> dict[str, list[Any]]:
        """Documents the app created, by lower-cased email: the email is one of ``emails``
        and the Clerk-id field is missing, null or not a Clerk user id (``clerk_34``).

        Addresses are matched as given and lower-cased, an equality the app's email index
        answers (Clerk keeps addresses lower-case; ``doctor`` names app documents whose
        address has capitals, which this misses)."""
        users = self.schema.users
        wanted = sorted({e for email in emails for e in (email, email.lower())})
        if not users.email or not wanted:
            return {}
        query = {
            users.email: {"$in": wanted},
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
        }
        cursor = self.users.find(query, {users.email: 1, users.clerk_id: 1})
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
        users = self.schema.users
        if not users.email:
            return {}
        query = {
            users.clerk_id: {"$not": {"$regex": CLERK_USER_ID.pattern}},
            users.email: {"$type": "string"},
        }
        found: dict[str, list[Any]] = {}
        for doc in self.users.find(query, {users.email: 1, users.clerk_id: 1}).limit(limit):
            found.setdefault(doc[users.email].lower(), []).append(doc)
        return found

    def _candidates_for(
        self, batch: list[ClerkUser], candidates: Mapping[str, list[Any]] | None
    ) -> Mapping[str, list[Any]]:
        emails = [u.email for u in batch if u.email]
        if candidates is None:
            return self.adoption_candidates(emails)
        return {e.lower(): candidates[e.lower()] for e in emails if e.lower() in candidates}

    def adopt(self, user: ClerkUser, now: Any) -> WriteResult | None:
        """Take over the one app-created document with this user's *verified* primary email:
        the Clerk id and the Clerk-owned fields are set, the app's fields kept, no second
        document. None when there is nothing (or more than one thing) to adopt."""

        users = self.schema.users
        if not (user.email and user.email_verified and users.email):
            return None
        found = self.adoption_candidates([user.email], limit=2).get(user.email.lower(), [])
        if len(found) != 1 or self.is_tombstoned(user.id):
            return None
        return self._take_over(user, found[0], now)

    def _take_over(self, user: ClerkUser, found: Mapping[str, Any], now: Any) -> WriteResult | None:
        from pymongo.errors import DuplicateKeyError

        users = self.schema.users
        update, _ = upsert_update(user, now, self.schema)
        fields = {**update["$set"], bk.DUE: now}
        candidate = {"_id": found["_id"], users.clerk_id: found.get(users.clerk_id)}
        try:
            result = self.users.update_one(candidate, {"$set": fields, "$inc": {bk.SEQ: 1}})
        except DuplicateKeyError as exc:
            if not self._ours(exc.details or {}):
                raise self._refused(exc, f"Clerk user {user.id}") from None
            return None  # the user has a document under its Clerk id after all
        if not result.modified_count:
            return None  # adopted or changed by someone else meanwhile
        # A delete that ran before the take-over found no document under the Clerk id; its
        # tombstone, written before that, is visible now (the receiver's insert rule).
        if self.is_tombstoned(user.id):
            self.users.delete_one({"_id": found["_id"], users.clerk_id: user.id})
            return WriteResult("stale")
        return WriteResult("applied", wants_write_back=True, adopted=True)
