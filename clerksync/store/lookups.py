"""Lookups the commands and the app make: users by Clerk id, Mongo id or email; the users
list; organizations with their members; a user's organizations. Reads only."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from clerksync.errors import Ambiguous, NotFound, UsageError
from clerksync.kinds.membership import MEMBERSHIP
from clerksync.kinds.organization import ORGANIZATION
from clerksync.kinds.registry import rollups_onto
from clerksync.kinds.user import USER
from clerksync.mapping.users import camel, public_view
from clerksync.store.database import Store
from clerksync.store.mongo import IN_CHUNK, find_in, translated


@translated
def find_user(store: Store, ident: str) -> Mapping[str, Any]:
    """A user by Mongo id, Clerk id or email; NotFound or Ambiguous otherwise."""
    from bson import ObjectId

    users = store.schema.users
    ident = ident.strip()
    if ObjectId.is_valid(ident):
        doc = store.users.find_one({"_id": ObjectId(ident)})
        if doc:
            return doc
    if "@" in ident and users.email:
        pattern = {"$regex": f"^{re.escape(ident)}$", "$options": "i"}
        matches = list(store.users.find({users.email: pattern}).limit(10))
        if len(matches) > 1:
            listed = ", ".join(f"{m.get(users.clerk_id)} ({m['_id']})" for m in matches)
            raise Ambiguous(
                f"{len(matches)} users have the email {ident}: {listed}. "
                "Name one by its Clerk id or Mongo id."
            )
        if matches:
            return matches[0]
    elif "@" not in ident:
        doc = store.users.find_one({users.clerk_id: ident})
        if doc:
            return doc
    raise NotFound(
        f"no user {ident!r} in database {store.name!r} "
        "(give a Clerk id user_…, a Mongo id or an email; `clerksync users list` shows them)"
    )


@translated
def find_by_clerk_id(store: Store, clerk_user_id: str) -> Mapping[str, Any] | None:
    """The user stored under this Clerk id: one equality read on the unique Clerk-id index."""
    return store.users.find_one({store.clerk_id: clerk_user_id})


def user_detail(store: Store, doc: Mapping[str, Any]) -> dict[str, Any]:
    """``users show --json`` (and ``GET /api/users/me``): the documented view of a user (the
    mapped fields only, never the app's own such as ``password_hash``) and the user's
    organizations."""
    view = public_view(doc, store.schema.users)
    clerk_id = view["clerkId"]
    organizations = user_organizations(store, clerk_id) if isinstance(clerk_id, str) else []
    return {**view, "organizations": organizations}


@translated
def list_users(
    store: Store,
    *,
    admins: bool = False,
    search: str | None = None,
    plan: str | None = None,
    limit: int | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Users newest first: admins only, matching ``search``, on the plan ``plan`` (the
    slug their subscription items give them)."""
    users = store.schema.users
    query: dict[str, Any] = {}
    if admins:
        query[users.admin.field] = users.admin.value
    if plan is not None:
        field = store.schema.derived(USER).get("plan")
        if field is None:
            raise UsageError(
                "--plan: the schema keeps no plan on users (the mapping file's [users] plan = "
                '"", or a field of the app\'s own named plan: [users] plan = "…" names another)'
            )
        query[field] = plan
    if search:
        pattern = {"$regex": re.escape(search), "$options": "i"}
        query["$or"] = [{field: pattern} for field in users.search_fields] or [
            {users.clerk_id: pattern}
        ]
    cursor = store.users.find(query).sort("_id", -1)
    if limit:
        cursor = cursor.limit(limit)
    yield from cursor


@translated
def list_organizations(store: Store, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Organizations, newest first, each with its member count (one aggregation)."""
    key = store.key(ORGANIZATION)
    cursor = store.collection(ORGANIZATION).find({}).sort("_id", -1)
    if limit:
        cursor = cursor.limit(limit)
    orgs = list(cursor)
    ids = [d.get(key) for d in orgs if isinstance(d.get(key), str)]
    counts = member_counts(store, ids)
    return [org_view(store, d, counts.get(str(d.get(key)), 0)) for d in orgs]


@translated
def member_counts(store: Store, org_ids: list[str]) -> dict[str, int]:
    org_field = store.schema.memberships.require("organization_id")
    counts: dict[str, int] = {}
    for start in range(0, len(org_ids), IN_CHUNK):
        chunk = org_ids[start : start + IN_CHUNK]
        for row in store.collection(MEMBERSHIP).aggregate(
            [
                {"$match": {org_field: {"$in": chunk}}},
                {"$group": {"_id": f"${org_field}", "n": {"$sum": 1}}},
            ]
        ):
            counts[str(row["_id"])] = int(row["n"])
    return counts


@translated
def find_organization(store: Store, ident: str) -> Mapping[str, Any]:
    """An organization by Clerk id, Mongo id or slug; NotFound otherwise."""
    from bson import ObjectId

    o = store.schema.organizations
    organizations = store.collection(ORGANIZATION)
    ident = ident.strip()
    doc = None
    if ObjectId.is_valid(ident):
        doc = organizations.find_one({"_id": ObjectId(ident)})
    if doc is None:
        doc = organizations.find_one({o.clerk_id: ident})
    if doc is None:
        doc = organizations.find_one({o.require("slug"): ident})
    if doc is None:
        raise NotFound(
            f"no organization {ident!r} in this database (give a Clerk id org_…, a Mongo "
            "id or a slug; `clerksync orgs list` shows them)"
        )
    return doc


def org_view(store: Store, doc: Mapping[str, Any], members: int) -> dict[str, Any]:
    """The documented JSON shape of an organization (``orgs list --json``)."""
    o = store.schema.organizations
    return {
        "id": str(doc["_id"]),
        "clerkId": doc.get(o.clerk_id),
        "name": doc.get(o.require("name")),
        "slug": doc.get(o.require("slug")),
        "members": members,
    }


@translated
def organization_detail(store: Store, ident: str) -> dict[str, Any]:
    """``orgs show``: the organization and its members (``userId``, ``role``, and the user's
    email where the users collection has the user)."""
    o, m = store.schema.organizations, store.schema.memberships
    user_field, role = m.require("user_id"), m.require("role")
    doc = find_organization(store, ident)
    members = list(
        store.collection(MEMBERSHIP)
        .find({m.require("organization_id"): doc.get(o.clerk_id)})
        .sort(user_field, 1)
    )
    user_ids = [str(x.get(user_field)) for x in members]
    users = store.schema.users
    email = users.email
    projection = {users.clerk_id: 1, "_id": 0, **({email: 1} if email else {})}
    emails = {
        u.get(users.clerk_id): u.get(email) if email else None
        for u in find_in(store.users, users.clerk_id, user_ids, projection)
    }
    view = org_view(store, doc, len(members))
    image = o.field("image_url")
    view["imageUrl"] = doc.get(image) if image else None
    derived = store.schema.derived(ORGANIZATION)  # its plan, from its subscription items
    for logical in sorted({f for _, r in rollups_onto(ORGANIZATION) for f in r.fields}):
        view[camel(logical)] = doc.get(derived[logical]) if logical in derived else None
    view["members"] = [
        {"userId": x.get(user_field), "role": x.get(role), "email": emails.get(x.get(user_field))}
        for x in members
    ]
    return view


@translated
def user_organizations(store: Store, clerk_id: str) -> list[dict[str, Any]]:
    """``users show``: the user's organizations and roles (the org's name where stored)."""
    o, m = store.schema.organizations, store.schema.memberships
    org_field = m.require("organization_id")
    memberships = list(
        store.collection(MEMBERSHIP).find({m.require("user_id"): clerk_id}).sort(org_field, 1)
    )
    org_ids = [str(x.get(org_field)) for x in memberships]
    name, slug = o.require("name"), o.require("slug")
    projection = {o.clerk_id: 1, name: 1, slug: 1, "_id": 0}
    found = find_in(store.collection(ORGANIZATION), o.clerk_id, org_ids, projection)
    named = {d.get(o.clerk_id): d for d in found}
    return [
        {
            "organizationId": x.get(org_field),
            "name": (named.get(x.get(org_field)) or {}).get(name),
            "slug": (named.get(x.get(org_field)) or {}).get(slug),
            "role": x.get(m.require("role")),
        }
        for x in memberships
    ]
