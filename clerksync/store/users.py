"""UserStore: the app's users collection and clerksync's own bookkeeping, over pymongo.

Every field name comes from the schema (``clerksync.schema``): the app's collection, the
app's names. Every write that precedes a webhook's 2xx uses ``w="majority", j=True`` so it
survives a failover. clerksync's unique Clerk-id index is what makes concurrent upserts
safe: two deliveries for one new user race to insert, one wins, the other gets a
duplicate-key error, which here means "someone newer got there". A duplicate-key error
from any *other* index (the app's unique ``username``, say) is a failure
(``IndexRefused``), never taken for that.

Ordering: the rule and the documents a Clerk state writes live in
``clerksync.ordering``; this module applies them.

Deleted users leave a tombstone in ``clerksync_tombstones`` (keyed by Clerk id,
never reused by Clerk), so a late ``user.updated`` cannot bring them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerksync.errors import ConfigError, IndexRefused, NotFound
from clerksync.kinds.user import CLERK_USER_ID, ClerkUser
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import is_older, new_document, ordering_filter, upsert_update
from clerksync.mapping.users import agreeing_filter
from clerksync.store.mongo import database_name, translating, utcnow

if TYPE_CHECKING:
    from pymongo import MongoClient

    from clerksync.settings import Settings
    from clerksync.store.orgs import Keep
from clerksync.store.base import WriteResult, tombstone_update, with_mark
from clerksync.store.bulk import BulkStore


@translating
class UserStore(BulkStore):
    """The app's users collection plus clerksync's tombstones, counters, delivery log and
    write-back queue (``queue``: a ``WriteBackQueue`` on the same collection). ``schema``
    names the app's collection and fields. The receiver's writes are here; the rest in the
    classes it builds on (``StoreBase``, ``AdoptingStore``, ``BulkStore``)."""

    def upsert_user(self, user: ClerkUser, *, likely_new: bool = False) -> WriteResult:
        """``apply_user``, once more if the app's own unique index on the app id refused the
        number: the app allocated ids itself since the counter was seeded, so it is seeded
        again above them."""
        try:
            return self.apply_user(user, likely_new=likely_new)
        except IndexRefused as exc:
            if not self.schema.users.app_id or exc.keys != (self.schema.users.app_id,):
                raise
            self._counter_seeded = False
            return self.apply_user(user, likely_new=likely_new)

    def apply_user(self, user: ClerkUser, *, likely_new: bool = False) -> WriteResult:
        """Apply one Clerk state if it is newer than what is stored; one durable write.

        Returns ``stale`` for an older state or a deleted user, ``duplicate`` for
        the same state again (a retried delivery, or the same state re-sent).
        ``doc`` is not returned on this hot path: reading it back costs a round trip.
        ``likely_new`` (a ``user.created``) tries a plain insert first: it costs the
        server less than an upsert, and the unique Clerk-id index turns it into
        the ordered upsert below when the user is already there. A user about to be
        created first takes over an app-created document with its verified email, if
        exactly one (``adopt``), when the app's email field is indexed (the lookup is
        then one index probe; without the index it would scan the collection on every
        signup: ``reconcile`` adopts then, and ``doctor`` says so). When that index is
        unique (the guide's model), the insert goes first and the lookup is made only if
        the email index refuses it: a signup then costs no read for adoption.
        Any other index refusing the write: ``IndexRefused``.
        """
        from pymongo.errors import DuplicateKeyError

        now = utcnow()
        users = self.schema.users
        inserted = False
        adopting = bool(user.email and user.email_verified and self.email_indexed())
        if likely_new:
            # With a unique email index, an app-created document to adopt refuses the
            # insert: look it up then, not before every signup.
            adopt_if_refused = adopting and self.email_unique()
            if adopting and not adopt_if_refused:
                adopted = self.adopt(user, now)
                if adopted is not None:
                    return adopted
            update, queued = upsert_update(user, now, self.schema, app_id=self._app_id())
            try:
                # A new document's id is news to Clerk: its write-back is due either way.
                self.users.insert_one(new_document(update if queued else with_mark(update, now)))
                inserted = True
            except DuplicateKeyError as exc:
                if not self._ours(exc.details or {}):
                    # One of the app's indexes: the email one if there is a document to
                    # adopt (the server may name another index the copy also collides with),
                    # or a second copy of a stored user, or a real conflict.
                    if adopt_if_refused:
                        adopted = self.adopt(user, now)
                        if adopted is not None:
                            return adopted
                    if not self._held(user.id):
                        if self.is_tombstoned(user.id):
                            return WriteResult("stale")  # deleted: nothing to store
                        raise self._refused(exc, f"Clerk user {user.id}") from None
                # stored already under its Clerk id (nothing to adopt): the filter decides
            adopting = False
        if not inserted:
            update, queued = upsert_update(user, now, self.schema)
            # Clerk's copy names every key (usually our own write-back echoed back): the
            # write is tried first with a filter that also requires the document to agree
            # with that copy. If it matches, no write-back is due; if not, every write below
            # carries the mark. Either way one write stores the state and the mark together:
            # no read in between, no second write a crash could lose.
            agrees = None if queued else agreeing_filter(user.public_metadata, self.schema.users)
            ordered = ordering_filter(user, self.schema)
            if (
                agrees is not None
                and self.users.update_one({**ordered, **agrees}, update).matched_count
            ):
                return WriteResult("applied")
            marked = update if queued else with_mark(update, now)
            if users.app_id or adopting:
                # Update first: a document that is there needs no app id, nor adoption.
                if self.users.update_one(ordered, marked).matched_count:
                    return self._after_write(user, inserted=False)
                if adopting:
                    adopted = self.adopt(user, now)
                    if adopted is not None:
                        return adopted
                if users.app_id:
                    update, queued = upsert_update(user, now, self.schema, app_id=self._app_id())
                    marked = update if queued else with_mark(update, now)
            try:
                result = self.users.update_one(ordered, marked, upsert=True)
            except DuplicateKeyError as exc:
                # The filter missed an existing document: what is stored is as new or newer.
                # Refused by one of the app's indexes, that holds only if the stored state is
                # as new or newer; otherwise the app's index refused this state (a username
                # another user still has, say): a failure, so the retry stores it.
                existing = self.users.find_one({users.clerk_id: user.id}, {bk.UPDATED_AT: 1})
                stored = bk.field(existing, bk.UPDATED_AT) if existing is not None else None
                if not self._ours(exc.details or {}) and (
                    existing is None or is_older(stored, user.updated_at)
                ):
                    raise self._refused(exc, f"Clerk user {user.id}") from None
                if existing is not None and stored == user.updated_at:
                    return WriteResult("duplicate")
                return WriteResult("stale")
            inserted = result.upserted_id is not None
        return self._after_write(user, inserted=inserted)

    def _after_write(self, user: ClerkUser, *, inserted: bool) -> WriteResult:
        """A write that carried the write-back mark went in."""
        users = self.schema.users
        # Only an insert can resurrect a deleted user: a delete writes its tombstone
        # before removing the document, so if ours inserted, a tombstone written
        # before that is visible now. (If ours updated, the removal comes after it.)
        if inserted and self.is_tombstoned(user.id):
            self.users.delete_one({users.clerk_id: user.id, bk.UPDATED_AT: user.updated_at})
            return WriteResult("stale")
        return WriteResult("applied", wants_write_back=True)

    def delete_user(
        self, clerk_id: str, keep: Keep | None = None, *, pruned_by: str | None = None
    ) -> WriteResult:
        """Tombstone first, then delete: ``duplicate`` when both were already done. ``keep``
        (a prune's journal) sees the memberships the cascade removes before they go;
        ``pruned_by`` (the prune run) marks the tombstone as that run's (``tombstone_update``)."""
        from pymongo import ReturnDocument

        before = self.tombstones.find_one_and_update(
            {"_id": clerk_id},
            tombstone_update(utcnow(), pruned_by=pruned_by),
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        removed = self.users.delete_one({self.clerk_id: clerk_id}).deleted_count
        removed += self.orgs.remove_user_memberships(clerk_id, keep)  # after the tombstone
        return WriteResult("applied" if removed or before is None else "duplicate")

    def set_admin(self, doc_id: Any, value: bool) -> Mapping[str, Any]:
        """Set the admin flag (``isAdmin``, or the role) and mark the write-back in the same
        durable write. The mark leaves any claim alone, so a write-back in flight finishes,
        sees ``seq`` moved and keeps the mark for the newest state. (``update_one`` then a
        read: ``findAndModify`` is a collection scan on the wire server.)"""
        users = self.schema.users
        now = utcnow()
        change = with_mark(
            {"$set": {users.admin.field: users.admin.stored(value), **users.touched(now)}}, now
        )
        if not self.users.update_one({"_id": doc_id}, change).matched_count:
            raise NotFound(f"user {doc_id} vanished while being updated")
        doc = self.users.find_one({"_id": doc_id})
        if doc is None:
            raise NotFound(f"user {doc_id} vanished while being updated")
        linked = doc.get(users.clerk_id)
        if not (isinstance(linked, str) and CLERK_USER_ID.match(linked)):
            # The app's own user, not in Clerk: there is nothing to write back.
            self.users.update_one({"_id": doc_id}, {"$unset": {bk.DUE: ""}})
        return doc


def connect(settings: Settings, *, announce: Any = None) -> UserStore:
    """Open the store the settings name; the embedded one when ``MONGODB_URL`` is unset.

    Timeouts are short on purpose: a database that does not answer should cost seconds
    and an actionable message, not pymongo's 30-second default."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError

    url = settings.mongodb_url
    if url is None:
        from clerksync.store.embedded import ensure_server

        url = ensure_server(settings.state_dir, announce=announce)
    timeout = settings.mongo_timeout_ms
    try:
        client: MongoClient[Any] = MongoClient(
            url,
            serverSelectionTimeoutMS=timeout,
            connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout * 3, 10_000),
            tz_aware=True,
            appname="clerksync",
        )
    except (ConfigurationError, ValueError):
        # pymongo's own message may quote the URL (and its password): a fixed text instead.
        # A malformed URL is the user's to fix, like any malformed variable: exit 2.
        raise ConfigError(
            "MONGODB_URL is not a usable connection string (check its host list, port, "
            "brackets around IPv6 addresses, and options; for mongodb+srv:// the DNS name; "
            "an @, : or / in the user name or password must be percent-encoded, @ as %40)"
        ) from None
    return UserStore(client, database_name(settings, client), settings.schema)
