"""OrgStore: the ``organizations`` and ``memberships`` collections, with the users' guarantees.

Ordering: each document keeps the ``updated_at`` of the Clerk state it holds
(``clerksync.updatedAt``, as users do) and every write filters on it, so a
late, older delivery changes nothing; the unique Clerk-id index makes
concurrent upserts safe. Deletes are final whatever their ``updated_at``
(Clerk's own example ``organizationMembership.deleted`` is older than the
update before it): a delete writes a tombstone in ``clerksync_tombstones``
(the users' collection; Clerk ids carry their kind, ``org_``/``orgmem_``/
``user_``, so they never collide) before it removes anything.

Cascades: ``organization.deleted`` removes the organization's memberships and
``user.deleted`` the user's. A membership may arrive before its organization or
its user: it is stored anyway. It is refused (``stale``) only when a tombstone
names it, its organization or its user. As for users, only an insert can bring
something back, so the tombstones are read after an insert: a delete that
wrote its tombstone earlier is seen then, and one that writes it later removes
what the insert wrote.

Field names come from the schema (``Schema.organizations``, ``Schema.memberships``):
the ``nextjs`` and ``fastapi`` presets as DESIGN.md gives them, or a mapping file.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from clerksync.errors import NotFound
from clerksync.kinds.orgs import ClerkMembership, ClerkOrganization
from clerksync.mapping import bookkeeping as bk
from clerksync.mapping.documents import held_positions, is_older
from clerksync.mapping.schema import DEFAULT, MembershipMapping, OrganizationMapping, Schema
from clerksync.store.mongo import (
    IN_CHUNK,
    duplicates_only,
    find_in,
    index_refused,
    refused_by,
    translating,
    utcnow,
)

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database

    from clerksync.store.users import UserStore

TOMBSTONES = "clerksync_tombstones"

#: handed the documents a cascade is about to remove (a prune journals them: ``clerksync.prune``)
Keep = Callable[[list[Mapping[str, Any]]], None]


def organization_fields(o: OrganizationMapping, org: ClerkOrganization) -> dict[str, Any]:
    """What a Clerk organization state sets (``$set``), ordering field included."""
    fields = {o.clerk_id: org.id, o.name: org.name, o.slug: org.slug, bk.UPDATED_AT: org.updated_at}
    if o.image_url:
        fields[o.image_url] = org.image_url
    return fields


def membership_fields(m: MembershipMapping, member: ClerkMembership) -> dict[str, Any]:
    """What a Clerk membership state sets (``$set``), ordering field included."""
    return {
        m.clerk_id: member.id,
        m.organization_id: member.organization_id,
        m.user_id: member.user_id,
        m.role: member.role,
        bk.UPDATED_AT: member.updated_at,
    }


@dataclass(frozen=True)
class Kind:
    """One synced object kind: its collection, Clerk-id field, the fields a state sets, the
    app's timestamps, and the Clerk ids whose tombstones refuse it."""

    collection: Collection[Any]
    key: str
    fields: Callable[[Any], dict[str, Any]]
    tombstone_keys: Callable[[Any], list[str]]
    created_at: str | None
    updated_at: str | None

    def ours(self, details: Mapping[str, Any]) -> bool:
        """Did the unique Clerk-id index refuse this write (and not an index of the app's)?"""
        name, pattern = refused_by(details)
        return pattern == {self.key: 1} if pattern else name == f"{self.key}_1"


@translating
class OrgStore:
    """Organizations and memberships over pymongo, durable writes, ordered by ``updated_at``."""

    def __init__(self, db: Database[Any], schema: Schema = DEFAULT) -> None:
        from pymongo import WriteConcern

        self.db = db
        self.orgs_map = o = schema.organizations
        self.members_map = m = schema.memberships
        durable = WriteConcern(w="majority", j=True)
        self.organizations: Collection[Any] = db.get_collection(o.collection, write_concern=durable)
        self.memberships: Collection[Any] = db.get_collection(m.collection, write_concern=durable)
        self.tombstones: Collection[Any] = db.get_collection(TOMBSTONES, write_concern=durable)
        self._indexed = False
        self._index_lock = threading.Lock()
        self.orgs_kind = Kind(
            self.organizations,
            o.clerk_id,
            functools.partial(organization_fields, o),
            lambda org: [org.id],
            o.created_at,
            o.updated_at,
        )
        self.members_kind = Kind(
            self.memberships,
            m.clerk_id,
            functools.partial(membership_fields, m),
            lambda x: [x.id, x.organization_id, x.user_id],
            m.created_at,
            m.updated_at,
        )

    def index_specs(self) -> list[tuple[Collection[Any], Any, str, dict[str, Any]]]:
        """The indexes clerksync needs here: the unique Clerk ids that make concurrent upserts
        safe, the slug (``orgs show``), and the membership's org and user ids (cascades)."""
        from pymongo import ASCENDING

        o, m = self.orgs_map, self.members_map
        return [
            (self.organizations, [(o.clerk_id, ASCENDING)], f"{o.clerk_id}_1", {"unique": True}),
            (self.organizations, [(o.slug, ASCENDING)], f"{o.slug}_1", {}),
            (self.memberships, [(m.clerk_id, ASCENDING)], f"{m.clerk_id}_1", {"unique": True}),
            (self.memberships, [(m.organization_id, ASCENDING)], f"{m.organization_id}_1", {}),
            (self.memberships, [(m.user_id, ASCENDING)], f"{m.user_id}_1", {}),
        ]

    def ensure_indexes(self) -> None:
        """Make the indexes (idempotent). Done before the first write of each process, not at
        start-up: an app without organizations never gets the collections."""
        for collection, keys, name, options in self.index_specs():
            collection.create_index(keys, name=name, **options)
        self._indexed = True

    def _ready(self) -> None:
        if not self._indexed:
            with self._index_lock:
                if not self._indexed:
                    self.ensure_indexes()

    # -- one delivery ------------------------------------------------------------------------

    def upsert_organization(self, org: ClerkOrganization) -> str:
        """Apply one organization state: ``applied``, ``duplicate`` or ``stale``."""
        return self._upsert(self.orgs_kind, org)

    def upsert_membership(self, member: ClerkMembership) -> str:
        """Apply one membership state, stored even before its organization or user."""
        return self._upsert(self.members_kind, member)

    def _update(self, kind: Kind, item: Any, now: datetime) -> dict[str, Any]:
        fields = kind.fields(item)
        on_insert: dict[str, Any] = {}
        if kind.updated_at:
            fields[kind.updated_at] = now
        if kind.created_at:
            on_insert[kind.created_at] = now
        update: dict[str, Any] = {"$set": fields}
        if on_insert:
            update["$setOnInsert"] = on_insert
        return update

    def _upsert(self, kind: Kind, item: Any) -> str:
        from pymongo.errors import DuplicateKeyError

        self._ready()

        newer = {kind.key: item.id, bk.UPDATED_AT: {"$not": {"$gte": item.updated_at}}}
        try:
            result = kind.collection.update_one(
                newer, self._update(kind, item, utcnow()), upsert=True
            )
        except DuplicateKeyError as exc:
            details = exc.details or {}
            # the filter missed a stored document: what is there is as new or newer (refused
            # by another of the app's unique indexes, it is still that, if it is stored)
            stored = kind.collection.find_one({kind.key: item.id}, {bk.UPDATED_AT: 1})
            version = bk.field(stored, bk.UPDATED_AT) if stored is not None else None
            if not kind.ours(details) and (stored is None or is_older(version, item.updated_at)):
                # the app's index refused this state itself: a failure, the retry stores it
                raise index_refused(details, kind.collection.name, "a Clerk state") from None
            same = stored is not None and version == item.updated_at
            return "duplicate" if same else "stale"
        if result.upserted_id is not None and self._tombstoned(kind.tombstone_keys(item)):
            kind.collection.delete_one({"_id": result.upserted_id})
            return "stale"
        return "applied"

    def _tombstoned(self, clerk_ids: list[str]) -> set[str]:
        found = self.tombstones.find({"_id": {"$in": clerk_ids}}, {"_id": 1})
        return {t["_id"] for t in found}

    def _tombstone(self, clerk_id: str, kind: str, pruned_by: str | None = None) -> bool:
        """Write the tombstone (a prune's marked as its run's); True when it was there."""
        from pymongo import ReturnDocument

        from clerksync.store.base import tombstone_update

        before = self.tombstones.find_one_and_update(
            {"_id": clerk_id},
            tombstone_update(utcnow(), kind=kind, pruned_by=pruned_by),
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return before is not None

    def delete_organization(
        self, org_id: str, keep: Keep | None = None, *, pruned_by: str | None = None
    ) -> str:
        """Tombstone, then remove the organization and its memberships (final). ``keep``
        (a prune's journal) is handed the memberships the cascade removes, before it does;
        ``pruned_by`` marks the tombstone as that prune run's."""
        self._ready()
        known = self._tombstone(org_id, "organization", pruned_by)
        removed = self.organizations.delete_one({self.orgs_map.clerk_id: org_id}).deleted_count
        removed += self._remove_memberships({self.members_map.organization_id: org_id}, keep)
        return "applied" if removed or not known else "duplicate"

    def delete_membership(self, member_id: str, *, pruned_by: str | None = None) -> str:
        """Tombstone, then remove the membership (final, whatever its ``updated_at``)."""
        self._ready()
        known = self._tombstone(member_id, "membership", pruned_by)
        removed = self.memberships.delete_one({self.members_map.clerk_id: member_id}).deleted_count
        return "applied" if removed or not known else "duplicate"

    def remove_user_memberships(self, user_id: str, keep: Keep | None = None) -> int:
        """``user.deleted``'s cascade (its tombstone is written by the user store first);
        ``keep`` as for ``delete_organization``."""
        return self._remove_memberships({self.members_map.user_id: user_id}, keep)

    def _remove_memberships(self, query: Mapping[str, Any], keep: Keep | None) -> int:
        """A cascade. Without ``keep``, one ``delete_many``. With it, a few documents at a
        time: each lot is handed to ``keep`` and then deleted by ``_id``, so nothing goes
        that ``keep`` did not see first (a membership stored meanwhile is found by the next
        read, and one stored after the tombstone removes itself, as the receiver's do)."""
        if keep is None:
            return int(self.memberships.delete_many(query).deleted_count)
        removed = 0
        while True:
            docs = list(self.memberships.find(query).limit(IN_CHUNK))
            if not docs:
                return removed
            keep(docs)
            ids = [d["_id"] for d in docs]
            removed += int(self.memberships.delete_many({"_id": {"$in": ids}}).deleted_count)

    # -- bulk (reconcile) ----------------------------------------------------------------------

    def new_documents(self, kind: Kind, items: Iterable[Any]) -> dict[str, dict[str, Any]]:
        """The documents ``upsert_many`` would insert for these items, by Clerk id, made
        ahead of the write (reconcile makes them in its reader thread)."""
        now = utcnow()
        return {item.id: self._new_document(kind, item, now) for item in items}

    def _new_document(self, kind: Kind, item: Any, now: Any) -> dict[str, Any]:
        update = self._update(kind, item, now)
        return bk.nest({**update["$set"], **update.get("$setOnInsert", {})})

    def upsert_many(
        self,
        kind: Kind,
        items: Iterable[Any],
        *,
        dry_run: bool = False,
        assume_new: bool = False,
        prepared: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, int]:
        """The bulk form of ``_upsert`` for reconcile: one planning read, then ``insert_many``
        for what MongoDB lacks and ordered upserts for what it holds older; the rest costs
        no write, so a rerun writes nothing. Tombstones are read after the inserts, as the
        receiver does; ``dry_run`` counts what would happen, writing nothing.
        ``assume_new`` skips the planning read and inserts the whole batch (what is there
        already fails on the unique index and takes the ordered upsert): cheaper when the
        previous batch was all new, as in a backfill. ``prepared``: documents
        ``new_documents`` made beforehand for some of the items."""
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        batch = list(items)
        if not dry_run:
            self._ready()
        projection = {kind.key: 1, bk.UPDATED_AT: 1, "_id": 0}
        ids = [i.id for i in batch]
        stored = (
            {}
            if assume_new and not dry_run
            else {
                d[kind.key]: bk.field(d, bk.UPDATED_AT)
                for d in find_in(kind.collection, kind.key, ids, projection)
            }
        )
        fresh = [i for i in batch if i.id not in stored]
        older = [i for i in batch if i.id in stored and is_older(stored[i.id], i.updated_at)]
        if dry_run:
            keys = sorted({k for i in fresh for k in kind.tombstone_keys(i)})
            gone_keys = self._tombstoned(keys) if keys else set()
            new = [i for i in fresh if not gone_keys.intersection(kind.tombstone_keys(i))]
            unchanged = len(batch) - len(fresh) - len(older)
            return {"created": len(new), "updated": len(older), "unchanged": unchanged}
        now = utcnow()
        inserted: list[Any] = []
        if fresh:
            docs = [
                (prepared or {}).get(item.id) or self._new_document(kind, item, now)
                for item in fresh
            ]
            failed: set[int] = set()
            try:
                kind.collection.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                held = held_positions(
                    fresh, functools.partial(self._versions, kind), any_state=True
                )
                failed = duplicates_only(exc, kind.ours, kind.collection.name, stored=held)
            older += [i for n, i in enumerate(fresh) if n in failed]
            inserted += [i for n, i in enumerate(fresh) if n not in failed]
        updated = 0
        if older:
            ops = [
                UpdateOne(
                    {kind.key: i.id, bk.UPDATED_AT: {"$not": {"$gte": i.updated_at}}},
                    self._update(kind, i, now),
                    upsert=True,
                )
                for i in older
            ]
            try:
                details: Mapping[str, Any] = kind.collection.bulk_write(
                    ops, ordered=False
                ).bulk_api_result
            except BulkWriteError as exc:
                duplicates_only(
                    exc,
                    kind.ours,
                    kind.collection.name,
                    stored=held_positions(older, functools.partial(self._versions, kind)),
                )
                details = exc.details
            updated = int(details.get("nModified", 0))
            inserted += [older[entry["index"]] for entry in details.get("upserted", [])]
        keys = sorted({k for i in inserted for k in kind.tombstone_keys(i)})
        gone_keys = self._tombstoned(keys) if keys else set()
        gone = [i.id for i in inserted if gone_keys.intersection(kind.tombstone_keys(i))]
        if gone:
            kind.collection.delete_many({kind.key: {"$in": gone}})
        created = len(inserted) - len(gone)
        return {
            "created": created,
            "updated": updated,
            "unchanged": len(batch) - len(gone) - created - updated,
        }

    def _versions(self, kind: Kind, clerk_ids: list[str]) -> dict[str, Any]:
        """Clerk id -> the stored version, for those of ``clerk_ids`` stored."""
        projection = {kind.key: 1, bk.UPDATED_AT: 1}
        found = find_in(kind.collection, kind.key, clerk_ids, projection)
        return {d[kind.key]: bk.field(d, bk.UPDATED_AT) for d in found}

    def held_ids(self, kind: Kind) -> Iterator[str]:
        """Every Clerk id the collection holds (for the orphan pass), flat memory."""
        cursor = kind.collection.find({}, {kind.key: 1, "_id": 0}).batch_size(1000)
        return (d[kind.key] for d in cursor if isinstance(d.get(kind.key), str))

    # -- lookups -------------------------------------------------------------------------------

    def list_organizations(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Organizations, newest first, each with its member count (one aggregation)."""
        o = self.orgs_map
        cursor = self.organizations.find({}).sort("_id", -1)
        if limit:
            cursor = cursor.limit(limit)
        orgs = list(cursor)
        ids = [d.get(o.clerk_id) for d in orgs if isinstance(d.get(o.clerk_id), str)]
        counts = self.member_counts(ids)
        return [self.org_view(d, counts.get(str(d.get(o.clerk_id)), 0)) for d in orgs]

    def member_counts(self, org_ids: list[str]) -> dict[str, int]:
        m = self.members_map
        counts: dict[str, int] = {}
        for start in range(0, len(org_ids), IN_CHUNK):
            chunk = org_ids[start : start + IN_CHUNK]
            for row in self.memberships.aggregate(
                [
                    {"$match": {m.organization_id: {"$in": chunk}}},
                    {"$group": {"_id": f"${m.organization_id}", "n": {"$sum": 1}}},
                ]
            ):
                counts[str(row["_id"])] = int(row["n"])
        return counts

    def find_organization(self, ident: str) -> Mapping[str, Any]:
        """An organization by Clerk id, Mongo id or slug; NotFound otherwise."""
        from bson import ObjectId

        o = self.orgs_map
        ident = ident.strip()
        doc = None
        if ObjectId.is_valid(ident):
            doc = self.organizations.find_one({"_id": ObjectId(ident)})
        if doc is None:
            doc = self.organizations.find_one({o.clerk_id: ident})
        if doc is None:
            doc = self.organizations.find_one({o.slug: ident})
        if doc is None:
            raise NotFound(
                f"no organization {ident!r} in this database (give a Clerk id org_…, a Mongo "
                "id or a slug; `clerksync orgs list` shows them)"
            )
        return doc

    def members_of(self, org_id: str) -> list[Mapping[str, Any]]:
        m = self.members_map
        return list(self.memberships.find({m.organization_id: org_id}).sort(m.user_id, 1))

    def memberships_of_user(self, user_id: str) -> list[Mapping[str, Any]]:
        m = self.members_map
        return list(self.memberships.find({m.user_id: user_id}).sort(m.organization_id, 1))

    def org_view(self, doc: Mapping[str, Any], members: int) -> dict[str, Any]:
        """The documented JSON shape of an organization (``orgs list --json``)."""
        o = self.orgs_map
        return {
            "id": str(doc["_id"]),
            "clerkId": doc.get(o.clerk_id),
            "name": doc.get(o.name),
            "slug": doc.get(o.slug),
            "members": members,
        }


def organization_detail(store: UserStore, ident: str) -> dict[str, Any]:
    """``orgs show``: the organization and its members (``userId``, ``role``, and the user's
    email where the users collection has the user)."""
    orgs = store.orgs
    o, m = orgs.orgs_map, orgs.members_map
    doc = orgs.find_organization(ident)
    members = orgs.members_of(str(doc.get(o.clerk_id)))
    user_ids = [str(x.get(m.user_id)) for x in members]
    users = store.schema.users
    email = users.email
    projection = {users.clerk_id: 1, "_id": 0, **({email: 1} if email else {})}
    emails = {
        u.get(users.clerk_id): u.get(email) if email else None
        for u in find_in(store.users, users.clerk_id, user_ids, projection)
    }
    view = orgs.org_view(doc, len(members))
    view["imageUrl"] = doc.get(o.image_url) if o.image_url else None
    view["members"] = [
        {
            "userId": x.get(m.user_id),
            "role": x.get(m.role),
            "email": emails.get(x.get(m.user_id)),
        }
        for x in members
    ]
    return view


def user_organizations(store: UserStore, clerk_id: str) -> list[dict[str, Any]]:
    """``users show``: the user's organizations and roles (the org's name where stored)."""
    orgs = store.orgs
    o, m = orgs.orgs_map, orgs.members_map
    memberships = orgs.memberships_of_user(clerk_id)
    org_ids = [str(x.get(m.organization_id)) for x in memberships]
    projection = {o.clerk_id: 1, o.name: 1, o.slug: 1, "_id": 0}
    found = find_in(orgs.organizations, o.clerk_id, org_ids, projection)
    named = {d.get(o.clerk_id): d for d in found}
    return [
        {
            "organizationId": x.get(m.organization_id),
            "name": (named.get(x.get(m.organization_id)) or {}).get(o.name),
            "slug": (named.get(x.get(m.organization_id)) or {}).get(o.slug),
            "role": x.get(m.role),
        }
        for x in memberships
    ]
